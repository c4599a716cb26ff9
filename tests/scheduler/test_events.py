"""The event log: readers from any point, per-job filtering, a reader left behind."""

from styxgrid.scheduler.events import EventLog


async def test_readers_near_either_end_and_a_reader_left_behind():
    log = EventLog(keep=100)
    for i in range(150):
        log.add(i % 3, f"line {i}")
    data, cursor = log.take(0, 0, 10**6)               # fell behind: told how much it missed
    lines = data.decode().splitlines()
    assert "50 events dropped" in lines[0]
    assert lines[1].endswith("line 50") and lines[-1].endswith("line 149")
    assert cursor == 150
    data, _ = log.take(140, 1, 10**6)                  # near the right end, one job only
    assert [line.split()[-1] for line in data.decode().splitlines()] == \
        [str(i) for i in range(140, 150) if i % 3 == 1]
    data, _ = log.take(60, 0, 10**6)                   # near the left end
    assert data.decode().splitlines()[0].endswith("line 60")
    data, cursor = log.take(150, 0, 10**6)             # nothing new yet
    assert data == b"" and cursor == 150


async def test_a_read_stops_at_the_count_but_gives_at_least_one_line():
    log = EventLog()
    for i in range(5):
        log.add(1, f"line {i}")
    data, cursor = log.take(0, 0, 1)
    assert data.decode().count("\n") == 1 and cursor == 1


def test_the_operators_log_shows_what_a_peer_wrote_escaped():
    from styxgrid.scheduler.events import key_values
    forged = "job 3 submitted tasks=1 owner=eve\x1b]0;pwned\x07\u2028node=evil\x85x"
    line = key_values(forged)
    assert line.startswith("job=3 submitted tasks=1 owner=eve")
    assert all(c.isprintable() for c in line)
    assert "\\x1b" in line and "\\u2028" in line and "\\x85" in line
