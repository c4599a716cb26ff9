"""Starting and reaping task processes without threads.

`os.posix_spawn` starts the program (vfork speed) in its own process group, with
stdout and stderr going straight to files beside its sandbox; a pidfd tells the
trio loop when it has ended.  Killing a task kills its whole process group.

A worker running as root starts each task as an unprivileged user with no extra
exec: around the spawn it sets its real and effective ids to that user, keeping
root only as its saved id; execve then makes the saved id the user's too, so the
task holds no way back to root, and the worker takes root back at once.  That
change of ids clears the worker's own parent-death signal (`styxgrid up` sets one
so that its worker ends with it), so the signal is set again after each spawn.
"""

from __future__ import annotations

import ctypes
import os
import signal

import trio

PR_SET_PDEATHSIG, PR_GET_PDEATHSIG = 1, 2
_libc = ctypes.CDLL(None, use_errno=True)
_death: list[tuple[int, int]] = []     # (parent-death signal, parent), read once


def _death_signal() -> tuple[int, int]:
    if not _death:
        sig = ctypes.c_int(0)
        _libc.prctl(PR_GET_PDEATHSIG, ctypes.byref(sig))
        _death.append((sig.value, os.getppid()))
    return _death[0]


class Process:
    """A started task process."""

    def __init__(self, program: str, argv: list[str], env: dict[str, str], cwd: str,
                 stdout: str, stderr: str, nice: int = 0,
                 user: tuple[int, int] | None = None) -> None:
        """Start `program` (an absolute path: the one the owner's allow list was
        checked against, never looked up again) with `argv`."""
        out_flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC
        out = os.open(stdout, out_flags, 0o644)     # opened by us: the task's user may not
        err = os.open(stderr, out_flags, 0o644)     # be able to reach the worker's folder
        actions = [(os.POSIX_SPAWN_OPEN, 0, "/dev/null", os.O_RDONLY, 0),
                   (os.POSIX_SPAWN_DUP2, out, 1), (os.POSIX_SPAWN_DUP2, err, 2)]
        death, parent = _death_signal() if user is not None else (0, 0)
        try:
            os.chdir(cwd)                     # the child starts in its sandbox
            if user is not None:
                os.setresgid(user[1], user[1], 0)
                os.setresuid(user[0], user[0], 0)
            self.pid = os.posix_spawn(program, argv, env, file_actions=actions, setpgroup=0)
        finally:
            if user is not None:
                os.setresuid(0, 0, 0)
                os.setresgid(0, 0, 0)
                if death:
                    _libc.prctl(PR_SET_PDEATHSIG, death)
                    if os.getppid() != parent:         # the parent went meanwhile
                        os.kill(os.getpid(), death)
            os.chdir("/")                     # the worker itself never uses relative paths
            os.close(out)
            os.close(err)
        self.pidfd = os.pidfd_open(self.pid)
        self.status: int | None = None
        if nice:
            try:
                os.setpriority(os.PRIO_PGRP, self.pid, nice)
            except OSError:
                pass

    async def wait(self) -> int:
        """The exit status: the exit code, or minus the signal that killed it.
        What the task left running in its process group ends with it."""
        if self.status is None:
            await trio.lowlevel.wait_readable(self.pidfd)
            _, raw = os.waitpid(self.pid, 0)
            os.close(self.pidfd)
            self.status = os.waitstatus_to_exitcode(raw)
            try:
                os.killpg(self.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        return self.status

    def kill(self) -> None:
        """SIGKILL the task's whole process group."""
        if self.status is None:
            try:
                os.killpg(self.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
