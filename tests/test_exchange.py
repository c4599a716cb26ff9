"""The worker<->scheduler exchange alone: a (record, bytes) table both ways, the
refusals by name, round trips and fuzz (as tests/ninep/test_codec.py is for 9P)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from styxgrid.exchange import (MAX_LEASE, MAX_SLOTS, Checkpoint, Done, ExchangeError, Heartbeat,
                               Held, Join, Kill, Lease, Output, TaskRecord, Vacated, parse_orders,
                               parse_reports, parse_tasks)

JOIN = Join("w1", 4, 8, (("Cpus", 4), ("OpSys", "LINUX"), ("Gpu", False), ("Speed", 1.5)),
            ((3, 0), (3, 7)))

# One table drives both directions (h11's test_io style): record, bytes, its parser.
CASES = [
    (JOIN, b"join w1\nslots 4\nlease 8\nattr Cpus = 4\nattr OpSys = \"LINUX\"\n"
           b"attr Gpu = false\nattr Speed = 1.5\nrunning 3 0\nrunning 3 7\n", Join.parse),
    (Join("n-2.example"), b"join n-2.example\nslots 1\n", Join.parse),
    (Join("g", 2, memory=4096, disk=10240, gpus=1),
     b"join g\nslots 2\noffer memory=4096 disk=10240 gpus=1\n", Join.parse),
    (Held(3, 1, "used 1.2 GiB of its 1 GiB memory request"),
     b"held 3 1 used 1.2 GiB of its 1 GiB memory request\n", lambda b: parse_reports(b)[0]),
    (Heartbeat(0.25), b"heartbeat load=0.25", Heartbeat.parse),
    (Heartbeat(), b"heartbeat", Heartbeat.parse),
    (Heartbeat(1.5, "suspended"), b"heartbeat load=1.50 owner=suspended", Heartbeat.parse),
    (Vacated(3, 1, "the owner is back"), b"vacated 3 1 the owner is back\n",
     lambda b: parse_reports(b)[0]),
    (Vacated(3, 1), b"vacated 3 1\n", lambda b: parse_reports(b)[0]),
    (Lease(0), b"lease 0\n", lambda b: parse_reports(b)[0]),
    (Output(3, 1, "stderr", 10, b"a\nb"), b"output 3 1 stderr 10 3\na\nb",
     lambda b: parse_reports(b)[0]),
    (Done(3, 1, -9, "killed by SIGKILL"), b"done 3 1 -9 killed by SIGKILL\n",
     lambda b: parse_reports(b)[0]),
    (Done(3, 1, 0), b"done 3 1 0\n", lambda b: parse_reports(b)[0]),
    (Kill(5, 4294967295), b"kill 5 4294967295\n", lambda b: parse_orders(b)[0]),
    (TaskRecord(5, 2, 10, "alice", b"cmd sh\n"), b"task 5 2 10 alice 7\ncmd sh\n",
     lambda b: parse_tasks(b)[0]),
    (TaskRecord(5, 2, 10, "alice", b"cmd sh\n", True),
     b"task 5 2 10 alice 7 checkpoint\ncmd sh\n", lambda b: parse_tasks(b)[0]),
    (Checkpoint(3, 1, 10240), b"checkpoint 3 1 10240\n", lambda b: parse_reports(b)[0]),
]


@pytest.mark.parametrize("record,wire,parse", CASES)
def test_table_encode(record, wire, parse):
    assert record.encode() == wire


@pytest.mark.parametrize("record,wire,parse", CASES)
def test_table_decode(record, wire, parse):
    assert parse(wire) == record


def test_one_report_write_carries_many_records_in_order():
    records = [Lease(16), Output(1, 0, "stdout", 0, b"x\n"), Done(1, 0, 0), Done(1, 1, 2, "no")]
    assert parse_reports(b"".join(r.encode() for r in records)) == records
    tasks = [TaskRecord(1, i, 3, "bob", b"cmd true\n") for i in range(3)]
    assert parse_tasks(b"".join(t.encode() for t in tasks)) == tasks
    assert parse_orders(b"kill 1 2\nsomething later\nkill 3 4\n") == [Kill(1, 2), Kill(3, 4)]


def test_a_reason_is_kept_to_one_line():
    assert Done(1, 2, 1, "two\nlines").encode() == b"done 1 2 1 two lines\n"


REFUSED = [
    (Join.parse, b"slots 2\n", "join: needs a worker name"),
    (Join.parse, b"join bad name\n", "join: bad worker name 'bad name'"),
    (Join.parse, b"join w\nslots 0\n", "join: slots: 0 is out of range"),
    (Join.parse, b"join w\nslots %d\n" % (MAX_SLOTS + 1), "join: slots: 4097 is out of range"),
    (Join.parse, b"join w\nlease %d\n" % (MAX_LEASE + 1), "lease: 16385 is out of range"),
    (Join.parse, b"join w\nattr Cpus 4\n", "bad attribute line 'attr Cpus 4'"),
    (Join.parse, b"join w\nattr 9x = 1\n", "bad attribute name '9x'"),
    (Join.parse, b"join w\nrunning 1\n", "bad join line 'running 1'"),
    (Join.parse, b"join w\nfly away\n", "unknown join line 'fly away'"),
    (Join.parse, b"join w\noffer memory=-1\n", "join: offer memory: -1 is out of range"),
    (Join.parse, b"join w\noffer gpus=65\n", "join: offer gpus: 65 is out of range"),
    (Join.parse, b"join w\noffer memory=%d\n" % (1 << 31), "out of range"),
    (Join.parse, b"join w\noffer cpus=4\n", "want 'offer memory=MIB disk=MIB gpus=N'"),
    (Join.parse, b"join w\noffer memory\n", "want 'offer memory=MIB disk=MIB gpus=N'"),
    (parse_reports, b"held 1 2\n", "want 'done J T STATUS"),
    (Join.parse, b"join w\xff\n", "not UTF-8 text"),
    (Join.parse, b"join w\njoin v\n", "join: join said twice"),
    (Join.parse, b"join w\nslots 2\nslots 3\n", "join: slots said twice"),
    (Join.parse, b"join w\nlease 2\nlease 3\n", "join: lease said twice"),
    (Join.parse, b"join w\noffer gpus=1\noffer disk=2\n", "join: offer said twice"),
    (Join.parse, b"join w\noffer gpus=1 gpus=2\n", "join: offer gpus said twice"),
    (Join.parse, b"join w\nattr A = 1\nattr A = 2\n", "join: attribute A said twice"),
    (Join.parse, b"join w\nattr Name = 1\nattr name = 2\n", "join: attribute name said twice"),
    (Heartbeat.parse, b"heartbeat load=1e999", "not a finite number"),
    (Heartbeat.parse, b"heartbeat load=-1", "heartbeat: load '-1' is not a number in"),
    (Heartbeat.parse, b"beat", "bad heartbeat 'beat'"),
    (parse_reports, b"done 1 2 99999999999\n", "done: status: 99999999999 is out of range"),
    (parse_reports, b"done 1 99999999999 0\n", "done: task: 99999999999 is out of range"),
    (parse_reports, b"output 1 0 stdout -1 1\nx", "output: offset: -1 is out of range"),
    (parse_reports, b"output 1 0 stdout 0 5\nx", "the write ends before its SIZE bytes"),
    (parse_reports, b"output 1 0 stdin 0 1\nx", "want 'done J T STATUS [REASON]'"),
    (parse_reports, b"lease -1\n", "lease: -1 is out of range"),
    (parse_reports, b"vacated 1\n", "want 'done J T STATUS [REASON]', 'vacated J T"),
    (Heartbeat.parse, b"heartbeat owner=gone", "heartbeat: owner 'gone' is not one of"),
    (parse_reports, b"done 1 2 0\nexplode\n", "bad report 'explode'"),
    (parse_tasks, b"task 1 2 3\n", "bad task record"),
    (parse_tasks, b"task 1 2 3 10\nx", "bad task record"),
    (parse_tasks, b"task 1 2 3 bob 1 restart\nx", "bad task record"),
    (parse_reports, b"checkpoint 1 2 1073741825\n", "checkpoint: size: 1073741825 is out"),
    (parse_reports, b"checkpoint 1 2\n", "'checkpoint J T SIZE'"),
    (parse_tasks, b"task 1 2 3 al/ice 1\nx", "task record: bad user name 'al/ice'"),
    (parse_tasks, b"task 1 2 3 \xc3\xa9 1\nx", "bad task record"),
    (parse_tasks, b"task 1 2 3 bob 10\nshort", "task record cut short: 5 of 10 bytes"),
    (parse_orders, b"kill 1 99999999999\n", "kill: task: 99999999999 is out of range"),
]


@pytest.mark.parametrize("parse,wire,why", REFUSED)
def test_bad_input_is_refused_by_name(parse, wire, why):
    with pytest.raises(ExchangeError, match=why.replace("[", r"\[").replace("(", r"\(")):
        parse(wire)


def test_a_bad_line_refuses_the_whole_write():
    """Every line is checked before any is carried out: the caller gets all or nothing."""
    with pytest.raises(ExchangeError):
        parse_reports(b"done 1 0 0\ndone 1 1 oops\n")


tasks = st.integers(0, 2 ** 32 - 1)
RECORDS = st.one_of(
    st.builds(Lease, st.integers(0, MAX_LEASE)),
    st.builds(Output, tasks, tasks, st.sampled_from(["stdout", "stderr"]),
              st.integers(0, 1 << 39), st.binary(max_size=64)),
    st.builds(Done, tasks, tasks, st.integers(-255, 255),
              st.text(st.characters(blacklist_categories=["Cs", "Zl", "Zp", "Cc"]),
                      max_size=40).map(lambda t: " ".join(t.split()))),
    st.builds(Checkpoint, tasks, tasks, st.integers(0, 1 << 30)),
    st.builds(Vacated, tasks, tasks,
              st.text(st.characters(blacklist_categories=["Cs", "Zl", "Zp", "Cc"]),
                      max_size=40).map(lambda t: " ".join(t.split()))))


@given(st.lists(RECORDS, max_size=8))
def test_reports_round_trip(records):
    assert parse_reports(b"".join(r.encode() for r in records)) == records


@given(st.builds(TaskRecord, tasks, tasks, st.integers(1, 10_000_000),
                 st.from_regex(r"[A-Za-z0-9_-][A-Za-z0-9_.-]{0,63}", fullmatch=True),
                 st.binary(max_size=80)))
def test_task_records_round_trip(record):
    assert parse_tasks(record.encode()) == [record]


@settings(max_examples=400)
@given(st.binary(max_size=120))
def test_any_bytes_give_records_or_exchange_error(data):
    for parse in (Join.parse, Heartbeat.parse, parse_reports, parse_orders, parse_tasks):
        try:
            parse(data)
        except ExchangeError:
            pass
