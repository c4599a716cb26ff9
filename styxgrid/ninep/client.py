"""9P2000 client on trio: one connection, many requests in flight.

A reader task routes each reply by tag to the task that waits for it.  A caller
cancelled while its request is outstanding sends Tflush and frees the tag only when
Rflush has come (flush(5)); if the reply came first it is honoured (a walked fid is
clunked).  Fids are allocated and recycled here; callers hold `File` objects.

    async with open_client("/path/sock", uname="me") as c:
        data = await c.read_file("jobs/3/status")
"""

from __future__ import annotations

import math
import os
from contextlib import asynccontextmanager
from typing import AsyncIterator, TypeVar

import trio

from ..errgroups import unwrapped
from . import errors as E
from .codec import Decoder, decode_stats, encode_to
from .errors import NinePError, RemoteProtocolError
from .messages import (IOHDRSZ, MAXWELEM, NOFID, NOTAG, OREAD, OTRUNC, OWRITE, VERSION,
                       Message, Qid, Rattach, Rclunk, Rcreate, Rerror, Ropen, Rread, Rremove,
                       Rstat, Rversion, Rwalk, Rwrite, Rwstat, Stat, Tattach, Tclunk, Tcreate,
                       Tflush, Topen, Tread, Tremove, Tstat, Tversion, Twalk, Twrite, Twstat)
from .transport import Address, Transport, connect, parse_address, transport_for

DEFAULT_MSIZE = (1 << 20) + IOHDRSZ
R = TypeVar("R", bound=Message)


class ConnectionLost(Exception):
    """The connection to the 9P server went away."""


class _Pending:
    __slots__ = ("event", "reply")

    def __init__(self) -> None:
        self.event = trio.Event()
        self.reply: Message | None = None


def split_path(path: str) -> list[str]:
    return [p for p in path.split("/") if p and p != "."]


