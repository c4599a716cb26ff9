"""`styxgrid up`'s children: local workers and the FUSE mount, which never outlive it.

Each child is started with PR_SET_PDEATHSIG, so that the kernel sends it SIGTERM
when `up` ends in any way, SIGKILL included: no orphan worker is left to fight a new
one over its name, no mount is left without its process.  The signal follows the
thread that forked the child, so children are forked here, on trio's own thread,
never from a worker thread that may end while they run.  A mount whose process died
anyway (killed on its own) is cleared with a lazy unmount before mounting again.
"""

from __future__ import annotations

import ctypes
import errno
import os
import signal
import subprocess
import sys
from typing import Callable

import trio

PR_SET_PDEATHSIG = 1
_libc = ctypes.CDLL(None, use_errno=True)


def _die_with_parent(parent: int) -> Callable[[], None]:
    def preexec() -> None:
        _libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
        if os.getppid() != parent:         # the parent died before the call above
            os._exit(1)
    return preexec


class Child:
    """A `styxgrid` subcommand run by `up`; its stderr is copied to ours."""

    def __init__(self, args: list[str]) -> None:
        self.args = args
        self.popen = subprocess.Popen(
            [sys.executable, "-m", "styxgrid", *args], stdin=subprocess.DEVNULL,
            stderr=subprocess.PIPE, preexec_fn=_die_with_parent(os.getpid()))
        assert self.popen.stderr is not None
        self.stderr = trio.lowlevel.FdStream(os.dup(self.popen.stderr.fileno()))
        self.popen.stderr.close()
        self.buffer = b""                  # what was read past the line waited for

    async def wait_line(self, word: str) -> None:
        """Copy stderr up to the end of a line with `word`; if the child ends
        first, fail with what it said (its last line: its reason)."""
        while True:
            at = self.buffer.find(word.encode())
            end = self.buffer.find(b"\n", at) if at >= 0 else -1
            if end >= 0:
                sys.stderr.buffer.write(self.buffer[:end + 1])
                sys.stderr.flush()
                self.buffer = self.buffer[end + 1:]
                return
            chunk = await self.stderr.receive_some()
            if not chunk:
                said = self.buffer.decode(errors="replace").strip().splitlines()
                last = said[-1].removeprefix("styxgrid: ") if said else "no message"
                raise OSError(f"{' '.join(self.args[:1])} ended: {last}")
            self.buffer += chunk

    async def copy_stderr(self) -> None:
        """Copy stderr whole lines at a time, so that ours are never cut into."""
        async for chunk in self.stderr:
            self.buffer += chunk
            end = self.buffer.rfind(b"\n")
            if end >= 0:
                sys.stderr.buffer.write(self.buffer[:end + 1])
                sys.stderr.flush()
                self.buffer = self.buffer[end + 1:]

    async def wait(self) -> int:
        return await trio.to_thread.run_sync(self.popen.wait, abandon_on_cancel=True)

    def stop(self) -> None:
        """SIGTERM, then wait: a worker kills its tasks, a mount unmounts."""
        if self.popen.poll() is None:
            self.popen.terminate()
            try:
                self.popen.wait(20)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()


def clear_dead_mount(path: str) -> str | None:
    """Lazily unmount a FUSE mount at `path` whose process is gone (every access
    fails with ENOTCONN); what was done, or None if there was nothing to do."""
    try:
        os.stat(path)
        return None
    except OSError as exc:
        if exc.errno != errno.ENOTCONN:
            return None
    for command in (["fusermount3", "-u", "-z", path], ["umount", "-l", path]):
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=30)
        except FileNotFoundError:
            continue
        if done.returncode == 0:
            return f"{path} was a mount whose process had ended; unmounted it"
    raise OSError(f"{path} is a mount whose process has ended, and it cannot be "
                  f"unmounted: run  fusermount3 -uz {path}")
