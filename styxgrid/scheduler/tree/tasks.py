"""/jobs/N/tasks: a folder per task, its state, and its output (read by people,
written by the worker the task is leased to)."""

from __future__ import annotations

import os
from typing import Iterable

from ... import checks
from ...exchange import MAX_CHECKPOINT, MAX_OUTPUT
from ...ninep.errors import NinePError
from ...ninep.messages import ORDWR, OWRITE
from ...ninep.synthetic import PollHandle
from ...ninep.tree import Handle, Node, Session, Signal
from .. import access
from ..model import EXITED, FINISHED
from ..grid import Grid
from ..labour import WorkerLink
from .base import GridDir, grid_file, grid_text
from .qids import Kind, qpath


class TasksDir(GridDir):
    def __init__(self, grid: Grid, jid: int, parent: Node, output: access.Policy) -> None:
        super().__init__("tasks", qpath(Kind.TASKS, jid), parent)
        self.grid = grid
        self.jid = jid
        self.output = output                    # who reads and writes its tasks' output

    def count(self) -> int:
        job = self.grid.find_job(self.jid)
        return job.spec.tasks if job else 0

    def names(self) -> Iterable[str]:
        return map(str, range(self.count()))

    def child(self, name: str) -> Node | None:
        index = checks.index(name)
        if index is None or index >= self.count():
            return None
        return TaskDir(self.grid, self.jid, index, self, self.output)


class TaskDir(GridDir):
    def __init__(self, grid: Grid, jid: int, index: int, parent: Node,
                 output: access.Policy) -> None:
        super().__init__(str(index), qpath(Kind.TASK, jid, index), parent)
        self.grid = grid
        self.jid = jid
        self.index = index
        self.output = output

    def status(self) -> Node:
        return grid_text("status", qpath(Kind.TSTATUS, self.jid, self.index), self,
                         lambda: self.grid.task_status(self.jid, self.index))

    def node(self) -> Node:
        return grid_text("node", qpath(Kind.TNODE, self.jid, self.index), self,
                         lambda: self.grid.task_node(self.jid, self.index))

    def exit(self) -> Node:
        return grid_text("exit", qpath(Kind.TEXIT, self.jid, self.index), self, self.exit_text)

    def stdout(self) -> Node:
        return self.stream("stdout", Kind.TSTDOUT)

    def stderr(self) -> Node:
        return self.stream("stderr", Kind.TSTDERR)

    def checkpoint(self) -> Node:
        grid, jid, index = self.grid, self.jid, self.index
        job = grid.job(jid)

        def opener(session: Session, mode: int) -> Handle:
            if mode & 3 in (OWRITE, ORDWR):
                return CheckpointUpload(grid, session, jid, index)
            if access.role(session) == access.WORKER:
                leased(grid, session, jid, index)
            return CheckpointRead(grid.spool.checkpoint(jid, index))
        return grid_file("checkpoint", qpath(Kind.TCHECKPOINT, jid, index), self, opener,
                         0o666, access.task_checkpoint(job.owner, job.spec.share))

    ENTRIES = {"status": status, "node": node, "stdout": stdout, "stderr": stderr,
               "exit": exit, "checkpoint": checkpoint}

    def stream(self, name: str, kind: Kind) -> Node:
        grid, jid, index = self.grid, self.jid, self.index

        def opener(session: Session, mode: int) -> Handle:
            if mode & 3 in (OWRITE, ORDWR):
                return UploadHandle(grid, session, jid, index, name)
            return TaskStream(grid, jid, index, name)
        return grid_file(name, qpath(kind, jid, index), self, opener, 0o666,
                         self.output)

    def exit_text(self) -> str:
        """A killed task did not end by itself: it has no exit status (nor has one
        still to run), and its file is empty."""
        job = self.grid.job(self.jid)
        return f"{job.exit_of(self.index)}\n" if job.state[self.index] in EXITED else ""


