"""The worker's one connection out: dial, join, heartbeats, the scheduler's
orders, a read of /work always waiting for tasks, and the reports going back.

Each connection is a `Link` of a `Linker`, which dials again with backoff when
one drops: the runner's tasks go on meanwhile, the next `join` names the tasks
still held (the scheduler takes them back), and their reports go on the new
connection.  Everything said on the connection is an exchange record
(styxgrid/exchange.py).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Any, Awaitable, Callable, TypeVar

import trio

from ..describe import JobSpec
from ..errgroups import leaves, sole
from ..exchange import REPLACED, ExchangeError, Heartbeat, Join, Lease, parse_orders, parse_tasks
from ..ninep.client import Client, ConnectionLost, File, open_client
from ..ninep.errors import NinePError
from ..ninep.messages import OREAD, ORDWR
from ..security.dial import dial
from .config import WorkerConfig
from .runner import Runner
from .sandbox import TaskRun

log = logging.getLogger("styxgrid.worker")
T = TypeVar("T")


class Replaced(Exception):
    """A newer worker joined under this worker's name: this one stops (the
    scheduler's message says so); rejoining would only evict that one in turn."""


class JoinRefused(Exception):
    """The scheduler answered the join and refused it (a bad name, slots out of
    range, another's name): asking again would get the same answer."""


class TaskParser:
    """Reads the records of a lease, `task J T N SIZE` + SIZE bytes of description;
    a job's description is parsed once."""

    def __init__(self, keep: int = 64) -> None:
        self.specs: dict[bytes, JobSpec] = {}
        self.keep = keep

    def parse(self, data: bytes) -> list[TaskRun]:
        out = []
        try:
            records = parse_tasks(data)
        except ExchangeError as exc:
            raise NinePError(f"from the scheduler: {exc}") from None
        for r in records:
            spec = self.specs.get(r.description)
            if spec is None:
                if len(self.specs) >= self.keep:
                    self.specs.clear()
                spec = self.specs[r.description] = JobSpec.from_lines(r.description.decode())
            out.append(TaskRun(r.job, r.task, r.tasks, r.owner, spec,
                               checkpoint=r.checkpoint))
        return out


@dataclass(eq=False)
class Link:
    """The current connection: its client and its control fid on /work."""

    client: Client
    ctl: File


