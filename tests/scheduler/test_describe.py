"""Job descriptions: what users write into /new."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from styxgrid.describe import Description, DescriptionError, JobSpec


def parse(*writes: str) -> JobSpec | None:
    d = Description()
    result = None
    for w in writes:
        result = d.feed(w)
    return result


def test_one_shot_submit():
    assert parse("submit ./sim --seed 7\n") == JobSpec(cmd="./sim", args=("--seed", "7"))


def test_heredoc_description_and_normal_form_round_trips():
    spec = parse("cmd ./sim\nargs --seed 'a b'\ntasks 100\nenv K=V\nenv X=1=2\n"
                 "dir run/here\ninput in/a.txt\noutput out.$STYXGRID_TASK.txt\n"
                 "requirements Memory >= 2048 && OpSys == \"LINUX\"\nrank Cpus\n"
                 "priority 5\nretries 2\nspeculate 2.5\nmax_runtime 60\n"
                 "checkpoint_exit 85\ncheckpoint_every 30\nsubmit\n")
    assert spec.checkpoint_exit == 85 and spec.checkpoint_every == 30 and spec.speculate == 2.5
    assert spec.tasks == 100 and spec.args == ("--seed", "a b")
    assert spec.env == (("K", "V"), ("X", "1=2"))
    assert spec.inputs == ("in/a.txt",) and spec.outputs == ("out.$STYXGRID_TASK.txt",)
    assert JobSpec.from_lines(spec.lines()) == spec


def test_lines_may_arrive_in_pieces():
    assert parse("cmd /bin/ec", "ho\nargs hi\n", "submit") == JobSpec(cmd="/bin/echo",
                                                                      args=("hi",))


def test_a_submit_line_cut_across_writes_waits_for_its_end():
    """Only a bare `submit` ends a description without its newline: a longer line
    may be cut anywhere by the writer (FUSE splits big writes)."""
    assert parse("submit ./si", "m --seed 7\n") == JobSpec(cmd="./sim", args=("--seed", "7"))
    assert parse("submit ./sim --se") is None


def test_unquoted_env_values_lose_blanks_at_both_ends_quoted_ones_keep_them():
    assert parse("env A=  x  \nsubmit true\n").env == (("A", "x"),)
    assert parse("env A='  x  '\nsubmit true\n").env == (("A", "  x  "),)


def test_no_submit_yet_gives_nothing():
    assert parse("cmd /bin/true\ntasks 3\n") is None


@pytest.mark.parametrize("text,why", [
    ("frobnicate 3\nsubmit x\n", "unknown description line 'frobnicate'"),
    ("tasks many\nsubmit x\n", "tasks: 'many' is not a whole number"),
    ("tasks 0\nsubmit x\n", "tasks: 0 is out of range"),
    ("priority 99999\nsubmit x\n", "priority: 99999 is out of range"),
    ("retries -1\nsubmit x\n", "retries: -1 is out of range"),
    ("speculate 1.0\nsubmit x\n", "speculate: want F .a number, 1.1..1000. or 'off', got '1.0'"),
    ("max_runtime 0\nsubmit x\n", "max_runtime: 0 is out of range"),
    ("checkpoint_exit 256\nsubmit x\n", "checkpoint_exit: 256 is out of range .1..255."),
    ("checkpoint_every 0\nsubmit x\n", "checkpoint_every: 0 is out of range"),
    ("env NOEQUALS\nsubmit x\n", "env: want NAME=VALUE"),
    ("requirements Memory >= \nsubmit x\n", "cannot parse ClassAd expression"),
    ("input ../etc/passwd\nsubmit x\n", "may not contain '..'"),
    ("submit\n", "no command"),
    ("args 'unclosed\nsubmit x\n", "args: no closing quotation"),
    ("submit a\nsubmit b\n", "text after 'submit'"),
])
def test_bad_descriptions_name_the_problem(text, why):
    with pytest.raises(DescriptionError, match=why):
        parse(text)


# Text a description can carry: anything but NUL and line breaks.
_text = st.text(st.characters(blacklist_characters="\0\n\r", blacklist_categories=("Cs",)),
                max_size=20)


@settings(max_examples=300, deadline=None)
@given(cmd=_text.filter(bool), args=st.lists(_text, max_size=5),
       env=st.lists(st.tuples(st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,5}", fullmatch=True),
                              _text), max_size=3),
       dir=_text.filter(lambda p: ".." not in p.split("/") and not p.startswith("/")),
       inputs=st.lists(_text.filter(lambda p: p and ".." not in p.split("/")), max_size=2))
def test_any_spec_reads_back_exactly_from_its_lines(cmd, args, env, dir, inputs):
    """What is stored and sent to workers is what was submitted: quotes, spaces,
    `$`, blanks at either end and non-ASCII text included."""
    spec = JobSpec(cmd=cmd, args=tuple(args), env=tuple(env), dir=dir, inputs=tuple(inputs))
    assert JobSpec.from_lines(spec.lines()) == spec


def test_quoted_values_are_one_shell_word():
    spec = parse("cmd 'my prog' --x\nenv GREETING='hello world'\nenv RAW=a 'b'\n"
                 "dir \"a b/c\"\nsubmit\n")
    assert spec.cmd == "my prog" and spec.args == ("--x",)
    assert spec.env == (("GREETING", "hello world"), ("RAW", "a 'b'"))
    assert spec.dir == "a b/c"


@pytest.mark.parametrize("text,why", [
    ("cmd a\0b\nsubmit\n", "NUL byte"),
    ("submit x " + "y" * (129 * 1024) + "\n", "line longer than 128 KiB"),
    ("env A=1\n" * 257 + "submit x\n", "env: more than 256 lines"),
    ("# filler\n" * 30_000 + "submit x\n", "description longer than 256 KiB"),
    ("priority --5\nsubmit x\n", "priority: '--5' is not a whole number"),
    ("tasks ²\nsubmit x\n", "tasks: '²' is not a whole number"),
    ("tasks 99999999999999999999\nsubmit x\n", "is not a whole number"),
    ("env 1X=2\nsubmit x\n", "env: want NAME=VALUE"),
    ("env X='a' 'b'\nsubmit x\n", "env: want one quoted word, got 2"),
    ("dir /etc\nsubmit x\n", "dir: '/etc' must be a path in the task's folder"),
    ("dir a/../../etc\nsubmit x\n", "dir: 'a/../../etc' may not contain '..'"),
    ("output /etc/shadow\nsubmit x\n", "output: '/etc/shadow' must be a path in the task"),
])
def test_limits_and_bad_text_are_refused_by_name(text, why):
    with pytest.raises(DescriptionError, match=why):
        parse(text)


def test_arguments_are_limited_together():
    with pytest.raises(DescriptionError, match="more than 128 KiB of arguments"):
        JobSpec(cmd="x", args=("y" * 70_000, "z" * 70_000))


def test_an_error_quotes_only_a_short_prefix_of_the_input():
    with pytest.raises(DescriptionError) as info:
        parse("z" * 100_000 + " x\n")
    assert len(str(info.value)) < 300


def test_a_long_line_in_many_writes_parses_in_linear_time():
    d = Description()
    for _ in range(30):
        assert d.feed("a" * 4000) is None
    words = "x " * 20_000
    spec = Description().feed(f"args {words}\nsubmit prog\n")
    assert spec is not None and spec.cmd == "prog"
