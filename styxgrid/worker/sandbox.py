"""Where a task runs: its record, its folder (emptied and reused, one task user's
only), the job's inputs kept once per worker, its inputs placed and the output
files it may hand back."""

from __future__ import annotations

import errno
import os
import stat
import tempfile
from dataclasses import dataclass, field

from ..describe import JobSpec
from ..exchange import STREAMS
from .accounts import Account
from .credentials import acting_as
from .places import Place
from .process import Process
from .removal import empty_folder, remove_tree

CHECKPOINT_FOLDER = ".checkpoint"             # $STYXGRID_CHECKPOINT, in the folder


@dataclass(eq=False)
class TaskRun:
    """A task this worker holds: waiting for a slot, running, or reported."""

    job: int
    index: int
    tasks: int
    owner: str                                # the grid user whose task it is
    spec: JobSpec
    account: Account | None = None            # the task user it runs as (root worker)
    sandbox: str = ""                         # given when a slot starts it
    process: Process | None = None
    killed: bool = False
    vacated: bool = False                     # the owner took the machine back: re-queue it
    checkpoint: bool = False                  # the scheduler keeps one: restore it first
    sent: dict[str, int] = field(default_factory=lambda: {"stdout": 0, "stderr": 0})
    uploads: int = 0                          # output uploads in flight: keep the folder
    over: bool = False                        # ended and reported: the folder may go
    gpus: tuple[str, ...] = ()                # the node's GPUs it was given
    place: Place | None = None                # where it is held to its requests, running
    held: str = ""                            # why it was stopped for breaking a request

    def expand(self, text: str) -> str:
        """$STYXGRID_TASK / $STYXGRID_JOB in args and file names, like Condor's $(Process)."""
        for name, value in (("STYXGRID_TASK", self.index), ("STYXGRID_JOB", self.job)):
            text = text.replace("${" + name + "}", str(value)).replace("$" + name, str(value))
        return text

    @property
    def cwd(self) -> str:
        """Where it runs: its folder, or `dir` inside it."""
        return os.path.join(self.sandbox, self.spec.dir) if self.spec.dir else self.sandbox

    def local(self, stream: str) -> str:
        """Where the task's stdout/stderr go: beside its sandbox, not in it."""
        return f"{self.sandbox}.{stream}"

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.status is None

    @property
    def user(self) -> tuple[int, int] | None:
        """(uid, gid) it runs as; None: the worker's own."""
        return self.account.ids if self.account else None


def folder_size(root: str, stop: int) -> int:
    """Bytes the files under `root` take on disk (blocks, as `du`), by a walk of
    descriptors that follows no link and stops once past `stop` (or 100,000
    entries: a folder of more is counted as past it)."""
    total, seen = 0, 0
    stack = [root]
    while stack and total <= stop:
        folder = stack.pop()
        try:
            with os.scandir(folder) as entries:
                for entry in entries:
                    seen += 1
                    if seen > 100_000:
                        return stop + 1
                    try:
                        st = entry.stat(follow_symlinks=False)
                    except OSError:
                        continue
                    total += st.st_blocks * 512
                    if stat.S_ISDIR(st.st_mode):
                        stack.append(entry.path)
        except OSError:
            continue
    return total


class Sandboxes:
    """Task folders, emptied and reused: making and deleting a folder per task costs
    more than a tiny task does.  A reused folder is empty but for an empty
    .checkpoint folder (the task's $STYXGRID_CHECKPOINT), as a fresh one is, and
    is reused only for the same grid user's tasks as the same task user (a task
    owns its folder and may have opened it to others: that stays its user's
    business)."""

    def __init__(self, root: str, keep: int) -> None:
        self.root = root
        self.keep = keep
        # per task user (None: the worker's own): (the grid user, free folders)
        self.free: dict[int | None, tuple[str | None, list[str]]] = {}
        self.kept = 0

    def take(self, account: Account | None) -> str:
        uid, owner = (account.uid, account.owner) if account else (None, None)
        kept = self.free.get(uid)
        if kept is not None and kept[0] != owner:         # the account changed hands
            del self.free[uid]
            self.kept -= len(kept[1])
            for path in kept[1]:
                self.remove(path)
        elif kept is not None and kept[1]:
            self.kept -= 1
            return kept[1].pop()
        path = tempfile.mkdtemp(prefix="task.", dir=self.root)       # mode 0700
        checkpoint = os.path.join(path, CHECKPOINT_FOLDER)
        os.mkdir(checkpoint, 0o700)
        if account is not None:
            os.chown(checkpoint, account.uid, account.gid)
            os.chown(path, account.uid, account.gid)
        return path

    def give_back(self, path: str, account: Account | None) -> None:
        """Empty the folder for the next task (its output files beside it are
        emptied when the next task starts; one that never starts reports none)."""
        try:
            with os.scandir(path) as entries:
                for entry in entries:
                    if not entry.is_dir(follow_symlinks=False):
                        os.unlink(entry.path)
                    elif entry.name == CHECKPOINT_FOLDER:
                        empty_folder(entry.path)
                    else:
                        raise IsADirectoryError(entry.path)
            if not stat.S_ISDIR(os.lstat(os.path.join(path, CHECKPOINT_FOLDER)).st_mode):
                raise NotADirectoryError(path)     # the task took it away: not reused
        except OSError:
            remove_tree(path)
            return
        uid, owner = (account.uid, account.owner) if account else (None, None)
        kept = self.free.setdefault(uid, (owner, []))
        if self.kept < self.keep and kept[0] == owner:
            kept[1].append(path)
            self.kept += 1
        else:
            self.remove(path)

    @staticmethod
    def remove(path: str) -> None:
        """An empty folder and the output files beside it."""
        remove_tree(path)
        for stream in STREAMS:
            try:
                os.unlink(f"{path}.{stream}")
            except FileNotFoundError:
                pass