class Linker:
    def __init__(self, config: WorkerConfig, runner: Runner, ad: dict[str, Any]) -> None:
        self.config = config
        self.runner = runner
        self.ad = ad
        self.parser = TaskParser()
        self.owner = "away"                     # what the owner's return did (owner.py)
        self.beat_now = trio.Event()            # the owner's state changed: say it now
        self.link: Link | None = None
        self.linked = trio.Event()

    async def run(self, task_status: trio.TaskStatus[None]) -> None:
        """Stay connected until cancelled, dialling again whenever the link drops;
        readiness is the first join."""
        backoff = 0.05
        while True:
            try:
                await self.connect(task_status)
                backoff = 0.05
            except* (ConnectionLost, OSError, NinePError, trio.BrokenResourceError,
                     trio.TooSlowError) as lost:
                replaced = lost.subgroup(lambda e: isinstance(e, NinePError) and
                                         e.ename.startswith(REPLACED))
                if replaced is not None:
                    raise Replaced(leaves(replaced)[0].args[0]) from None
                log.warning("node=%s scheduler=%s lost: %s; dialling again in %.1fs",
                            self.config.name, self.config.scheduler,
                            sole(lost.exceptions[0]), backoff)
            task_status = trio.TASK_STATUS_IGNORED
            await trio.sleep(backoff)
            backoff = min(backoff * 2, 5.0)

    def join(self) -> Join:
        self.ad["LoadAvg"] = round(os.getloadavg()[0], 2)
        offered = self.runner.pool.offer
        return Join(self.config.name, self.config.slots, self.runner.wanted_lease(),
                    tuple(self.ad.items()), tuple(self.runner.tasks), offered.memory,
                    offered.disk, offered.gpus)

    async def connect(self, task_status: trio.TaskStatus[None]) -> None:
        stream, uname = await dial(self.config.scheduler, self.config.identity)
        async with open_client(stream, uname=uname, aname="worker") as client:
            ctl = await client.open("work", ORDWR)
            lease = self.runner.wanted_lease()
            try:
                await ctl.pwrite(0, self.join().encode())
            except NinePError as exc:
                raise JoinRefused(f"{self.config.scheduler} refused the join: {exc.ename}") \
                    from None
            self.runner.lease_told = lease
            self.runner.inline = min(self.config.inline_output, ctl.iounit // 4)
            self.link = Link(client, ctl)
            self.linked.set()
            task_status.started()
            log.info("node=%s joined scheduler=%s slots=%d held=%d", self.config.name,
                     self.config.scheduler, self.config.slots, len(self.runner.tasks))
            try:
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(self.heartbeats, ctl)
                    nursery.start_soon(self.orders, ctl)
                    nursery.start_soon(self.runner.stream_output, client)
                    nursery.start_soon(self.reporter, ctl)
                    nursery.start_soon(self.leaser, client)
            finally:
                self.link = None
                self.linked = trio.Event()

    def owner_changed(self, state: str) -> None:
        self.owner = state
        self.beat_now.set()

    async def heartbeats(self, ctl: File) -> None:
        """Say we are alive, with the load and the owner's state: every heartbeat,
        and at once when the owner's state changes."""
        while True:
            with trio.move_on_after(self.config.heartbeat):
                await self.beat_now.wait()
            self.beat_now = trio.Event()
            await ctl.pwrite(0, Heartbeat(os.getloadavg()[0], self.owner).encode())

    async def reporter(self, ctl: File) -> None:
        """Send the due reports in one write (as many as fit), with a `lease` line
        when the wanted lease changed: while one batch is committed the next one
        gathers.  Their tasks are forgotten once the scheduler has them.  A batch
        cut off by a lost connection is sent again on the next one (the scheduler
        ignores a report it already has); till then its tasks are still ours, and
        `join` names them."""
        runner = self.runner
        while True:
            while not runner.report_due():
                runner.outbox_ready = trio.Event()
                await runner.outbox_ready.wait()
            batch = runner.batch(ctl.iounit - 64)
            lease = runner.wanted_lease()
            head = Lease(lease).encode() if lease != runner.lease_told else b""
            try:
                await ctl.pwrite(0, head + b"".join(r.data for r in batch))
            except NinePError as exc:       # not taken: a lost worker states it in its join
                log.warning("node=%s reports refused: %s tasks=%s", self.config.name, exc,
                            ",".join(f"{r.run.job}.{r.run.index}" for r in batch))
            except BaseException:
                runner.outbox[:0] = batch
                raise
            runner.reported(batch, lease)

    async def orders(self, ctl: File) -> None:
        """The scheduler's orders: `kill J T`."""
        while True:
            try:
                orders = parse_orders(await ctl.pread(0, ctl.iounit))
            except ExchangeError as exc:
                raise NinePError(f"from the scheduler: {exc}") from None
            for order in orders:
                self.runner.kill(order.job, order.task)

    async def leaser(self, client: Client) -> None:
        """Keep one read of /work waiting: the scheduler answers it whenever this
        worker has room under its lease and tasks for it are queued."""
        f = await client.open("work", OREAD)
        async with f:
            while True:
                for run in self.parser.parse(await f.pread(0, f.iounit)):
                    self.runner.take(run)

    async def over_link(self, action: Callable[[Client], Awaitable[T]]) -> T:
        """`action` on whichever connection is up; on the next one if that is lost."""
        while True:
            while self.link is None:
                await self.linked.wait()
            try:
                return await action(self.link.client)
            except ConnectionLost:
                await trio.sleep(0.05)
