"""One open file of the mount: its 9P fid, and how its bytes move.

A synthetic file (length 0: wait, stdout, ctl) is read one 9P read per FUSE read,
and a reader's signal interrupts a read that waits (EINTR).  A plain file (data)
is read ahead: whole-iounit 9P reads kept in flight ahead of a sequential reader.
Small writes (verbs) and a descriptor's first write wait for the server's answer,
so a bad verb fails its own write; later large sequential writes go behind, their
first error surfacing at the next write or at close, as on NFS.
"""

from __future__ import annotations

import errno
from dataclasses import dataclass, field

import pyfuse3
import trio

from ..errgroups import unwrapped
from ..ninep.client import ConnectionLost, File
from ..ninep.errors import NinePError
from .config import MountConfig
from .errors import errno_for
from .interrupt import wait_signal


@dataclass(eq=False)
class Chunk:
    """One 9P read or write in flight: its data once `ready` is set."""

    ready: trio.Event = field(default_factory=trio.Event)
    data: bytes = b""
    error: int = 0


@dataclass(eq=False)
class OpenFile:
    """An open file: its fid (None: /errstr), who opened it, what is in flight."""

    file: File | None
    path: str
    pid: int
    uid: int
    generation: int                                 # the connection it was opened on
    size: int = 0                                   # stat length at open (0: synthetic)
    errstr: bytes = b""
    ahead: dict[int, Chunk] = field(default_factory=dict)
    next_offset: int = -1
    behind: list[Chunk] = field(default_factory=list)     # writes in flight, oldest first
    next_write: int = -1
    write_error: str = ""

    async def read_parked(self, off: int, size: int) -> bytes:
        """A read of a synthetic file may wait (wait, stdout): it ends with EINTR
        when the reader gets a signal (see interrupt.py)."""
        file = self.file
        assert file is not None
        result: list[bytes] = []
        interrupted = False
        with unwrapped():
            async with trio.open_nursery() as nursery:
                async def read() -> None:
                    result.append(await file.pread(off, size))
                    nursery.cancel_scope.cancel()

                async def watch() -> None:
                    nonlocal interrupted
                    await wait_signal(self.pid)
                    interrupted = True
                    nursery.cancel_scope.cancel()
                nursery.start_soon(read)
                nursery.start_soon(watch)
        if interrupted and not result:
            raise pyfuse3.FUSEError(errno.EINTR)
        return result[0]

    async def read_ahead(self, off: int, size: int, nursery: trio.Nursery,
                         config: MountConfig) -> bytes:
        """Plain files: 9P reads of a whole iounit, `config.readahead` of them in
        flight ahead of a sequential reader; FUSE's smaller reads are served from
        them."""
        assert self.file is not None
        unit = self.file.iounit
        start = off - off % unit
        if off != self.next_offset and start not in self.ahead:
            self.ahead.clear()
        self.next_offset = off + size
        for k in range(config.readahead + 1):
            at = start + k * unit
            if at < max(self.size, off + size) and at not in self.ahead:
                self.ahead[at] = chunk = Chunk()
                nursery.start_soon(fetch, self.file, at, unit, chunk)
        for at in [a for a in self.ahead if a < start]:
            del self.ahead[at]
        out = b""
        while size > 0:
            waiting = self.ahead.get(start)
            if waiting is None:
                break
            await waiting.ready.wait()
            if waiting.error:
                raise pyfuse3.FUSEError(waiting.error)
            piece = waiting.data[off - start:off - start + size]
            out += piece
            if len(waiting.data) < unit or not piece:
                break                                   # end of file
            off += len(piece)
            size -= len(piece)
            start += unit
        return out

    def goes_behind(self, off: int, size: int, config: MountConfig) -> bool:
        """Whether a write may go behind: large, and where the last one ended."""
        return size >= config.behind_min and off == self.next_write

    async def write_behind(self, off: int, buf: bytes, nursery: trio.Nursery,
                           config: MountConfig) -> None:
        """Send the write in the background (at most `config.write_behind` in
        flight); an earlier one's error is raised here (as NinePError)."""
        while len(self.behind) >= config.write_behind:
            await self.behind[0].ready.wait()
            self.behind.pop(0)
            self.raise_write_error()
        chunk = Chunk()
        self.behind.append(chunk)
        self.next_write = off + len(buf)
        nursery.start_soon(self.send_behind, off, buf, chunk)

    async def send_behind(self, off: int, buf: bytes, chunk: Chunk) -> None:
        assert self.file is not None
        try:
            if await self.file.pwrite(off, buf) != len(buf):
                self.write_error = self.write_error or "short write"
        except (NinePError, ConnectionLost) as exc:
            self.write_error = self.write_error or \
                (exc.ename if isinstance(exc, NinePError) else f"i/o error: {exc}")
        finally:
            chunk.ready.set()

    def raise_write_error(self) -> None:
        """The first error of a write that went behind, once."""
        if self.write_error:
            text, self.write_error = self.write_error, ""
            raise NinePError(text)

    async def drain(self) -> None:
        """Wait for the writes in flight; raise the first error among them."""
        while self.behind:
            await self.behind.pop(0).ready.wait()
        self.raise_write_error()

    async def close(self) -> None:
        self.ahead.clear()
        while self.behind:
            await self.behind.pop(0).ready.wait()
        if self.file is not None:
            await self.file.close()


async def fetch(f: File, at: int, count: int, chunk: Chunk) -> None:
    try:
        chunk.data = await f.pread(at, count)
    except NinePError as exc:
        chunk.error = errno_for(exc.ename)
    except ConnectionLost:
        chunk.error = errno.EIO
    finally:
        chunk.ready.set()
