"""/jobs: a folder per job, its ctl and state files, and the streams that follow it."""

from __future__ import annotations

import os
from typing import Iterable

from ... import checks
from ...describe import request_size
from ...exchange import STREAMS
from ...ninep.errors import NinePError
from ...ninep.exportfs import ExportFS
from ...ninep.synthetic import PollHandle
from ...ninep.tree import Node, Session, Signal
from ...shellwords import BLANKS
from ...resources import MAX_CPUS, MAX_GPUS
from .. import access
from ..model import FINISHED, HELD, QUEUED, RUNNING
from ..grid import Grid
from .base import GridDir, grid_file, grid_text
from .qids import Kind, qpath
from .tasks import TasksDir
from .verbs import Verb, Verbs

EBADSTREAM = "stream files are read in order, from the start"
JOB_VERBS = Verbs(Verb("kill"), Verb("hold"), Verb("release"),
                  Verb("priority", "P", lambda text: checks.integer("priority", text, -1000, 1000),
                       "P in -1000..1000"),
                  Verb("retry"), Verb("remove"),
                  Verb("request_cpus", "N", lambda text: checks.integer("cpus", text, 1, MAX_CPUS),
                       f"N in 1..{MAX_CPUS}"),
                  Verb("request_memory", "SIZE", lambda text: request_size("request_memory", text),
                       "SIZE such as 2GB or 512M (no blank inside)"),
                  Verb("request_disk", "SIZE", lambda text: request_size("request_disk", text),
                       "SIZE such as 10GB (no blank inside; a plain number is KiB)"),
                  Verb("request_gpus", "N", lambda text: checks.integer("gpus", text, 0, MAX_GPUS),
                       f"N in 0..{MAX_GPUS}"))


class JobsDir(GridDir):
    def __init__(self, grid: Grid, parent: Node) -> None:
        super().__init__("jobs", qpath(Kind.JOBS), parent)
        self.grid = grid

    def names(self) -> Iterable[str]:
        return map(str, self.grid.job_ids())

    def child(self, name: str) -> Node | None:
        jid = checks.index(name)
        job = self.grid.find_job(jid) if jid is not None else None
        if job is None:
            return None
        return JobDir(self.grid, job.id, job.owner, job.spec.share, self)


def parse_job_verb(text: str) -> tuple[str, int | None]:
    """One verb a write: a write is carried out whole or not at all (a second verb
    could fail after the first had changed the job)."""
    lines = [line for line in text.split("\n") if line.strip(BLANKS)]
    if len(lines) > 1:
        raise NinePError(f"one verb per write, got {len(lines)}: write them one at a time")
    if not lines:
        raise NinePError(f"empty ctl write: expected {JOB_VERBS.help}")
    return JOB_VERBS.parse(lines[0])


class JobDir(GridDir):
    def __init__(self, grid: Grid, jid: int, owner: str, shared: bool, parent: Node) -> None:
        super().__init__(str(jid), qpath(Kind.JOB, jid), parent)
        self.grid = grid
        self.jid = jid
        self.owner = owner
        self.readers = access.owner_reads(owner, shared)     # its private files
        self.task_output = access.task_output(owner, shared)

    def ctl(self) -> Node:
        return grid_text("ctl", qpath(Kind.JOBCTL, self.jid), self, lambda: f"{self.jid}\n",
                         self.verb, access.owner_writes(self.owner))

    def desc(self) -> Node:
        return grid_text("desc", qpath(Kind.DESC, self.jid), self,
                         lambda: self.grid.job(self.jid).spec.lines(), permit=self.readers)

    def status(self) -> Node:
        return grid_text("status", qpath(Kind.STATUS, self.jid), self,
                         lambda: self.grid.job(self.jid).status_line() + "\n")

    def why(self) -> Node:
        return grid_text("why", qpath(Kind.WHY, self.jid), self,
                         lambda: self.grid.why(self.jid))

    def wait(self) -> Node:
        return grid_file("wait", qpath(Kind.WAIT, self.jid), self,
                         lambda s, m: WaitHandle(self.grid, self.jid))

    def stdout(self) -> Node:
        return grid_file("stdout", qpath(Kind.STDOUT, self.jid), self,
                         lambda s, m: JobStream(self.grid, self.jid, "stdout"),
                         permit=self.readers)

    def stderr(self) -> Node:
        return grid_file("stderr", qpath(Kind.STDERR, self.jid), self,
                         lambda s, m: JobStream(self.grid, self.jid, "stderr"),
                         permit=self.readers)

    def events(self) -> Node:
        return grid_file("events", qpath(Kind.JEVENTS, self.jid), self,
                         lambda s, m: EventStream(self.grid, self.jid), permit=self.readers)

    def tasks(self) -> Node:
        return TasksDir(self.grid, self.jid, self, self.task_output)

    def inputs(self) -> Node:
        return InputsDir(self.grid, self.jid, self, self.readers)

    def outputs(self) -> Node:
        export = access.OutputsExport(self.grid.spool.outputs_dir(self.jid), self.may_write,
                                      self.readers)
        return access.OutputsNode(export, export.root, "outputs", self)

    ENTRIES = {"ctl": ctl, "desc": desc, "status": status, "wait": wait, "stdout": stdout,
               "stderr": stderr, "events": events, "why": why, "tasks": tasks,
               "inputs": inputs, "outputs": outputs}

    def child(self, name: str) -> Node | None:
        return super().child(name) if self.grid.find_job(self.jid) is not None else None

    def may_write(self, worker: str) -> bool:
        """A worker writes the job's outputs while it runs a task of it."""
        job = self.grid.find_job(self.jid)
        return job is not None and (worker in job.running.values() or
                                    any(worker in c for c in job.copies.values()))

    async def verb(self, text: str) -> None:
        verb, arg = parse_job_verb(text)
        await self.grid.job_verb(self.jid, verb, arg)