class InputCache:
    """A job's inputs, fetched once per worker: every task of the job here gets a
    copy of the same file, as Condor sends a job's input files once.  An input
    named per task ($STYXGRID_TASK) is not kept.  Files of the last `keep` jobs
    are kept; older ones are deleted."""

    def __init__(self, root: str, keep: int = 8) -> None:
        self.root = root
        self.keep = keep
        self.files: dict[tuple[int, str], str] = {}     # (job, path in /data) -> here
        self.jobs: list[int] = []                       # least recently used first

    def get(self, job: int, path: str) -> str | None:
        return self.files.get((job, path))

    def put(self, job: int, path: str, data: bytes) -> str:
        if job in self.jobs:
            self.jobs.remove(job)
        self.jobs.append(job)
        while len(self.jobs) > self.keep:
            old = self.jobs.pop(0)
            remove_tree(os.path.join(self.root, str(old)))
            self.files = {k: v for k, v in self.files.items() if k[0] != old}
        folder = os.path.join(self.root, str(job))
        os.makedirs(folder, exist_ok=True)
        fd, local = tempfile.mkstemp(dir=folder, suffix="." + os.path.basename(path))
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        self.files[(job, path)] = local
        return local


_FOLDER = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def open_folder(root: str, inside: str, make: bool = True) -> int:
    """The folder `inside` (a relative path) of `root`, made where missing and
    opened one part at a time without following any link: a task's own links,
    even swapped in meanwhile, cannot send the worker's reads or writes anywhere
    else.  (Called acting as the task's user, credentials.py.)"""
    fd = os.open(root, _FOLDER)
    try:
        for part in [p for p in inside.split("/") if p not in ("", ".")]:
            if part == "..":
                raise OSError(errno.EPERM, "'..' leads outside the task's folder")
            if make:
                try:
                    os.mkdir(part, 0o755, dir_fd=fd)
                except FileExistsError:
                    pass
            deeper = os.open(part, _FOLDER, dir_fd=fd)
            os.close(fd)
            fd = deeper
        return fd
    except BaseException:
        os.close(fd)
        raise


def make_folder(sandbox: str, inside: str, user: tuple[int, int] | None) -> None:
    """Make the folder `inside` the task's `sandbox`, as the task's user."""
    with acting_as(user):
        os.close(open_folder(sandbox, inside))


def place_input(sandbox: str, inside: str, name: str, data: bytes, mode: int,
                user: tuple[int, int] | None) -> None:
    """Write an input as a new regular file `name` of the folder `inside` the
    task's `sandbox` (made where missing; whatever stood there before is
    replaced, never followed), as the task's user: the task owns its inputs,
    and the worker writes nothing there the task's user could not."""
    with acting_as(user):
        folder = open_folder(sandbox, inside)
        try:
            _write_new(folder, name, data, mode)
        finally:
            os.close(folder)


def _write_new(folder: int, name: str, data: bytes, mode: int) -> None:
    try:
        os.unlink(name, dir_fd=folder)
    except FileNotFoundError:
        pass
    fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                 mode, dir_fd=folder)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        os.fchmod(fd, mode)
    finally:
        os.close(fd)


def open_output(folder: str, path: str, user: tuple[int, int] | None) -> int:
    """An output file of the task, opened for reading as the task's user (a hard
    link to a file it may not read gets it nothing): a regular file reached
    from the task's folder one part at a time, never through a link (one the
    task swaps in while the worker looks is refused too), and no FIFO or
    device that would hold the worker."""
    with acting_as(user):
        return _open_output(folder, path)


def _open_output(folder: str, path: str) -> int:
    parent, name = os.path.split(path)
    try:
        where = open_folder(folder, parent, make=False)
    except FileNotFoundError:
        raise
    except OSError:
        raise OSError(errno.EPERM, "it leads outside the task's folder") from None
    try:
        fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC,
                     dir_fd=where)
    except FileNotFoundError:
        raise
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENOTDIR):
            raise OSError(errno.EPERM, "it leads outside the task's folder") from None
        raise
    finally:
        os.close(where)
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise OSError(errno.EPERM, "it is not a regular file")
    return fd
