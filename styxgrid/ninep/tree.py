"""What an application plugs into the server: a tree of nodes and their open handles.

In the style of Inferno's navigator and lib9p's file tree: a `Node` answers stat,
walk, directory listing, create, remove and wstat synchronously (they never wait);
`open` returns a `Handle`.  A read that must wait for something (a job's end, the
next event, work for a worker) names a `Signal` and is kept by the framework as a
small record until the signal fires: a hundred thousand waiting reads cost a
hundred thousand records, not tasks.  The framework owns fids, tags, offsets of
directory reads and permission checks; nodes never see fid numbers.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Iterable, Protocol

import trio

from .errors import EBADWSTAT, ENOTDIR, ENOTFOUND, EPERM, EREADONLY, NinePError
from .messages import DMDIR, QTDIR, Qid, Stat


@dataclass
class Session:
    """Who is on the other end of one attach: the 9P user and the view asked for.

    `peer` holds what the transport proved about the client (a unix peer's uid, a
    TLS certificate's name); applications may keep their own state in `data`.
    """

    uname: str
    aname: str
    peer: dict[str, Any] = field(default_factory=dict)
    data: dict[str, Any] = field(default_factory=dict)


class Waiter(Protocol):
    def wake(self) -> None: ...


class Signal:
    """Something waiting reads wait for.  `fire` wakes every waiter once; a woken
    waiter runs later (never inside `fire`), asks its handle again and, if there
    is still nothing, waits on the signal the handle names then."""

    __slots__ = ("waiters",)

    def __init__(self) -> None:
        self.waiters: dict[Waiter, None] = {}      # ordered: woken first come, first served

    def add(self, waiter: Waiter) -> None:
        self.waiters[waiter] = None

    def discard(self, waiter: Waiter) -> None:
        self.waiters.pop(waiter, None)
        if not self.waiters:
            self.waiters = {}       # a dict never shrinks: drop the table of a crowd gone

    def fire(self) -> None:
        if self.waiters:
            waiters, self.waiters = self.waiters, {}
            for waiter in waiters:
                waiter.wake()


class Handle:
    """One open file.

    The framework first calls `read_nowait`/`write_nowait`, answered inline.  A
    handle that cannot answer at once raises `trio.WouldBlock`.  For a read, the
    framework then asks `read_signal`: if it names a `Signal`, the read waits on it
    as a record and `read_nowait` is asked again when it fires; a read flushed or
    abandoned meanwhile is told to `read_cancelled`.  Otherwise (and for every
    write) the framework runs `read`/`write` in a task of its own, which may wait
    as long as it likes and is cancelled by Tflush.
    """

    iounit: int = 0

    def read_nowait(self, offset: int, count: int) -> bytes | memoryview:
        raise trio.WouldBlock

    def read_signal(self) -> Signal | None:
        """What a read that just got `trio.WouldBlock` waits for (None: run `read`)."""
        return None

    def read_cancelled(self) -> None:
        """A read waiting on `read_signal` was flushed or its connection closed."""

    async def read(self, offset: int, count: int) -> bytes | memoryview:
        raise NinePError(EPERM)

    def write_nowait(self, offset: int, data: bytes) -> int:
        raise trio.WouldBlock

    async def write(self, offset: int, data: bytes) -> int:
        raise NinePError(EREADONLY)

    def clunk(self) -> None:
        """The fid was clunked (or its connection went away)."""


class Node:
    """A file or directory.  Subclasses override what they serve."""

    parent: Node | None = None

    @property
    def qid(self) -> Qid:
        raise NotImplementedError

    def stat(self) -> Stat:
        raise NotImplementedError

    @property
    def is_dir(self) -> bool:
        return bool(self.qid.type & QTDIR)

    def permits(self, session: Session, want: int) -> bool:
        """May `session` read (4), write (2) or execute/search (1) this file?"""
        st = self.stat()
        if st.uid == session.uname:
            bits = st.mode >> 6
        elif st.gid == session.uname:
            bits = st.mode >> 3
        else:
            bits = st.mode
        return (bits & want) == want

    def walk(self, name: str, session: Session) -> Node:
        """The child called `name` (never "." or ".."); raise NinePError if none."""
        raise NinePError(ENOTDIR if not self.is_dir else ENOTFOUND)

    def children(self, session: Session) -> Iterable[Node]:
        return ()

    def open(self, mode: int, session: Session) -> Handle:
        """A handle for reading/writing this file; `mode` is the 9P open mode."""
        raise NinePError(EPERM)

    def create(self, name: str, perm: int, mode: int,
               session: Session) -> tuple[Node, Handle | None]:
        """The new file and its open handle (None for a directory: it is not opened)."""
        raise NinePError(EPERM)

    def remove(self, session: Session) -> None:
        raise NinePError(EPERM)

    def wstat(self, stat: Stat, session: Session) -> None:
        raise NinePError(EBADWSTAT)


class SyntheticNode(Node):
    """A node of a served (not on-disk) tree, with a fixed qid path and mode.

    The owner is `owner` (default: the server's "grid" user); `touch()` bumps the
    qid version when the content changes.
    """

    def __init__(self, name: str, qid_path: int, mode: int, *, owner: str = "grid",
                 parent: Node | None = None) -> None:
        self.name = name
        self.qid_path = qid_path
        self.mode = mode
        self.owner = owner
        self.parent = parent
        self.version = 0
        self.mtime = int(time.time())

    @property
    def qid(self) -> Qid:
        return Qid(QTDIR if self.mode & DMDIR else 0, self.version, self.qid_path)

    def touch(self) -> None:
        self.version = (self.version + 1) & 0xFFFFFFFF
        self.mtime = int(time.time())

    def stat(self) -> Stat:
        return Stat(0, 0, self.qid, self.mode, self.mtime, self.mtime, 0, self.name,
                    self.owner, self.owner, self.owner)