class WaitHandle(PollHandle):
    """`wait`: a read at offset 0 parks until the job is finished, then gives its status."""

    def __init__(self, grid: Grid, jid: int) -> None:
        self.grid = grid
        self.jid = jid
        self.snapshot = b""

    def poll(self, offset: int, count: int) -> bytes | None:
        if offset == 0:
            job = self.grid.find_job(self.jid)
            if job is None:
                raise NinePError(f"job {self.jid} was removed")
            if not job.finished:
                return None
            self.snapshot = (job.status_line() + "\n").encode()
        return self.snapshot[offset:offset + count]

    def read_signal(self) -> Signal:
        return self.grid.ended(self.jid)


def _next_unfinished(state: bytearray, start: int, tasks: int) -> int:
    """The first task >= start not finished (`tasks` if none): memchr per state."""
    found = [i for i in (state.find(s, start) for s in (QUEUED, RUNNING, HELD)) if i >= 0]
    return min(found, default=tasks)


class JobStream(PollHandle):
    """A job's stdout or stderr: its tasks' output in task order, tail -f style.

    The cursor walks task by task: it reads a task's file to its end and moves on
    only when that task is finished (its worker uploads everything before it
    reports), so the stream ends exactly when the job does."""

    def __init__(self, grid: Grid, jid: int, stream: str) -> None:
        assert stream in STREAMS
        self.grid = grid
        self.jid = jid
        self.stream = stream
        self.task = self.pos = self.offset = 0

    def poll(self, offset: int, count: int) -> bytes | None:
        if offset != self.offset:
            if offset != 0:
                raise NinePError(EBADSTREAM)
            self.task = self.pos = self.offset = 0
        job = self.grid.find_job(self.jid)
        if job is None:
            return b""
        spool, tasks = self.grid.spool, job.spec.tasks
        while self.task < tasks:
            data = spool.read(self.jid, self.task, self.stream, self.pos, count)
            if data:
                self.pos += len(data)
                self.offset += len(data)
                return data
            if job.state[self.task] not in FINISHED:
                return None
            # on to the next task that has output or is not finished (both found in C)
            self.task = min(spool.next_with_output(self.jid, self.task + 1, tasks),
                            _next_unfinished(job.state, self.task + 1, tasks))
            self.pos = 0
        return b""

    def read_signal(self) -> Signal:
        return self.grid.changed(self.jid)


class EventStream(PollHandle):
    """/events: lines from the moment of open.  A job's events: its whole history
    (while the log still holds it), ending with the line that announces its end."""

    def __init__(self, grid: Grid, jid: int) -> None:
        self.grid = grid
        self.jid = jid
        self.cursor = grid.event_cursor(jid)

    def poll(self, offset: int, count: int) -> bytes | None:
        data, self.cursor = self.grid.events.take(self.cursor, self.jid, count)
        if data:
            return data
        if self.jid and not self.grid.has_events_coming(self.jid):
            return b""
        return None

    def read_signal(self) -> Signal:
        return self.grid.events.changed


class InputsDir(GridDir):
    """The job's declared inputs, as they are in /data now (read-only; read as the
    job's files are)."""

    def __init__(self, grid: Grid, jid: int, parent: Node, readers: access.Policy) -> None:
        super().__init__("inputs", qpath(Kind.INPUTS, jid), parent)
        self.grid = grid
        self.jid = jid
        self.readers = readers

    def permits(self, session: Session, want: int) -> bool:
        return self.readers(session, want)

    def inputs(self) -> tuple[str, ...]:
        job = self.grid.find_job(self.jid)
        return job.spec.inputs if job else ()

    def names(self) -> Iterable[str]:
        return [os.path.basename(p) for p in self.inputs()]

    def child(self, name: str) -> Node | None:
        for path in self.inputs():
            if os.path.basename(path) == name:
                export = ExportFS(self.grid.data_dir)
                node: Node = access.DataNode(export, export.root, "data", None)
                try:
                    for part in path.strip("/").split("/"):
                        node = node.walk(part, Session("", ""))
                except NinePError:
                    return None
                return node
        return None

