"""The scheduler's served tree (styxgrid(4)): a thin 9P adapter over `Grid`.

Directories are made on walk from the grid's state, so a job appears in `ls jobs`
the moment it is committed.  State files answer a read at offset 0 with a fresh
snapshot and serve later offsets from it, so `cat` sees one consistent value.
Streams (stdout, events) park a read until there is more, and end when their job
ends.  Error texts are the grid's own words: the shell user sees them.
"""

from __future__ import annotations

import codecs
import os
from typing import Awaitable, Callable, Iterable, Iterator

import trio

from ..ninep.errors import EBADWSTAT, ENOTFOUND, NinePError, quoted
from ..ninep.exportfs import ExportFS
from ..ninep.messages import DMDIR, OWRITE, ORDWR, Stat
from ..ninep.tree import Handle, Node, Session, Signal, SyntheticNode
from ..shellwords import BLANKS
from .. import checks
from . import access
from .access import Policy
from .core import EXITED, FINISHED, HELD, QUEUED, RUNNING, CoreError
from ..describe import Description, DescriptionError, check_new
from ..exchange import (MAX_OUTPUT, STREAMS, Done, ExchangeError, Heartbeat, Join, Lease,
                        Output, parse_reports)
from .grid import ENOTJOINED, MIN_RECORD, Grid, WorkerLink, WorkRead

# Qid paths: kind in the low byte, then job (32 bits), then task + 1 (24 bits).
(K_ROOT, K_NEW, K_CTL, K_STATS, K_EVENTS, K_JOBS, K_NODES, K_WORK, K_JOB, K_JOBCTL, K_DESC,
 K_STATUS, K_WAIT, K_STDOUT, K_STDERR, K_JEVENTS, K_WHY, K_TASKS, K_INPUTS, K_TASK, K_TSTATUS,
 K_TNODE, K_TSTDOUT, K_TSTDERR, K_TEXIT, K_INDEX, K_NODE, K_NSTATUS, K_NAD, K_NCTL) = range(30)

JOB_VERBS = "kill, hold, release, priority P, retry or remove"
EBADSTREAM = "stream files are read in order, from the start"


def qpath(kind: int, job: int = 0, task: int = -1) -> int:
    return kind | (job & 0xFFFFFFFF) << 8 | ((task + 1) & 0xFFFFFF) << 40


ReadFn = Callable[[], str]
WriteFn = Callable[[str], Awaitable[None]]


class TextHandle(Handle):
    """A state or ctl file: reads give a snapshot taken at offset 0; each write is a
    whole verb (or verbs, one a line) handed to `write_fn`."""

    def __init__(self, read_fn: ReadFn | None, write_fn: WriteFn | None) -> None:
        self.read_fn = read_fn
        self.write_fn = write_fn
        self.snapshot = b""

    def read_nowait(self, offset: int, count: int) -> bytes:
        if self.read_fn is None:
            return b""
        if offset == 0:
            self.snapshot = _call(self.read_fn).encode()
        return self.snapshot[offset:offset + count]

    async def write(self, offset: int, data: bytes) -> int:
        if self.write_fn is None:
            raise NinePError("file is read-only")
        await self.write_fn(_text(data))
        return len(data)


def _call(fn: ReadFn) -> str:
    try:
        return fn()
    except (LookupError, CoreError) as exc:
        raise NinePError(_words(exc)) from None


def _words(exc: Exception) -> str:
    return str(exc.args[0]) if exc.args else str(exc)


def _text(data: bytes) -> str:
    try:
        return data.decode()
    except UnicodeDecodeError:
        raise NinePError("not UTF-8 text") from None


class PollHandle(Handle):
    """A file whose read may have to wait: `poll` answers now or says None (wait);
    `read_signal` names the next change worth polling again."""

    def poll(self, offset: int, count: int) -> bytes | None:
        raise NotImplementedError

    def read_signal(self) -> Signal:
        raise NotImplementedError

    def read_nowait(self, offset: int, count: int) -> bytes:
        data = self.poll(offset, count)
        if data is None:
            raise trio.WouldBlock
        return data


