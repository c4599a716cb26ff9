"""Starting and reaping task processes without threads.

`os.posix_spawn` starts the program (vfork speed) in its own process group (with
rlimits, maybe its own session: places.py), every signal at its default, with
stdout and stderr going straight to files beside its sandbox; a pidfd tells the
trio loop when it has ended.  Killing a task kills its whole process group.

A worker running as root starts each task as its task user with no extra exec:
around the spawn the spawning thread acts as that user (credentials.py); execve
makes the task's saved id the user's too, so the task holds no way back to root.
"""

from __future__ import annotations

import os
import signal
import threading
from typing import Any

import trio

from .credentials import acting_as
from .places import Place


SPAWNING = threading.Lock()       # spawns change the process's folder around them
# A task starts with every signal at its default, not with what the worker ignores
# (SIGPIPE: `yes | head` would complain of a broken pipe); asked for by name, the
# reset also spares the spawn a look at each signal first.
DEFAULT_SIGNALS = signal.valid_signals()
GROUP: dict[str, Any] = {"setpgroup": 0}      # a process group of its own
SESSION: dict[str, Any] = {"setsid": True}    # a session (and so a group) of its own


class Process:
    """A started task process."""

    def __init__(self, program: str, argv: list[str], env: dict[str, str], cwd: str,
                 stdout: str, stderr: str, nice: int = 0,
                 user: tuple[int, int] | None = None, append: bool = False,
                 place: Place | None = None) -> None:
        """Start `program` (an absolute path: the one the owner's allow list was
        checked against, never looked up again) with `argv`; `append`: after
        what an earlier run of the task wrote (a checkpoint exit's re-run);
        `place`: where it is held to its requests (places.py)."""
        out_flags = os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC | (
            os.O_APPEND if append else os.O_TRUNC)
        out = os.open(stdout, out_flags, 0o600)     # opened by us, beside the folder:
        err = os.open(stderr, out_flags, 0o600)     # no task user reaches them by name
        actions = [(os.POSIX_SPAWN_OPEN, 0, "/dev/null", os.O_RDONLY, 0),
                   (os.POSIX_SPAWN_DUP2, out, 1), (os.POSIX_SPAWN_DUP2, err, 2)]
        SPAWNING.acquire()                    # the folder is the process's: one at a time
        try:
            os.chdir(cwd)                     # the child starts in its sandbox
            pid = None
            try:
                with acting_as(user):
                    group = SESSION if place is not None and place.session else GROUP
                    pid = os.posix_spawn(program, argv, env, file_actions=actions,
                                         setsigdef=DEFAULT_SIGNALS, **group)
                    if place is not None:       # as its user: allowed with no capability
                        place.limit(pid)
            finally:
                if place is not None:
                    place.after_spawn(pid)
            self.pid = pid
        finally:
            os.chdir("/")                     # the worker itself never uses relative paths
            SPAWNING.release()
            os.close(out)
            os.close(err)
        self.pidfd = os.pidfd_open(self.pid)
        self.status: int | None = None
        self.ended = trio.Event()             # for others than the one waiter
        if nice:
            try:
                os.setpriority(os.PRIO_PGRP, self.pid, nice)
            except OSError:
                pass

    async def wait(self) -> int:
        """The exit status: the exit code, or minus the signal that killed it.
        What the task left running in its process group ends with it.  One
        waiter only (the runner's); others wait for `ended`."""
        if self.status is None:
            await trio.lowlevel.wait_readable(self.pidfd)
            _, raw = os.waitpid(self.pid, 0)
            os.close(self.pidfd)
            self.status = os.waitstatus_to_exitcode(raw)
            self.ended.set()
            try:
                os.killpg(self.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        return self.status

    def kill(self) -> None:
        """SIGKILL the task's whole process group."""
        self.signal(signal.SIGKILL)

    def signal(self, sig: int) -> None:
        """Signal the task's whole process group (while it runs)."""
        if self.status is None:
            try:
                os.killpg(self.pid, sig)
            except ProcessLookupError:
                pass
