"""A seeded 9P2000 fuzzer for live servers, and an honest client beside it.

The fuzzer writes its own bytes (the message classes refuse invalid fields, so it
packs them by hand): random frames, every T-message with every field drawn from
values that have broken servers (sizes, fids, tags, offsets of 2^63 and 2^64-1,
counts, modes, strings with NUL, invalid UTF-8 or 65,535 bytes, walks of 17
names), walks to the grid's real files followed by opens, reads and writes of
verbs, and odd sequences (walk before attach, flush of unknown tags, thousands
of fids, bursts of pipelined requests).  Replies are drained as they come; a
connection the server closes (bytes that are not 9P) is dialled again.

Used by tests/test_fuzz.py (seconds) and bench/fuzz.py (a million messages).
"""

from __future__ import annotations

import random
import struct
import time
from dataclasses import dataclass, field
from typing import Awaitable, Callable

import trio

from styxgrid.ninep.transport import Transport

Dial = Callable[[], Awaitable[Transport]]
HONEST_PACE = 0.01         # seconds between an honest user's operations

U64S = (0, 1, 4096, (1 << 62), (1 << 63) - 1, 1 << 63, (1 << 64) - 1)
U32S = (0, 1, 2, 3, 7, 64, 8192, 0x7FFFFFFF, 0xFFFFFFFE, 0xFFFFFFFF)
MODES = (0, 1, 2, 3, 0x10, 0x40, 0x50, 0x13, 0x80, 0xFF)
NAMES = ("new", "ctl", "stats", "events", "jobs", "nodes", "data", "work", "1", "0", "tasks",
         "status", "wait", "stdout", "desc", "why", "index", "inputs", "outputs", "..", ".",
         "", "a/b", "a\0b", "²", "x" * 300, "join", "ca", "f")
PATHS = (("new",), ("ctl",), ("stats",), ("events",), ("work",), ("nodes", "index"),
         ("jobs", "1", "ctl"), ("jobs", "1", "status"), ("jobs", "1", "wait"),
         ("jobs", "1", "stdout"), ("jobs", "1", "tasks"), ("jobs", "1", "tasks", "0", "stdout"),
         ("jobs", "1", "why"), ("data",), ("join",), ("ca",), ("f",), ("jobs",))
VERBS = (b"submit true\n", b"tasks 3\ncmd true\nsubmit\n", b"kill\n", b"hold\n", b"release\n",
         b"retry\n", b"priority --5\n", b"priority 99999999999999\n", b"drain\n",
         b"join fz\nslots 2\n", b"join fz\nattr Big = 99999999999999999999999\n",
         b"done 1 0 99999999999\n", b"output 1 0 stdout 4611686018427387904 1\nx",
         b"lease 4\n", b"heartbeat load=nan\n", b"cmd 'a\nsubmit\n", b"env A=\0\nsubmit x\n",
         b"token x\n", b"\xff\xfe\n", b"remove\n", b"")


def _s(text: str | bytes) -> bytes:
    raw = text.encode("utf-8", "surrogatepass") if isinstance(text, str) else text
    return struct.pack("<H", len(raw) & 0xFFFF) + raw[:0xFFFF]


def _frame(code: int, tag: int, body: bytes) -> bytes:
    return struct.pack("<IBH", 7 + len(body), code, tag) + body


