"""/work, the labour exchange: the served side of the worker<->scheduler exchange
(styxgrid(4); its records are in styxgrid/exchange.py)."""

from __future__ import annotations

import trio

from ...exchange import (Checkpoint, Done, ExchangeError, Heartbeat, Join, Lease, Output,
                         Held, Vacated, parse_reports)
from ...ninep.errors import NinePError
from ...ninep.synthetic import text, words
from ...ninep.tree import Handle, Session, Signal
from .. import access
from ..grid import Grid
from ..labour import ENOTJOINED, MIN_RECORD, WorkerLink, WorkRead


class WorkHandle(Handle):
    """One open fid of /work.

    The fid a worker writes `join` on is its control fid: it takes `heartbeat`,
    `lease L` and `done J T STATUS [REASON]` writes, and its reads wait for commands
    (`kill J T`).  A read on any other fid of the joined connection leases tasks: it
    waits until the worker has room and a task for it is queued, then returns one
    record per task (`task J T N SIZE` and SIZE bytes of the job's description), as
    many as the worker has room for.
    """

    def __init__(self, grid: Grid, session: Session) -> None:
        self.grid = grid
        self.session = session
        self.control: WorkerLink | None = None
        self.waiting: WorkRead | None = None

    @property
    def link(self) -> WorkerLink:
        link: WorkerLink | None = self.session.data.get("link")
        if link is None:
            raise NinePError(ENOTJOINED)
        return link

    # writes: join, heartbeat; lease, output, done

    def write_nowait(self, offset: int, data: bytes) -> int:
        head = data[:16].split(None, 1)
        first = text(head[0]) if head else ""
        if first in ("done", "lease", "output", "vacated", "held", "checkpoint"):
            raise trio.WouldBlock                 # reports may carry output: bytes
        if first == "join":
            self.join(text(data))
        elif first == "heartbeat":
            try:
                self.grid.labour.heartbeat(self.link, Heartbeat.parse(text(data)))
            except (LookupError, ValueError) as exc:
                raise NinePError(words(exc)) from None
        else:
            raise NinePError(f"unknown /work verb {first!r}: expected join, heartbeat, lease, "
                             "output, done, vacated, held or checkpoint")
        return len(data)

    def join(self, line: str) -> None:
        if self.control is not None:
            raise NinePError(f"this fid has joined already, as {self.control.name}")
        if self.session.peer.get("transport") == "tls" and \
                line.split()[1:2] != [access.user(self.session)]:
            raise access.denied("a worker joins under its certificate's name "
                                f"{access.user(self.session)!r}")
        try:
            link = self.grid.labour.join(Join.parse(line))
        except ValueError as exc:
            raise NinePError(str(exc)) from None
        self.session.data["link"] = self.control = link

    async def write(self, offset: int, data: bytes) -> int:
        """`lease L`, `output J T STREAM OFFSET SIZE` + SIZE bytes, and `done J T
        STATUS [REASON]`: all checked, then the lease set, the output spooled and
        the reports committed together."""
        link = self.link
        try:
            records = parse_reports(data)
        except ExchangeError as exc:
            raise NinePError(str(exc)) from None
        leases = [r.size for r in records if isinstance(r, Lease)]
        outputs = [r for r in records if isinstance(r, Output)]
        reports = [r for r in records if isinstance(r, (Done, Vacated, Held, Checkpoint))]
        try:
            if leases:
                self.grid.labour.set_lease(link, leases[-1])
            if reports or outputs:
                await self.grid.labour.tasks_done(link, reports, outputs)
        except LookupError as exc:
            raise NinePError(words(exc)) from None
        return len(data)

    # reads: commands on the control fid, tasks on the others

    def read_nowait(self, offset: int, count: int) -> bytes:
        link = self.link
        if self.control is not None:
            return self.orders(link)
        try:
            if self.waiting is None:
                got = self.grid.labour.take_work(link, max(1, count // MIN_RECORD))
                if isinstance(got, WorkRead):
                    self.waiting = got
                    raise trio.WouldBlock
            else:
                if not self.waiting.ready:
                    raise trio.WouldBlock
                got = self.grid.labour.answer(self.waiting)
                self.waiting = None
                if not got:
                    raise LookupError(link.lost_reason)
            return self.grid.labour.lease_text(link, got, count)
        except LookupError as exc:
            raise NinePError(words(exc)) from None

    def orders(self, link: WorkerLink) -> bytes:
        if link.commands:
            orders = b"".join(order.encode() for order in link.commands)
            link.commands.clear()
            return orders
        if link.gone:
            raise NinePError(link.lost_reason)
        raise trio.WouldBlock

    def read_signal(self) -> Signal:
        if self.control is not None:
            return self.control.command_ready
        assert self.waiting is not None
        return self.waiting.signal

    def read_cancelled(self) -> None:
        """The waiting read went away: the tasks handed to it go back to the queue.
        A second read that shared it is woken and asks for its own."""
        waiting, self.waiting = self.waiting, None
        if waiting is not None:
            self.grid.labour.unpark(waiting)
            waiting.signal.fire()

    def clunk(self) -> None:
        self.read_cancelled()
        if self.control is not None:
            self.grid.labour.lose(self.control, "connection closed")