class File(SyntheticNode):
    """A synthetic file; `opener(session, mode)` gives its handle, `policy` says who
    may do what (access.py)."""

    def __init__(self, name: str, qid_path: int, parent: Node,
                 opener: Callable[[Session, int], Handle], mode: int = 0o444,
                 policy: Policy = access.people_read) -> None:
        super().__init__(name, qid_path, mode, parent=parent)
        self.opener = opener
        self.policy = policy

    def permits(self, session: Session, want: int) -> bool:
        return self.policy(session, want)

    def wstat(self, stat: Stat, session: Session) -> None:
        """Truncation (`echo verb > ctl` opens with O_TRUNC) is accepted and means
        nothing: these files hold no bytes."""
        if stat != Stat.dont_touch(length=stat.length):
            raise NinePError(EBADWSTAT)

    def open(self, mode: int, session: Session) -> Handle:
        return self.opener(session, mode)


class Dir(SyntheticNode):
    """A synthetic directory: `names()` lists it, `child(name)` makes an entry."""

    policy: Policy = staticmethod(access.on_the_way)

    def __init__(self, name: str, qid_path: int, parent: Node | None) -> None:
        super().__init__(name, qid_path, DMDIR | 0o555, parent=parent)

    def permits(self, session: Session, want: int) -> bool:
        return self.policy(session, want)

    def names(self) -> Iterable[str]:
        return ()

    def child(self, name: str) -> Node | None:
        return None

    def walk(self, name: str, session: Session) -> Node:
        node = self.child(name)
        if node is None:
            raise NinePError(ENOTFOUND)
        return node

    def children(self, session: Session) -> Iterator[Node]:
        """Made as the directory is read (a job of 10,000,000 tasks lists lazily)."""
        return (n for n in map(self.child, self.names()) if n is not None)


def text_file(name: str, qid_path: int, parent: Node, read_fn: ReadFn | None,
              write_fn: WriteFn | None = None, policy: Policy = access.people_read) -> File:
    mode = (0o444 if read_fn else 0) | (0o222 if write_fn else 0)
    return File(name, qid_path, parent, lambda s, m: TextHandle(read_fn, write_fn), mode,
                policy)


# ------------------------------------------------------------------ the root

class GridFS:
    """The FileServer: every attach sees the same tree; what it may do there
    depends on who it is (access.py).  A TLS client with no certificate yet may
    only attach `join` and enrol (when the scheduler has a CA)."""

    def __init__(self, grid: Grid, enrolment: Callable[[], Node] | None = None) -> None:
        self.grid = grid
        self.data = ExportFS(grid.data_dir)
        self.enrolment = enrolment

    def attach(self, session: Session) -> Node:
        peer = session.peer
        if peer.get("transport") == "tls" and not peer.get("name") \
                and session.aname == "join" and self.enrolment is not None:
            return self.enrolment()
        access.identify(session)
        if access.role(session) == access.USER:
            os.makedirs(os.path.join(self.data.root, access.user(session)), exist_ok=True)
        return Root(self)


class Root(Dir):
    NAMES = ("new", "ctl", "stats", "events", "jobs", "nodes", "data", "work")
    policy = staticmethod(lambda session, want: not want & access.WRITE)

    def __init__(self, fs: GridFS) -> None:
        super().__init__("/", qpath(K_ROOT), None)
        self.fs = fs

    def names(self) -> Iterable[str]:
        return self.NAMES

    def child(self, name: str) -> Node | None:
        grid = self.fs.grid
        if name == "new":
            return File(name, qpath(K_NEW), self, lambda s, m: NewHandle(grid, s), 0o666,
                        access.people_all)
        if name == "ctl":
            return text_file(name, qpath(K_CTL), self, lambda: grid_state(grid),
                             lambda text: grid_ctl(grid, text), access.admin_only)
        if name == "stats":
            return text_file(name, qpath(K_STATS), self, grid.stats_line)
        if name == "events":
            return File(name, qpath(K_EVENTS), self, lambda s, m: EventStream(grid, 0))
        if name == "jobs":
            return JobsDir(grid, self)
        if name == "nodes":
            return NodesDir(grid, self)
        if name == "data":
            return access.DataNode(self.fs.data, self.fs.data.root, "data", self)
        if name == "work":
            return File(name, qpath(K_WORK), self, lambda s, m: WorkHandle(grid, s), 0o666,
                        access.workers_only)
        return None


def grid_state(grid: Grid) -> str:
    draining = [n for n, w in grid.core.workers.items() if w.draining]
    return f"draining {' '.join(draining)}\n" if draining else "running\n"