class Generator:
    """Frames to send, from a seed: the same seed gives the same frames."""

    def __init__(self, seed: int) -> None:
        self.rnd = random.Random(seed)

    def u32(self) -> int:
        r = self.rnd
        return r.choice(U32S) if r.random() < 0.7 else r.getrandbits(32)

    def fid(self) -> int:
        r = self.rnd
        return r.randrange(16) if r.random() < 0.8 else self.u32()

    def tag(self) -> int:
        r = self.rnd
        return r.randrange(64) if r.random() < 0.9 else r.choice((0xFFFF, r.getrandbits(16)))

    def u64(self) -> int:
        r = self.rnd
        return r.choice(U64S) if r.random() < 0.6 else r.getrandbits(r.choice((8, 32, 64)))

    def string(self) -> bytes:
        r = self.rnd
        pick = r.random()
        if pick < 0.6:
            return r.choice(NAMES).encode()
        if pick < 0.62:
            return b"\xff\xc0" + r.randbytes(r.randrange(8))         # invalid UTF-8
        if pick < 0.67:
            return b"y" * 65535
        return r.randbytes(r.randrange(12))

    def stat(self) -> bytes:
        r = self.rnd
        body = struct.pack("<HIBIQIIIQ", r.choice((0, 0xFFFF)), r.choice((0, 0xFFFFFFFF)),
                           r.choice((0, 0x80, 0xFF)), self.u32(), self.u64(),
                           r.choice((0o644, 0o4755, 0x80000000 | 0o755, 0xFFFFFFFF)),
                           self.u32(), self.u32(), self.u64())
        body += b"".join(_s(self.string()) for _ in range(4))
        if r.random() < 0.1:
            body = body[:r.randrange(len(body) + 1)]                # a cut stat
        body = body[:0xFFF0]
        return struct.pack("<H", len(body) + 2) + struct.pack("<H", len(body)) + body

    def message(self) -> bytes:
        """One frame: mostly a T-message with drawn fields, sometimes garbage."""
        r = self.rnd
        pick = r.random()
        if pick < 0.003:
            return r.randbytes(r.randrange(1, 40))                    # not 9P at all
        if pick < 0.006:
            body = r.randbytes(r.randrange(0, 64))
            return _frame(r.choice((99, 101, 106, 107, 128, 255, 100, 110)), self.tag(), body)
        code = r.choice((100, 102, 104, 108, 110, 110, 110, 112, 112, 114, 116, 116, 116, 118,
                         118, 118, 120, 122, 124, 126))
        tag = self.tag()
        if code == 100:
            body = struct.pack("<I", self.u32()) + _s(r.choice((b"9P2000", b"9P2000.L", b"",
                                                                 b"9P\0")))
        elif code == 102:
            body = struct.pack("<I", self.fid()) + _s(self.string()) + _s(self.string())
        elif code == 104:
            body = struct.pack("<II", self.fid(), r.choice((0xFFFFFFFF, self.fid()))) + \
                _s(self.string()) + _s(r.choice((b"", b"worker", b"join", self.string())))
        elif code == 108:
            body = struct.pack("<H", self.tag())
        elif code == 110:
            if r.random() < 0.6:
                names = [n.encode() for n in r.choice(PATHS)]
            else:
                names = [self.string() for _ in range(r.choice((0, 1, 2, 2, 16, 16, 17)))]
            body = struct.pack("<IIH", self.fid(), self.fid(), len(names)) + \
                b"".join(_s(n) for n in names)
        elif code == 112:
            body = struct.pack("<IB", self.fid(), r.choice(MODES))
        elif code == 114:
            body = struct.pack("<I", self.fid()) + _s(self.string()) + \
                struct.pack("<IB", r.choice((0o644, 0o4755, 0x80000000 | 0o755, self.u32())),
                            r.choice(MODES))
        elif code == 116:
            body = struct.pack("<IQI", self.fid(), self.u64() if r.random() < 0.3 else 0,
                               r.choice((0, 1, 64, 8192, 0xFFFFFFFF)))
        elif code == 118:
            data = r.choice(VERBS) if r.random() < 0.8 else r.randbytes(r.randrange(100))
            body = struct.pack("<IQI", self.fid(), self.u64() if r.random() < 0.3 else 0,
                               len(data)) + data
        elif code in (120, 122, 124):
            body = struct.pack("<I", self.fid())
        else:
            body = struct.pack("<I", self.fid()) + self.stat()
        if r.random() < 0.003:                                       # a lying size field
            return struct.pack("<IBH", r.choice((0, 6, 7, 0xFFFFFFFF)), code, tag) + body
        return _frame(code, tag, body)

    def opening(self, uname: str, aname: str) -> list[bytes]:
        """Version and attach as fid 0: the way into the tree for what follows."""
        return [_frame(100, 0xFFFF, struct.pack("<I", 65560) + _s("9P2000")),
                _frame(104, 1, struct.pack("<II", 0, 0xFFFFFFFF) + _s(uname) + _s(aname))]

    def burst(self) -> list[bytes]:
        """An odd sequence: many fids, a pipeline of reads, flushes of unknown tags."""
        r = self.rnd
        pick = r.random()
        if pick < 0.3:
            return [_frame(110, r.randrange(64), struct.pack("<IIH", 0, 100 + i, 0))
                    for i in range(r.randrange(100, 2000))]
        if pick < 0.6:
            return [_frame(108, r.randrange(64), struct.pack("<H", r.getrandbits(16)))
                    for _ in range(200)]
        return [self.message() for _ in range(r.randrange(100, 1000))]


@dataclass
class Tally:
    sent: int = 0
    answered: int = 0
    closed: int = 0                      # connections the server closed (not 9P)


async def fuzz(dial: Dial, messages: int, seed: int, uname: str, aname: str,
               tally: Tally) -> None:
    """Send `messages` frames from `seed` on connections from `dial`."""
    gen = Generator(seed)
    while tally.sent < messages:
        transport = await dial()
        drained = trio.Event()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_drain, transport, tally, drained)
            try:
                frames = gen.opening(uname, aname)
                while tally.sent < messages:
                    if gen.rnd.random() < 0.01:
                        frames += gen.burst()
                    else:
                        frames += [gen.message() for _ in range(gen.rnd.randrange(1, 32))]
                    await transport.send_frames(frames)
                    tally.sent += len(frames)
                    frames = []
                    await trio.lowlevel.checkpoint()                 # let the replies in
                    if gen.rnd.random() < 0.002:
                        break                                        # hang up, dial again
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                tally.closed += 1
            with trio.move_on_after(0.2):
                await drained.wait()                                 # the last replies
            nursery.cancel_scope.cancel()
        await transport.aclose()


async def _drain(transport: Transport, tally: Tally, drained: trio.Event) -> None:
    """Count replies by their size fields; end when the server closes."""
    buf = b""
    try:
        while True:
            data = await transport.receive_some(65536)
            if not data:
                break
            buf += data
            while len(buf) >= 4:
                size = struct.unpack_from("<I", buf)[0]
                if len(buf) < size:
                    break
                buf = buf[size:]
                tally.answered += 1
    except (trio.BrokenResourceError, trio.ClosedResourceError):
        pass
    drained.set()


@dataclass
class Honest:
    """An honest user beside the fuzzer: submit, read the id, status and stats."""

    ops: int = 0
    latencies: list[float] = field(default_factory=list)


async def honest_user(client, owner: str, honest: Honest, stop: trio.Event) -> None:
    from styxgrid.api import GridClient
    while not stop.is_set():
        start = time.perf_counter()
        job = await GridClient(client).submit("submit true\n")
        status = (await client.read_file(f"jobs/{job}/status")).decode()
        assert status.split()[0] == str(job) and f"owner={owner}" in status, status
        assert b"jobs=" in await client.read_file("stats")
        honest.latencies.append(time.perf_counter() - start)
        honest.ops += 1
        await trio.sleep(HONEST_PACE)          # a user at a shell, not a flood
