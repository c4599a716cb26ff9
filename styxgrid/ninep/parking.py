"""Reads that wait on a `Signal`, kept as small records instead of tasks (lib9p's
respond-later): a hundred thousand waiting reads (every worker's /work, every
`cat events`) cost a hundred thousand records of a few slots.

When a signal fires, its records go on the connection's `woken` list and one
short task asks their handles again: what they answer is sent, and a read that
still has nothing waits on the next signal its handle names.  Tflush drops a
record at once (the read gets no answer); a read still waiting when its fid is
clunked is answered "interrupted".  Either way its handle is told, once.
"""

from __future__ import annotations

import logging
import weakref
from typing import TYPE_CHECKING

import trio

from . import errors as E
from . import memory
from .errors import NinePError
from .messages import Message, Rerror, Rread, Tread
from .tree import Handle, Signal

if TYPE_CHECKING:
    from .server import Connection, Fid

log = logging.getLogger("styxgrid.ninep")
FAIR_SHARE = 64               # woken reads answered at once, before others get a turn


class Parked:
    """A read waiting on a `Signal`: a record of a few slots instead of a task, so
    that many waiting reads (every worker's, every `cat events`) cost little."""

    __slots__ = ("parking", "msg", "fid", "handle", "count", "signal", "interrupted")

    def __init__(self, parking: "Parking", msg: Tread, fid: "Fid", handle: Handle,
                 count: int) -> None:
        self.parking = parking
        self.msg = msg
        self.fid = fid
        self.handle = handle
        self.count = count
        self.signal: Signal | None = None
        self.interrupted = False

    def wait_on(self, signal: Signal) -> None:
        self.signal = signal
        signal.add(self)

    def unwait(self) -> None:
        if self.signal is not None:
            self.signal.discard(self)
            self.signal = None

    def wake(self) -> None:
        self.signal = None
        self.parking.woken.append(self)
        self.parking.answer_soon()


class Parking:
    """One connection's waiting reads, by tag."""

    def __init__(self, conn: "Connection") -> None:
        # a weak reference: a connection and its parking must not be a reference
        # cycle, or a closed connection waits for a full collection (which the
        # scheduler's thresholds make rare) before its memory is given back
        self.conn: Connection = weakref.proxy(conn)
        self.reads: dict[int, Parked] = {}
        self.woken: list[Parked] = []         # parked reads to ask again
        self.answering = False                # a task is answering `woken`

    def park(self, msg: Tread, fid: "Fid", handle: Handle, count: int,
             signal: Signal) -> None:
        if len(self.reads) >= self.conn.limits.max_waiting:
            raise NinePError(f"too many reads waiting on this connection "
                             f"(at most {self.conn.limits.max_waiting})")
        if len(fid.parked) >= self.conn.limits.max_waiting_fid:
            raise NinePError(f"too many reads waiting on this fid "
                             f"(at most {self.conn.limits.max_waiting_fid})")
        parked = Parked(self, msg, fid, handle, count)
        self.reads[msg.tag] = parked
        fid.parked[parked] = None
        parked.wait_on(signal)

    def answer_soon(self) -> None:
        if not self.answering and self.conn.nursery is not None:
            self.answering = True
            self.conn.nursery.start_soon(self.answer_woken)

    async def answer_woken(self) -> None:
        """Ask the handles of woken reads again; send the answers, park the rest."""
        try:
            while self.woken:
                woken = self.woken[:FAIR_SHARE]     # others get a turn in between
                del self.woken[:FAIR_SHARE]
                out: list[bytes] = []
                for parked in woken:
                    self.retry(parked, out)
                await self.conn.send(out)
                await trio.lowlevel.checkpoint()
        finally:
            self.answering = False

    def retry(self, parked: Parked, out: list[bytes]) -> None:
        msg = parked.msg
        if self.reads.get(msg.tag) is not parked:
            return                                  # flushed meanwhile
        reply: Message
        if parked.interrupted:
            reply = Rerror(msg.tag, E.EINTERRUPTED)
        else:
            try:
                data = parked.handle.read_nowait(msg.offset, parked.count)
                reply = Rread(msg.tag, data[:parked.count])
            except trio.WouldBlock:
                signal = parked.handle.read_signal()
                if signal is not None:
                    parked.wait_on(signal)
                    return
                self.unpark(parked)
                self.conn.spawn(msg.tag, self.conn.read_file, (msg, parked.handle, parked.count))
                return
            except NinePError as exc:
                reply = Rerror(msg.tag, exc.ename)
            except Exception as exc:
                reply = self.conn.failed(msg, exc)
        self.unpark(parked)
        self.conn.reply(reply, out)

    def cancel(self, parked: Parked) -> None:
        """A parked read is flushed or its connection closes: it gets no answer."""
        self.interrupt(parked)
        self.unpark(parked)

    def interrupt(self, parked: Parked) -> None:
        """The read stops waiting and its handle is told (a lease hands its tasks
        back); told once, however the read ends."""
        parked.unwait()
        if parked.interrupted:
            return
        parked.interrupted = True
        try:
            parked.handle.read_cancelled()
        except Exception:
            log.exception("cancelling a read of %s for %s failed", parked.fid.node, self.conn.peer)

    def cancel_all(self) -> None:
        """The connection ends or starts a new session: no read gets an answer."""
        for parked in list(self.reads.values()):
            self.cancel(parked)
        self.woken.clear()

    def unpark(self, parked: Parked) -> None:
        """The read is answered or cancelled: its tag may be used again."""
        del self.reads[parked.msg.tag]
        del parked.fid.parked[parked]
        memory.released(1)