async def grid_ctl(grid: Grid, text: str) -> None:
    for line in text.split("\n"):
        words = line.split()
        if not words:
            continue
        if words[0] in ("drain", "resume") and len(words) <= 2:
            try:
                grid.drain(words[1] if len(words) == 2 else None, words[0] == "drain")
            except LookupError as exc:
                raise NinePError(_words(exc)) from None
        else:
            raise NinePError(f"unknown verb {quoted(line.strip())}: expected drain [NODE] or "
                             "resume [NODE]")


class NewHandle(Handle):
    """/new: description lines in, `submit` commits the job; a read gives its id.

    The id line starts wherever the first read after the submit starts: through
    a mount, `read id <&3` reads at the descriptor's offset, which the write has
    moved past the description."""

    def __init__(self, grid: Grid, session: Session) -> None:
        self.grid = grid
        self.session = session
        self.description = Description()
        self.decoder = codecs.getincrementaldecoder("utf-8")()   # a write may cut a character
        self.last: int | None = None
        self.base: int | None = None
        self.refused: str | None = None         # the first bad line's message, till submit

    def read_nowait(self, offset: int, count: int) -> bytes:
        if self.last is None:
            raise NinePError("no job submitted on this file yet: write a description ending "
                             "in 'submit'")
        if self.base is None or offset < self.base:
            self.base = offset
        start = offset - self.base
        return f"{self.last}\n".encode()[start:start + count]

    async def write(self, offset: int, data: bytes) -> int:
        if self.refused is not None:
            # a description with a bad line is void up to its `submit`; each write till
            # then fails with the first message, so that a shell writing line by line
            # (printf, a heredoc) reports the line that was wrong, not "no command"
            refused = self.refused
            if _ends_in_submit(data):
                self.refused = None
            raise NinePError(refused)
        try:
            spec = self.description.feed(self.decoder.decode(data))
            if spec is not None:
                check_new(spec)
        except (DescriptionError, UnicodeDecodeError) as exc:
            self.description = Description()
            self.decoder.reset()
            message = ("not UTF-8 text" if isinstance(exc, UnicodeDecodeError) else str(exc))
            if not _ends_in_submit(data):
                self.refused = message
            raise NinePError(message) from None
        if spec is not None:
            job = await self.grid.submit(spec, self.session.uname)
            self.last, self.base = job.id, None
        return len(data)


def _ends_in_submit(data: bytes) -> bool:
    """Whether the write that failed held the `submit` line (then nothing is left)."""
    return any(line.split(None, 1)[:1] == ["submit"]
               for line in data.decode("utf-8", "replace").split("\n"))


# ------------------------------------------------------------------ jobs

class JobsDir(Dir):
    def __init__(self, grid: Grid, parent: Node) -> None:
        super().__init__("jobs", qpath(K_JOBS), parent)
        self.grid = grid

    def names(self) -> Iterable[str]:
        return [str(j) for j in sorted(self.grid.core.jobs)]

    def child(self, name: str) -> Node | None:
        jid = checks.index(name)
        if jid is None or jid not in self.grid.core.jobs:
            return None
        return JobDir(self.grid, jid, self)


def parse_job_verb(text: str) -> tuple[str, int | None]:
    """One verb a write: a write is carried out whole or not at all (a second verb
    could fail after the first had changed the job)."""
    lines = [line for line in text.split("\n") if line.strip(BLANKS)]
    if len(lines) > 1:
        raise NinePError(f"one verb per write, got {len(lines)}: write them one at a time")
    if not lines:
        raise NinePError(f"empty ctl write: expected {JOB_VERBS}")
    line = lines[0]
    words = line.split()
    verb = words[0]
    if verb in ("kill", "hold", "release", "retry", "remove") and len(words) == 1:
        return verb, None
    if verb == "priority":
        try:
            if len(words) != 2:
                raise ValueError
            return verb, checks.integer("priority", words[1], -1000, 1000)
        except ValueError:
            raise NinePError(f"bad verb {quoted(line.strip())}: want 'priority P' with P "
                             "in -1000..1000") from None
    raise NinePError(f"unknown verb {quoted(line.strip())}: expected {JOB_VERBS}")


