"""Starting and reaping task processes without threads.

`os.posix_spawn` starts the program (vfork speed) in its own process group, with
stdout and stderr going straight to files in its sandbox; a pidfd tells the trio
loop when it has ended.  Killing a task kills its whole process group.
"""

from __future__ import annotations

import os
import signal

import trio


class Process:
    """A started task process."""

    def __init__(self, argv: list[str], env: dict[str, str], cwd: str, stdout: str,
                 stderr: str, nice: int = 0) -> None:
        out_flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC
        actions = [(os.POSIX_SPAWN_OPEN, 0, "/dev/null", os.O_RDONLY, 0),
                   (os.POSIX_SPAWN_OPEN, 1, stdout, out_flags, 0o644),
                   (os.POSIX_SPAWN_OPEN, 2, stderr, out_flags, 0o644)]
        program = argv[0]
        spawn = os.posix_spawn if "/" in program else os.posix_spawnp
        try:
            os.chdir(cwd)                     # the child starts in its sandbox
            self.pid = spawn(program, argv, env, file_actions=actions, setpgroup=0)
        finally:
            os.chdir("/")                     # the worker itself never uses relative paths
        self.pidfd = os.pidfd_open(self.pid)
        self.status: int | None = None
        if nice:
            try:
                os.setpriority(os.PRIO_PGRP, self.pid, nice)
            except OSError:
                pass

    async def wait(self) -> int:
        """The exit status: the exit code, or minus the signal that killed it."""
        if self.status is None:
            await trio.lowlevel.wait_readable(self.pidfd)
            _, raw = os.waitpid(self.pid, 0)
            os.close(self.pidfd)
            self.status = os.waitstatus_to_exitcode(raw)
        return self.status

    def kill(self) -> None:
        """SIGKILL the task's whole process group."""
        if self.status is None:
            try:
                os.killpg(self.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
