"""Job descriptions: what users write into /new."""

import pytest

from styxgrid.scheduler.describe import Description, DescriptionError, JobSpec


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
                 "dir /tmp\ninput in/a.txt\noutput out.txt\n"
                 "requirements Memory >= 2048 && OpSys == \"LINUX\"\nrank Cpus\n"
                 "priority 5\nretries 2\nsubmit\n")
    assert spec.tasks == 100 and spec.args == ("--seed", "a b")
    assert spec.env == (("K", "V"), ("X", "1=2"))
    assert spec.inputs == ("in/a.txt",) and spec.outputs == ("out.txt",)
    assert JobSpec.from_lines(spec.lines()) == spec


def test_lines_may_arrive_in_pieces():
    assert parse("cmd /bin/ec", "ho\nargs hi\n", "submit") == JobSpec(cmd="/bin/echo",
                                                                      args=("hi",))


def test_no_submit_yet_gives_nothing():
    assert parse("cmd /bin/true\ntasks 3\n") is None


@pytest.mark.parametrize("text,why", [
    ("frobnicate 3\nsubmit x\n", "unknown description line 'frobnicate'"),
    ("tasks many\nsubmit x\n", "tasks: 'many' is not a whole number"),
    ("tasks 0\nsubmit x\n", "tasks: 0 is out of range"),
    ("priority 99999\nsubmit x\n", "priority: 99999 is out of range"),
    ("retries -1\nsubmit x\n", "retries: -1 is out of range"),
    ("env NOEQUALS\nsubmit x\n", "env: want NAME=VALUE"),
    ("requirements Memory >= \nsubmit x\n", "cannot parse ClassAd expression"),
    ("input ../etc/passwd\nsubmit x\n", "may not contain '..'"),
    ("submit\n", "no command"),
    ("args 'unclosed\nsubmit x\n", "args: No closing quotation"),
    ("submit a\nsubmit b\n", "text after 'submit'"),
])
def test_bad_descriptions_name_the_problem(text, why):
    with pytest.raises(DescriptionError, match=why):
        parse(text)