class JobDir(Dir):
    NAMES = ("ctl", "desc", "status", "wait", "stdout", "stderr", "events", "why", "tasks",
             "inputs", "outputs")

    def __init__(self, grid: Grid, jid: int, parent: Node) -> None:
        super().__init__(str(jid), qpath(K_JOB, jid), parent)
        self.grid = grid
        self.jid = jid
        self.owner = grid.core.jobs[jid].owner

    def names(self) -> Iterable[str]:
        return self.NAMES

    def child(self, name: str) -> Node | None:
        grid, jid = self.grid, self.jid
        job = grid.core.jobs.get(jid)
        if job is None:
            return None
        if name == "ctl":
            return text_file(name, qpath(K_JOBCTL, jid), self, lambda: f"{jid}\n",
                             lambda text: self.ctl(text), access.owner_writes(self.owner))
        if name == "desc":
            return text_file(name, qpath(K_DESC, jid), self, job.spec.lines)
        if name == "status":
            return text_file(name, qpath(K_STATUS, jid), self,
                             lambda: grid.job(jid).status_line() + "\n")
        if name == "why":
            return text_file(name, qpath(K_WHY, jid), self, lambda: grid.core.why(jid))
        if name == "wait":
            return File(name, qpath(K_WAIT, jid), self, lambda s, m: WaitHandle(grid, jid))
        if name in STREAMS:
            kind = K_STDOUT if name == "stdout" else K_STDERR
            return File(name, qpath(kind, jid), self, lambda s, m: JobStream(grid, jid, name))
        if name == "events":
            return File(name, qpath(K_JEVENTS, jid), self, lambda s, m: EventStream(grid, jid))
        if name == "tasks":
            return TasksDir(grid, jid, self)
        if name == "inputs":
            return InputsDir(grid, jid, self)
        if name == "outputs":
            export = OutputsExport(grid.spool.outputs_dir(jid), grid, jid)
            return access.OutputsNode(export, export.root, "outputs", self)
        return None

    async def ctl(self, text: str) -> None:
        verb, arg = parse_job_verb(text)
        try:
            await self.grid.job_verb(self.jid, verb, arg)
        except CoreError as exc:
            raise NinePError(str(exc)) from None


class OutputsExport(ExportFS):
    """A job's outputs folder; a worker may write there while it runs a task of it."""

    def __init__(self, root: str, grid: Grid, jid: int) -> None:
        super().__init__(root)
        self.grid = grid
        self.jid = jid

    def may_write(self, worker: str) -> bool:
        job = self.grid.core.jobs.get(self.jid)
        return job is not None and worker in job.running.values()


class WaitHandle(PollHandle):
    """`wait`: a read at offset 0 parks until the job is finished, then gives its status."""

    def __init__(self, grid: Grid, jid: int) -> None:
        self.grid = grid
        self.jid = jid
        self.snapshot = b""

    def poll(self, offset: int, count: int) -> bytes | None:
        if offset == 0:
            job = self.grid.core.jobs.get(self.jid)
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
        self.grid = grid
        self.jid = jid
        self.stream = stream
        self.task = self.pos = self.offset = 0

    def poll(self, offset: int, count: int) -> bytes | None:
        if offset != self.offset:
            if offset != 0:
                raise NinePError(EBADSTREAM)
            self.task = self.pos = self.offset = 0
        job = self.grid.core.jobs.get(self.jid)
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
        now = grid.events.cursor()
        self.cursor = max(grid.events.first_seq, grid.first_event.get(jid, now)) if jid else now

    def poll(self, offset: int, count: int) -> bytes | None:
        data, self.cursor = self.grid.events.take(self.cursor, self.jid, count)
        if data:
            return data
        if self.jid and (self.jid in self.grid.announced or self.jid not in self.grid.core.jobs):
            return b""
        return None

    def read_signal(self) -> Signal:
        return self.grid.events.changed


class TasksDir(Dir):
    def __init__(self, grid: Grid, jid: int, parent: Node) -> None:
        super().__init__("tasks", qpath(K_TASKS, jid), parent)
        self.grid = grid
        self.jid = jid

    def names(self) -> Iterable[str]:
        job = self.grid.core.jobs.get(self.jid)
        return map(str, range(job.spec.tasks if job else 0))

    def child(self, name: str) -> Node | None:
        job = self.grid.core.jobs.get(self.jid)
        index = checks.index(name)
        if job is None or index is None or index >= job.spec.tasks:
            return None
        return TaskDir(self.grid, self.jid, index, self)