class Client:
    """A connected, attached 9P2000 session.  Use `open_client` to get one."""

    def __init__(self, stream: trio.abc.Stream | Transport, msize: int) -> None:
        self.transport = transport_for(stream)
        self.decoder = Decoder(msize)
        self.msize = msize
        self.pending: dict[int, _Pending] = {}
        self.free_tags: list[int] = []       # tags used before and free again
        self.next_tag = 0                    # tags from here up were never used
        self.tag_freed = trio.Event()
        self.next_fid = 1
        self.free_fids: list[int] = []
        self.root = 0
        self.send_lock = trio.StrictFIFOLock()
        self.closed: str | None = None
        self.lost = trio.Event()             # set when the connection has gone

    # ------------------------------------------------------------ plumbing

    async def reader(self) -> None:
        """Route replies to waiters until the connection closes."""
        try:
            while True:
                data = await self.transport.receive_some(65536)
                if not data:
                    break
                self.decoder.feed(data)
                while True:
                    msg = self.decoder.next_message()
                    if not isinstance(msg, Message):      # NEED_DATA
                        break
                    waiter = self.pending.get(msg.tag)
                    if waiter is not None and waiter.reply is None:
                        waiter.reply = msg
                        waiter.event.set()
        except (trio.BrokenResourceError, trio.ClosedResourceError, RemoteProtocolError) as exc:
            self.closed = str(exc) or type(exc).__name__
        finally:
            self.closed = self.closed or "connection closed by the server"
            for waiter in self.pending.values():
                waiter.event.set()
            self.lost.set()

    async def send(self, msg: Message) -> None:
        frames: list[bytes] = []
        encode_to(frames, msg)
        try:
            self.send_lock.acquire_nowait()
        except trio.WouldBlock:
            await self.send_lock.acquire()
        try:
            await self.transport.send_frames(frames)
        except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            raise ConnectionLost(str(exc)) from None
        finally:
            self.send_lock.release()

    async def alloc_tag(self) -> int:
        """A free tag: one freed before, else a fresh one; all NOTAG of them in use
        waits.  (Tags are made as needed: a client costs memory for the requests it
        has had in flight at once, not for every possible tag.)"""
        while not self.free_tags:
            if self.next_tag < NOTAG:
                self.next_tag += 1
                return self.next_tag - 1
            self.tag_freed = trio.Event()
            await self.tag_freed.wait()
        return self.free_tags.pop()

    def free_tag(self, tag: int) -> None:
        self.pending.pop(tag, None)
        self.free_tags.append(tag)
        self.tag_freed.set()

    async def rpc(self, expect: type[R], make: type[Message], *args: object) -> R:
        """Send make(tag, *args) and return its reply, which must be an `expect`;
        Rerror raises NinePError, and so does a reply of another kind (the server
        is broken; the caller's request failed)."""
        reply = await self.rpc_raw(make, *args)
        if type(reply) is expect:
            return reply
        if type(reply) is Rerror:
            raise NinePError(reply.ename)
        raise NinePError(f"protocol error: {type(reply).__name__} in reply to {make.__name__}")

    async def rpc_raw(self, make: type[Message], *args: object) -> Message:
        if self.closed:
            raise ConnectionLost(self.closed)
        tag = await self.alloc_tag()
        waiter = _Pending()
        self.pending[tag] = waiter
        try:
            await self.send(make(tag, *args))
            await waiter.event.wait()
        except trio.Cancelled:
            with trio.CancelScope(shield=True):
                await self.flush(tag, waiter)
            raise
        except BaseException:
            self.free_tag(tag)
            raise
        self.free_tag(tag)
        if waiter.reply is None:
            raise ConnectionLost(self.closed or "connection closed")
        return waiter.reply

    async def flush(self, oldtag: int, waiter: _Pending) -> None:
        """Tflush `oldtag`; the tag is reused only after Rflush (or its reply) came."""
        try:
            if waiter.reply is None and not self.closed:
                await self.rpc_raw(Tflush, oldtag)
        except ConnectionLost:
            pass
        finally:
            self.free_tag(oldtag)

    def alloc_fid(self) -> int:
        if self.free_fids:
            return self.free_fids.pop()
        self.next_fid += 1
        return self.next_fid

    # ------------------------------------------------------------ session

    async def handshake(self, uname: str, aname: str) -> None:
        reply = await self.rpc(Rversion, Tversion, self.msize, VERSION)
        if reply.version != VERSION:
            raise NinePError(f"server speaks {reply.version!r}, not {VERSION}")
        self.msize = min(self.msize, reply.msize)
        self.decoder.msize = self.msize
        self.root = self.alloc_fid()
        await self.rpc(Rattach, Tattach, self.root, NOFID, uname, aname)

    @property
    def iounit(self) -> int:
        return self.msize - IOHDRSZ

    # ------------------------------------------------------------ files

    async def walk(self, path: str) -> int:
        """A new fid for `path` (relative to the root); NinePError if it is not there."""
        names = split_path(path)
        fid = self.alloc_fid()
        chunks = [tuple(names[i:i + MAXWELEM]) for i in range(0, len(names), MAXWELEM)] or [()]
        start = self.root
        try:
            for chunk in chunks:
                reply = await self.rpc(Rwalk, Twalk, start, fid, chunk)
                if len(reply.wqids) != len(chunk):
                    raise NinePError(f"{await self.walk_error(start, chunk, len(reply.wqids))}"
                                     f": {path}")
                start = fid
        except BaseException as exc:
            if start == fid or isinstance(exc, trio.Cancelled):
                with trio.CancelScope(shield=True):   # the fid may exist on the server
                    await self.clunk_quietly(fid)
            else:
                self.free_fids.append(fid)
            raise
        return fid

    async def walk_error(self, start: int, names: tuple[str, ...], reached: int) -> str:
        """Why a walk stopped after `reached` names: a partial Rwalk carries no error
        (walk(5)), so walk to where it stopped and try the next name alone."""
        base = self.alloc_fid()
        probe = self.alloc_fid()
        try:
            await self.rpc(Rwalk, Twalk, start, base, names[:reached])
            try:
                await self.rpc(Rwalk, Twalk, base, probe, names[reached:reached + 1])
            except NinePError as exc:
                self.free_fids.append(probe)
                return exc.ename
            await self.clunk_quietly(probe)            # it is there after all
        except NinePError:
            self.free_fids.append(probe)
        finally:
            await self.clunk_quietly(base)
        return E.ENOTFOUND

    async def clunk(self, fid: int) -> None:
        try:
            await self.rpc(Rclunk, Tclunk, fid)
        finally:
            self.free_fids.append(fid)

    async def open(self, path: str, mode: int = OREAD) -> "File":
        fid = await self.walk(path)
        try:
            reply = await self.rpc(Ropen, Topen, fid, mode)
        except BaseException:
            with trio.CancelScope(shield=True):
                await self.clunk_quietly(fid)
            raise
        return File(self, fid, reply.qid, reply.iounit or self.iounit)

    async def create(self, path: str, perm: int = 0o644, mode: int = OWRITE) -> "File":
        parts = split_path(path)
        if not parts:
            raise NinePError(E.EBADNAME)
        fid = await self.walk("/".join(parts[:-1]))
        try:
            reply = await self.rpc(Rcreate, Tcreate, fid, parts[-1], perm, mode)
        except BaseException:
            with trio.CancelScope(shield=True):
                await self.clunk_quietly(fid)
            raise
        return File(self, fid, reply.qid, reply.iounit or self.iounit)

    async def clunk_quietly(self, fid: int) -> None:
        try:
            await self.clunk(fid)
        except (NinePError, ConnectionLost):
            pass

    async def remove(self, path: str) -> None:
        fid = await self.walk(path)
        try:
            await self.rpc(Rremove, Tremove, fid)
        finally:
            self.free_fids.append(fid)

    async def stat(self, path: str) -> Stat:
        fid = await self.walk(path)
        try:
            return (await self.rpc(Rstat, Tstat, fid)).stat
        finally:
            await self.clunk_quietly(fid)

    async def wstat(self, path: str, stat: Stat) -> None:
        fid = await self.walk(path)
        try:
            await self.rpc(Rwstat, Twstat, fid, stat)
        finally:
            await self.clunk_quietly(fid)

    async def ls(self, path: str = "") -> list[Stat]:
        f = await self.open(path)
        async with f:
            return decode_stats(await f.read_all())

    async def read_file(self, path: str) -> bytes:
        """Open, read to EOF, clunk."""
        f = await self.open(path)
        async with f:
            return await f.read_all()

    async def write_file(self, path: str, data: bytes, *, truncate: bool = True) -> None:
        """Open for writing (truncating; created if missing, like `cat >`), write, clunk.

        Each write must fit one iounit when the file is a ctl-like file whose
        verbs are whole writes; larger data goes in iounit pieces."""
        f = await self.open_or_create(path, truncate=truncate)
        async with f:
            await f.write(data)

    async def open_or_create(self, path: str, *, truncate: bool = True) -> "File":
        """Open for writing (truncating), or create it if it is not there."""
        try:
            return await self.open(path, OWRITE | (OTRUNC if truncate else 0))
        except NinePError as exc:
            if not exc.ename.startswith(E.ENOTFOUND):
                raise
            return await self.create(path)

    async def stream(self, path: str) -> AsyncIterator[bytes]:
        """Each chunk of `path` as it comes, until EOF (tail -f of a 9P stream)."""
        f = await self.open(path)
        async with f:
            while True:
                chunk = await f.read()
                if not chunk:
                    return
                yield chunk


