"""Acting as a task's user in the calling thread only.

A worker started as root does a few things as a task's user: it starts the
task's process, writes its inputs, opens its outputs, and kills what the task
left behind.  glibc's setresuid changes the ids of every thread of the process
at once, so while one thread starts a task as its user, another thread writing
an input as root would fail (or worse, act as that user).  The kernel's own
system calls change only the calling thread's ids, as Go's os/exec does; a
process the thread starts (posix_spawn) inherits that thread's ids.

Root stays the saved id throughout, so the thread takes root back at once; a
program the thread execs loses it (execve makes the saved id the user's).  A
change of ids clears the thread's parent-death signal (`styxgrid up` sets one so
that its worker ends with it): it is set again on the way back.
"""

from __future__ import annotations

import ctypes
import os
import platform
from contextlib import contextmanager
from typing import Iterator

PR_SET_PDEATHSIG, PR_GET_PDEATHSIG = 1, 2
# (setresuid, setresgid) system call numbers: x86-64, and the generic table
_CALLS = {"x86_64": (117, 119), "aarch64": (147, 149), "riscv64": (147, 149)}
_libc = ctypes.CDLL(None, use_errno=True)


def _death_signal() -> tuple[int, int]:
    """(parent-death signal, parent) of the calling thread.  A new thread has
    none, so this is read once, on import, by the main thread (where the worker
    starts): then every thread that changes its ids sets it on the way back."""
    sig = ctypes.c_int(0)
    _libc.prctl(PR_GET_PDEATHSIG, ctypes.byref(sig))
    return sig.value, os.getppid()


_DEATH = _death_signal()


def _ids(which: int, real: int, effective: int, saved: int) -> None:
    calls = _CALLS.get(platform.machine())
    if calls is None:           # elsewhere: glibc's (every thread), still correct alone
        (os.setresuid if which == 0 else os.setresgid)(real, effective, saved)
        return
    if _libc.syscall(calls[which], real, effective, saved) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


@contextmanager
def acting_as(user: tuple[int, int] | None) -> Iterator[None]:
    """Within the block, this thread's real and effective uid and gid are the
    user's (uid, gid); None: stay as we are (a worker not started as root)."""
    if user is None:
        yield
        return
    death, parent = _DEATH
    _ids(1, user[1], user[1], 0)
    try:
        _ids(0, user[0], user[0], 0)
    except BaseException:
        _ids(1, 0, 0, 0)
        raise
    try:
        yield
    finally:
        _ids(0, 0, 0, 0)
        _ids(1, 0, 0, 0)
        if death:
            _libc.prctl(PR_SET_PDEATHSIG, death)
            if os.getppid() != parent:          # the parent went meanwhile
                os.kill(os.getpid(), death)