class TaskDir(Dir):
    NAMES = ("status", "node", "stdout", "stderr", "exit")

    def __init__(self, grid: Grid, jid: int, index: int, parent: Node) -> None:
        super().__init__(str(index), qpath(K_TASK, jid, index), parent)
        self.grid = grid
        self.jid = jid
        self.index = index

    def names(self) -> Iterable[str]:
        return self.NAMES

    def child(self, name: str) -> Node | None:
        grid, jid, index = self.grid, self.jid, self.index
        if name == "status":
            return text_file(name, qpath(K_TSTATUS, jid, index), self,
                             lambda: grid.task_status(jid, index))
        if name == "node":
            return text_file(name, qpath(K_TNODE, jid, index), self,
                             lambda: grid.task_node(jid, index))
        if name == "exit":
            return text_file(name, qpath(K_TEXIT, jid, index), self,
                             lambda: task_exit(grid, jid, index))
        if name in STREAMS:
            kind = K_TSTDOUT if name == "stdout" else K_TSTDERR

            def opener(session: Session, mode: int) -> Handle:
                if mode & 3 in (OWRITE, ORDWR):
                    return UploadHandle(grid, session, jid, index, name)
                return TaskStream(grid, jid, index, name)
            return File(name, qpath(kind, jid, index), self, opener, 0o666, access.task_output)
        return None


def task_exit(grid: Grid, jid: int, index: int) -> str:
    """A killed task did not end by itself: it has no exit status (nor has one
    still to run), and its file is empty."""
    job = grid.job(jid)
    return f"{job.exit_of(index)}\n" if job.state[index] in EXITED else ""


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
        job = self.grid.core.jobs.get(self.jid)
        if job is None or job.state[self.index] in FINISHED:
            return b""
        return None

    def read_signal(self) -> Signal:
        return self.grid.changed(self.jid)


class UploadHandle(Handle):
    """A worker writing the output of a task leased to it, at explicit offsets."""

    def __init__(self, grid: Grid, session: Session, jid: int, index: int, stream: str) -> None:
        self.grid = grid
        self.jid = jid
        self.index = index
        link: WorkerLink | None = session.data.get("link")
        job = grid.core.jobs.get(jid)
        if link is None or job is None or job.running.get(index) != link.name:
            raise access.denied(f"task {jid}.{index} is not leased to this worker")
        self.link = link
        self.fd = grid.spool.open_for_write(jid, index, stream)

    def write_nowait(self, offset: int, data: bytes) -> int:
        job = self.grid.core.jobs.get(self.jid)
        if job is None or job.running.get(self.index) != self.link.name:
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


class InputsDir(Dir):
    """The job's declared inputs, as they are in /data now (read-only)."""

    policy = staticmethod(access.people_read)

    def __init__(self, grid: Grid, jid: int, parent: Node) -> None:
        super().__init__("inputs", qpath(K_INPUTS, jid), parent)
        self.grid = grid
        self.jid = jid

    def names(self) -> Iterable[str]:
        job = self.grid.core.jobs.get(self.jid)
        return [os.path.basename(p) for p in (job.spec.inputs if job else ())]

    def child(self, name: str) -> Node | None:
        job = self.grid.core.jobs.get(self.jid)
        for path in job.spec.inputs if job else ():
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


# ------------------------------------------------------------------ nodes

class NodesDir(Dir):
    def __init__(self, grid: Grid, parent: Node) -> None:
        super().__init__("nodes", qpath(K_NODES), parent)
        self.grid = grid

    def names(self) -> Iterable[str]:
        return ["index", *sorted(self.grid.links)]

    def child(self, name: str) -> Node | None:
        grid = self.grid
        if name == "index":
            return text_file(name, qpath(K_INDEX), self,
                             lambda: "".join(grid.node_status(n) for n in sorted(grid.links)))
        if name in grid.links:
            return NodeDir(grid, name, self)
        return None


class NodeDir(Dir):
    def __init__(self, grid: Grid, name: str, parent: Node) -> None:
        number = hash(name) & 0xFFFFFFFF
        super().__init__(name, qpath(K_NODE, number), parent)
        self.grid = grid
        self.number = number
        self.own = access.node_files(name)

    def permits(self, session: Session, want: int) -> bool:
        return self.own(session, want)

    def names(self) -> Iterable[str]:
        return ("status", "ad", "ctl")

    def child(self, name: str) -> Node | None:
        grid, node = self.grid, self.name
        if name == "status":
            return text_file(name, qpath(K_NSTATUS, self.number), self,
                             lambda: grid.node_status(node), policy=self.own)
        if name == "ad":
            return text_file(name, qpath(K_NAD, self.number), self, lambda: grid.node_ad(node),
                             policy=self.own)
        if name == "ctl":
            return text_file(name, qpath(K_NCTL, self.number), self,
                             lambda: grid.node_status(node),
                             lambda text: node_ctl(grid, node, text), access.admin_writes)
        return None