class File:
    """An open fid: sequential or positional reads and writes; `close` clunks."""

    def __init__(self, client: Client, fid: int, qid: Qid, iounit: int) -> None:
        self.client = client
        self.fid = fid
        self.qid = qid
        self.iounit = min(iounit, client.iounit)
        self.offset = 0

    async def stat(self) -> Stat:
        return (await self.client.rpc(Rstat, Tstat, self.fid)).stat

    async def pread(self, offset: int, count: int) -> bytes:
        reply = await self.client.rpc(Rread, Tread, self.fid, offset, min(count, self.iounit))
        return bytes(reply.data)            # decoded: bytes already, so no copy

    async def read(self, count: int | None = None) -> bytes:
        data = await self.pread(self.offset, count or self.iounit)
        self.offset += len(data)
        return data

    async def read_all(self) -> bytes:
        parts: list[bytes] = []
        while True:
            chunk = await self.read()
            if not chunk:
                return b"".join(parts)
            parts.append(chunk)

    async def pwrite(self, offset: int, data: bytes) -> int:
        """Write all of `data` at `offset`, in iounit pieces; returns bytes written."""
        view, done = memoryview(data), 0
        for _ in range(max(1, math.ceil(len(data) / self.iounit))):
            piece = bytes(view[done:done + self.iounit])
            n = (await self.client.rpc(Rwrite, Twrite, self.fid, offset + done, piece)).count
            done += n
            if n < len(piece):
                break
        return done

    async def write(self, data: bytes) -> int:
        n = await self.pwrite(self.offset, data)
        self.offset += n
        return n

    async def close(self) -> None:
        if self.fid >= 0:
            fid, self.fid = self.fid, -1
            with trio.CancelScope(shield=True):
                await self.client.clunk_quietly(fid)

    async def __aenter__(self) -> "File":
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


@asynccontextmanager
async def open_client(addr: str | Address | trio.abc.Stream | Transport, *,
                      uname: str | None = None, aname: str = "",
                      msize: int = DEFAULT_MSIZE) -> AsyncIterator[Client]:
    """Connect (or take a connected stream), version, attach; close on exit."""
    stream: trio.abc.Stream | Transport
    if isinstance(addr, (str, Address)):
        stream = await connect(parse_address(addr) if isinstance(addr, str) else addr)
    else:
        stream = addr                      # a connected stream or transport (TLS)
    client = Client(stream, msize)
    try:
        with unwrapped():
            async with trio.open_nursery() as nursery:
                nursery.start_soon(client.reader)
                try:
                    await client.handshake(uname or default_uname(), aname)
                    yield client
                finally:
                    nursery.cancel_scope.cancel()
    finally:
        await client.transport.aclose()


def default_uname() -> str:
    import pwd
    try:
        return pwd.getpwuid(os.getuid()).pw_name
    except KeyError:
        return str(os.getuid())
