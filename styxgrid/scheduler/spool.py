"""Task output on the scheduler's disk: STATE/spool/J/T.stdout, T.stderr, outputs/.

Workers write a task's stdout and stderr at explicit offsets (so an upload repeated
after a reconnect lands in the same place); readers read them back by offset.  A
file that was never written reads as empty.  A task's files are emptied when it is
handed out again, so a re-run does not append to a lost attempt's output.  A copy
of a slow task (runs.py) writes beside them, T.stdout.NODE, till it wins (its
files take the task's place) or loses (they go).

A task's checkpoint (a tar of its $STYXGRID_CHECKPOINT folder) is T.checkpoint;
a worker uploads a new one to T.checkpoint.NODE, which replaces it whole when
the worker's report says it is complete (`checkpoint J T SIZE`), so a restore
never gets half of one.  Kept till the job is removed, across restarts.
"""

from __future__ import annotations

import errno
import os
import shutil

from ..exchange import STREAMS


class Spool:
    def __init__(self, root: str) -> None:
        self.root = root
        os.makedirs(root, exist_ok=True)
        # jobs that have a folder here: a task of any other job has no files to empty,
        # which spares two failing unlinks per task of the (common) silent jobs
        self.with_files = {int(n) for n in os.listdir(root) if n.isdigit()}
        # per job that was asked: a byte per task, 1 if the task has an output file;
        # a job's stream skips the silent tasks of a 10,000,000-task job in C
        self.marks: dict[int, bytearray] = {}

    def job_dir(self, jid: int) -> str:
        return os.path.join(self.root, str(jid))

    def path(self, jid: int, index: int, stream: str, copy: str = "") -> str:
        name = f"{index}.{stream}.{copy}" if copy else f"{index}.{stream}"
        return os.path.join(self.root, str(jid), name)

    def checkpoint(self, jid: int, index: int, node: str = "") -> str:
        name = f"{index}.checkpoint.{node}" if node else f"{index}.checkpoint"
        return os.path.join(self.root, str(jid), name)

    def open_checkpoint_upload(self, jid: int, index: int, node: str) -> int:
        """A descriptor (the caller closes it) on an emptied T.checkpoint.NODE."""
        path = self.checkpoint(jid, index, node)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        self.with_files.add(jid)
        return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)

    def commit_checkpoint(self, jid: int, index: int, node: str, size: int) -> bool:
        """NODE's upload becomes the task's checkpoint if it holds SIZE bytes."""
        part = self.checkpoint(jid, index, node)
        try:
            if os.stat(part).st_size != size:
                return False
            os.replace(part, self.checkpoint(jid, index))
        except FileNotFoundError:
            return False
        return True

    def checkpoints(self, jid: int) -> dict[int, int]:
        """The job's kept checkpoints: task -> size (at a restart)."""
        try:
            names = os.listdir(self.job_dir(jid))
        except FileNotFoundError:
            return {}
        found = {}
        for name in names:
            number, _, rest = name.partition(".")
            if rest == "checkpoint" and number.isdigit():
                found[int(number)] = os.stat(os.path.join(self.job_dir(jid), name)).st_size
        return found

    def outputs_dir(self, jid: int) -> str:
        path = os.path.join(self.root, str(jid), "outputs")
        os.makedirs(path, exist_ok=True)
        self.with_files.add(jid)
        return path

    def reset(self, jid: int, index: int, copy: str = "") -> None:
        """Empty a task's stdout and stderr (or a copy's) before it runs (again)."""
        if jid not in self.with_files:
            return
        for stream in STREAMS:
            try:
                os.unlink(self.path(jid, index, stream, copy))
            except FileNotFoundError:
                pass

    discard = reset                     # a copy that lost: its files go

    def promote(self, jid: int, index: int, copy: str) -> None:
        """A copy's output becomes the task's."""
        if jid not in self.with_files:
            return
        for stream in STREAMS:
            try:
                os.replace(self.path(jid, index, stream, copy), self.path(jid, index, stream))
            except FileNotFoundError:
                try:
                    os.unlink(self.path(jid, index, stream))
                except FileNotFoundError:
                    pass

    def open_for_write(self, jid: int, index: int, stream: str, copy: str = "") -> int:
        """A descriptor for a worker's upload; the caller closes it."""
        path = self.path(jid, index, stream, copy)
        self.with_files.add(jid)
        marks = self.marks.get(jid)
        if marks is not None and index < len(marks):
            marks[index] = 1
        try:
            return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except FileNotFoundError:
            os.makedirs(os.path.dirname(path), exist_ok=True)
            return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o644)

    def write(self, jid: int, index: int, stream: str, offset: int, data: bytes,
              copy: str = "") -> None:
        """A piece of a task's output that came with its report."""
        fd = self.open_for_write(jid, index, stream, copy)
        try:
            os.pwrite(fd, data, offset)
        finally:
            os.close(fd)

    def read(self, jid: int, index: int, stream: str, offset: int, count: int) -> bytes:
        try:
            fd = os.open(self.path(jid, index, stream), os.O_RDONLY | os.O_CLOEXEC)
        except OSError as exc:
            if exc.errno == errno.ENOENT:
                return b""
            raise
        try:
            return os.pread(fd, count, offset)
        finally:
            os.close(fd)

    def next_with_output(self, jid: int, start: int, tasks: int) -> int:
        """The first task index >= start that may have output (`tasks` if none)."""
        if jid not in self.with_files:
            return tasks
        marks = self.marks.get(jid)
        if marks is None:
            marks = self.marks[jid] = bytearray(tasks)
            try:
                names = os.listdir(self.job_dir(jid))
            except FileNotFoundError:
                names = []
            for name in names:
                number = name.partition(".")[0]
                if number.isdigit() and int(number) < tasks:
                    marks[int(number)] = 1
        found = marks.find(1, start)
        return tasks if found < 0 else found

    def remove_job(self, jid: int) -> None:
        shutil.rmtree(self.job_dir(jid), ignore_errors=True)
        self.with_files.discard(jid)
        self.marks.pop(jid, None)