async def node_ctl(grid: Grid, name: str, text: str) -> None:
    verbs = [line.strip() for line in text.split("\n") if line.strip()]
    for verb in verbs:
        if verb not in ("drain", "resume", "disable"):
            raise NinePError(f"unknown verb {quoted(verb)}: expected drain, resume or disable")
    try:
        for verb in verbs:
            if verb == "disable":
                grid.vacate(name)
            else:
                grid.drain(name, verb == "drain")
    except (LookupError, KeyError) as exc:
        raise NinePError(f"no node {name}") from exc


# ------------------------------------------------------------------ the labour exchange

class WorkHandle(Handle):
    """/work, the labour exchange.

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
        self.parked: WorkRead | None = None

    @property
    def link(self) -> WorkerLink:
        link = self.session.data.get("link")
        if link is None:
            raise NinePError(ENOTJOINED)
        return link

    # writes: join, heartbeat; lease, output, done

    def write_nowait(self, offset: int, data: bytes) -> int:
        head = data[:16].split(None, 1)
        first = _text(head[0]) if head else ""
        if first in ("done", "lease", "output"):
            raise trio.WouldBlock                 # reports may carry output: bytes
        text = _text(data)
        if first == "join":
            if self.control is not None:
                raise NinePError(f"this fid has joined already, as {self.control.name}")
            if self.session.peer.get("transport") == "tls" and \
                    text.split()[1:2] != [access.user(self.session)]:
                raise access.denied("a worker joins under its certificate's name "
                                    f"{access.user(self.session)!r}")
            try:
                link = self.grid.join(Join.parse(text))
            except ValueError as exc:
                raise NinePError(str(exc)) from None
            self.session.data["link"] = self.control = link
            return len(data)
        if first == "heartbeat":
            link = self.link
            try:
                self.grid.heartbeat(link, Heartbeat.parse(text))
            except (LookupError, ValueError) as exc:
                raise NinePError(_words(exc)) from None
            return len(data)
        raise NinePError(f"unknown /work verb {first!r}: expected join, heartbeat, lease, "
                         "output or done")

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
        reports = [r for r in records if isinstance(r, Done)]
        try:
            if leases:
                self.grid.set_lease(link, leases[-1])
            if reports or outputs:
                await self.grid.tasks_done(link, reports, outputs)
        except LookupError as exc:
            raise NinePError(_words(exc)) from None
        return len(data)

    # reads: commands on the control fid, tasks on the others

    def read_nowait(self, offset: int, count: int) -> bytes:
        link = self.link
        if self.control is not None:
            if link.commands:
                text = b"".join(order.encode() for order in link.commands)
                link.commands.clear()
                return text
            if link.gone:
                raise NinePError(link.lost_reason)
            raise trio.WouldBlock
        lease = self.parked
        if lease is None:
            try:
                got = self.grid.take_work(link, max(1, count // MIN_RECORD))
            except LookupError as exc:
                raise NinePError(_words(exc)) from None
            if isinstance(got, WorkRead):
                self.parked = got
                raise trio.WouldBlock
            return self.lease_text(link, got, count)
        if not lease.ready:
            raise trio.WouldBlock
        self.parked = None
        got = self.grid.answer(lease)
        if not got:
            raise NinePError(lease.link.lost_reason)
        return self.lease_text(lease.link, got, count)

    def read_signal(self) -> Signal:
        if self.control is not None:
            return self.control.command_ready
        assert self.parked is not None
        return self.parked.signal

    def read_cancelled(self) -> None:
        """The waiting read went away: its lease's tasks go back to the queue.  A
        second read that shared the lease is woken and asks for its own."""
        lease, self.parked = self.parked, None
        if lease is not None:
            self.grid.unpark(lease)
            lease.signal.fire()

    def lease_text(self, link: WorkerLink, got: list, count: int) -> bytes:
        try:
            return self.grid.lease_text(link, got, count)
        except LookupError as exc:
            raise NinePError(_words(exc)) from None

    def clunk(self) -> None:
        self.read_cancelled()
        if self.control is not None:
            self.grid.lose(self.control, "connection closed")