class TaskStream(PollHandle):
    """One task's stdout or stderr: tail -f until the task is finished."""

    def __init__(self, grid: Grid, jid: int, index: int, stream: str) -> None:
        self.grid = grid
        self.jid = jid
        self.index = index
        self.stream = stream

    def poll(self, offset: int, count: int) -> bytes | None:
        data = self.grid.spool.read(self.jid, self.index, self.stream, offset, count)
        if data:
            return data
        job = self.grid.find_job(self.jid)
        if job is None or job.state[self.index] in FINISHED:
            return b""
        return None

    def read_signal(self) -> Signal:
        return self.grid.changed(self.jid)


def leased(grid: Grid, session: Session, jid: int, index: int) -> WorkerLink:
    """The session's worker link, if a run of the task is leased to it."""
    link: WorkerLink | None = session.data.get("link")
    job = grid.find_job(jid)
    if link is None or job is None or link.name not in grid.core.runners(job, index):
        raise access.denied(f"task {jid}.{index} is not leased to this worker")
    return link


class CheckpointRead(Handle):
    """The task's checkpoint as it was at open (a new one replaces it whole):
    a tar of the task's $STYXGRID_CHECKPOINT folder; empty when it has none."""

    def __init__(self, path: str) -> None:
        try:
            self.fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            self.fd = -1

    def read_nowait(self, offset: int, count: int) -> bytes:
        return os.pread(self.fd, count, offset) if self.fd >= 0 else b""

    def clunk(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


class CheckpointUpload(Handle):
    """A worker's new checkpoint of a task leased to it, written beside the kept
    one; its `checkpoint J T SIZE` report puts it in place (spool.py)."""

    def __init__(self, grid: Grid, session: Session, jid: int, index: int) -> None:
        self.grid, self.session, self.jid, self.index = grid, session, jid, index
        self.link = leased(grid, session, jid, index)
        self.fd = grid.spool.open_checkpoint_upload(jid, index, self.link.name)

    def write_nowait(self, offset: int, data: bytes) -> int:
        link = leased(self.grid, self.session, self.jid, self.index)  # not after the lease
        try:                                    # nor into the kept one, once committed
            same = os.stat(self.grid.spool.checkpoint(self.jid, self.index, link.name)).st_ino \
                == os.fstat(self.fd).st_ino
        except FileNotFoundError:
            same = False
        if not same:
            raise NinePError("this checkpoint upload was committed: open the file again")
        if offset + len(data) > MAX_CHECKPOINT:
            raise NinePError(f"a checkpoint past {MAX_CHECKPOINT >> 20} MiB refused")
        try:
            return os.pwrite(self.fd, data, offset)
        except OSError as exc:
            raise NinePError(f"checkpoint not stored: {exc.strerror}") from None

    def clunk(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


class UploadHandle(Handle):
    """A worker writing the output of a task leased to it, at explicit offsets."""

    def __init__(self, grid: Grid, session: Session, jid: int, index: int, stream: str) -> None:
        self.grid = grid
        self.jid = jid
        self.index = index
        link: WorkerLink | None = session.data.get("link")
        if link is None or not self.leased_to(link):
            raise access.denied(f"task {jid}.{index} is not leased to this worker")
        self.link = link
        job = grid.job(jid)
        copy = "" if job.running.get(index) == link.name else link.name   # a copy's apart
        self.fd = grid.spool.open_for_write(jid, index, stream, copy)

    def leased_to(self, link: WorkerLink) -> bool:
        job = self.grid.find_job(self.jid)
        return job is not None and (job.running.get(self.index) == link.name or
                                    link.name in job.copies.get(self.index, ()))

    def write_nowait(self, offset: int, data: bytes) -> int:
        if not self.leased_to(self.link):
            raise access.denied(f"task {self.jid}.{self.index} is no longer leased to this "
                                "worker")
        if offset + len(data) > MAX_OUTPUT:
            raise NinePError(f"output past {MAX_OUTPUT >> 40} TiB refused")
        try:
            n = os.pwrite(self.fd, data, offset)
        except OSError as exc:
            raise NinePError(f"output not stored: {exc.strerror}") from None
        self.grid.notify(self.jid)
        return n

    def clunk(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
