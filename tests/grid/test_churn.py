"""Connections that come and go leave nothing behind: a crowd that parks thousands
of reads on /events and hangs up costs the scheduler nothing once it is gone."""

from __future__ import annotations

import os
import socket
import struct
import time

from styxgrid.ninep.codec import decode_message, encode
from styxgrid.ninep.messages import NOFID, NOTAG, Rerror, Tattach, Topen, Tread, Tstat, Tversion, Twalk

CONNECTIONS = 40
FIDS = 125              # each with 16 reads waiting (the most a fid may have)
READS = 16 * FIDS       # per connection; each waits: nothing happens on the grid meanwhile


def rss(pid: int) -> int:
    with open(f"/proc/{pid}/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def rpc(s: socket.socket, msg):
    s.sendall(encode(msg))
    head = s.recv(4, socket.MSG_WAITALL)
    size, = struct.unpack("<I", head)
    reply = decode_message(head + s.recv(size - 4, socket.MSG_WAITALL))
    assert not isinstance(reply, Rerror), reply
    return reply


def park_reads(path: str) -> socket.socket:
    s = socket.socket(socket.AF_UNIX)
    s.connect(path)
    rpc(s, Tversion(NOTAG, 8192 + 24, "9P2000"))
    rpc(s, Tattach(0, 0, NOFID, "root", ""))
    for fid in range(1, FIDS + 1):
        rpc(s, Twalk(0, 0, fid, ("events",)))
        rpc(s, Topen(0, fid, 0))
    s.sendall(b"".join(encode(Tread(tag, 1 + tag % FIDS, 0, 8192))
                       for tag in range(1, READS + 1)))
    rpc(s, Tstat(60000, 1))             # answered after every read before it was taken
    return s


def test_rss_after_a_crowd_of_waiting_reads_hangs_up_returns_to_within_20_percent(grid):
    pid = grid.scheduler.popen.pid
    before = rss(pid)                   # just started: the strictest baseline
    for _ in range(2):
        crowd = [park_reads(grid.sock) for _ in range(CONNECTIONS)]
        peak = rss(pid)
        for s in crowd:
            s.close()
        deadline = time.monotonic() + 30
        while rss(pid) > before * 1.2 and time.monotonic() < deadline:
            time.sleep(0.5)
        after = rss(pid)
        assert after <= before * 1.2, (
            f"RSS {before / 1e6:.1f} MB before, {peak / 1e6:.1f} MB with "
            f"{CONNECTIONS * READS} reads waiting, {after / 1e6:.1f} MB after they hung up")
    assert grid.scheduler.popen.poll() is None
