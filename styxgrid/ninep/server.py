"""9P2000 server framework on trio, in the style of lib9p's srv.c and styxservers(2).

The framework owns version/msize, fids, tags and every check of intro(5); the
application supplies a `FileServer` whose `attach` returns the root `Node` of its
tree.  Per connection there is one reader loop and one nursery.  Requests that
never wait (walk, open, stat, clunk, ...) are answered inline in arrival order.
A read that must wait on a `Signal` is kept as a small record (`_Parked`) until
the signal fires; when it does, one short task per connection asks the handles
again and sends what they answer.  Other reads and writes that wait run each in
its own task under its own cancel scope.  Tflush discards a parked record at once,
or cancels that scope and waits for the task to end; then it answers Rflush, and
the flushed request gets no reply (flush(5)).  A read still parked when its fid is
clunked is answered "interrupted".

Containment, as lib9p's single `respond`: every request is answered exactly once,
and a handler that fails in any unexpected way is answered Rerror ("internal
error") and logged with its traceback; the connection and the server go on.  Only
bytes that are not 9P2000 close a connection, and nothing a client sends ends the
server.  Names, offsets and lengths are checked here, before any handler sees them.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Awaitable, Callable, Iterator, Protocol, TypeVar

import trio

from . import errors as E
from . import memory
from .codec import Decoder, encode_to
from .errors import NinePError, RemoteProtocolError
from .messages import (IOHDRSZ, NOFID, ORDWR, OWRITE, Message, Rerror, Rflush, Rread, Rwrite, Tflush,
                       Tread, Tversion, Twrite)
from .parking import Parked, Parking
from .requests import MAX_OFFSET, SYNC_HANDLERS, read_dir
from .transport import Transport, peer_credentials, transport_for
from .tree import Handle, Node, Session

log = logging.getLogger("styxgrid.ninep")
A = TypeVar("A", bound=tuple[Any, ...])     # what a request run in a task of its own is given

RECEIVE_SIZE = 65536          # below malloc's mmap threshold: no mmap per receive
FAIR_SHARE = 64               # requests one connection is served before others get a turn


@dataclass(frozen=True)
class Limits:
    """Per-server bounds; a connection past them gets errors or back-pressure."""

    max_msize: int = 1 << 20 | IOHDRSZ   # 1 MiB of payload per read or write
    max_fids: int = 8192                 # per connection; more is "too many fids"
    max_inflight: int = 4096             # requests being worked on; then we stop reading
    max_waiting: int = 4096              # reads waiting on a signal, per connection
    max_waiting_fid: int = 16            # ... and per fid (a shell waits with one)
    max_name: int = 255                  # bytes of one file name, user or attach name


class FileServer(Protocol):
    """What an application serves: the root of the tree seen by one attach."""

    def attach(self, session: Session) -> Node: ...


class Fid:
    __slots__ = ("node", "session", "mode", "handle", "dir_children", "dir_next", "dir_offset",
                 "parked")

    def __init__(self, node: Node, session: Session) -> None:
        self.node = node
        self.session = session
        self.mode: int | None = None          # open mode once opened
        self.handle: Handle | None = None
        self.dir_children: Iterator[Node] = iter(())   # entries not read yet
        self.dir_next: bytes | None = None    # an entry that did not fit the last read
        self.dir_offset = 0                   # byte offset the next dir read must use
        self.parked: dict[Parked, None] = {}     # its reads waiting on a signal


class _Request:
    __slots__ = ("scope", "done", "flushed")

    def __init__(self) -> None:
        self.scope = trio.CancelScope()
        self.done = trio.Event()
        self.flushed = False


_BROKEN = (trio.BrokenResourceError, trio.ClosedResourceError)


class Connection:
    """One client connection: its fids, its outstanding tags, its msize."""

    def __init__(self, transport: Transport, fs: FileServer, *,
                 peer: dict[str, Any], limits: Limits, trace: bool) -> None:
        self.transport = transport
        self.fs = fs
        self.peer = peer
        self.limits = limits
        self.trace = trace
        self.msize = limits.max_msize
        self.decoder = Decoder(limits.max_msize)
        self.versioned = False
        self.fids: dict[int, Fid] = {}
        self.inflight: dict[int, _Request] = {}     # requests a task works on
        self.parking = Parking(self)                # reads waiting on a signal
        self.send_lock = trio.StrictFIFOLock()
        self.room = trio.Event()
        self.nursery: trio.Nursery | None = None

    # ------------------------------------------------------------ the loops

    async def run(self) -> None:
        try:
            async with trio.open_nursery() as nursery:
                self.nursery = nursery
                try:
                    await self.read_loop()
                finally:
                    self.parking.cancel_all()
                    nursery.cancel_scope.cancel()
        finally:
            memory.released(self.clunk_all())

    async def read_loop(self) -> None:
        out: list[bytes] = []
        handled = 0
        while True:
            try:
                msg = self.decoder.next_message()
            except RemoteProtocolError as exc:
                log.info("closing connection from %s: %s", self.peer, exc)
                await self.send(out)
                return
            except Exception:
                log.exception("closing connection from %s: the decoder failed", self.peer)
                await self.send(out)
                return
            if not isinstance(msg, Message):            # NEED_DATA
                await self.send(out)
                out = []
                try:
                    data = await self.transport.receive_some(RECEIVE_SIZE)
                except _BROKEN:
                    return
                if not data:
                    return
                self.decoder.feed(data)
                handled = 0
                continue
            handled += 1
            if handled > FAIR_SHARE:       # a client that sends thousands at once
                handled = 0                # lets the others in between
                await self.send(out)
                out = []
                await trio.lowlevel.checkpoint()
            if len(self.inflight) >= self.limits.max_inflight:
                await self.send(out)
                out = []
                while len(self.inflight) >= self.limits.max_inflight:
                    self.room = trio.Event()
                    await self.room.wait()
            self.dispatch(msg, out)

    async def send(self, frames: list[bytes]) -> None:
        if not frames:
            return
        try:
            self.send_lock.acquire_nowait()     # uncontended: no trip through the loop
        except trio.WouldBlock:
            await self.send_lock.acquire()
        try:
            await self.transport.send_frames(frames)
        except _BROKEN:
            if self.nursery is not None:
                self.nursery.cancel_scope.cancel()
        finally:
            self.send_lock.release()

    def reply(self, msg: Message, out: list[bytes]) -> None:
        if self.trace:
            log.debug("-> %s", msg)
        encode_to(out, msg)

    def failed(self, msg: Message, exc: Exception) -> Rerror:
        """The answer to a request whose handler failed unexpectedly: logged with
        its traceback; the client learns only that it was an internal error."""
        log.error("%s from %s failed: %s: %s", type(msg).__name__, self.peer,
                  type(exc).__name__, exc, exc_info=exc)
        return Rerror(msg.tag, E.EINTERNAL)

    def dispatch(self, msg: Message, out: list[bytes]) -> None:
        if self.trace:
            log.debug("<- %s", msg)
        tag = msg.tag
        try:
            if tag in self.inflight or tag in self.parking.reads:
                raise NinePError(E.EDUPTAG)
            if not self.versioned and type(msg) is not Tversion:
                raise NinePError(E.ENOVERSION)
            handler = SYNC_HANDLERS.get(type(msg))
            if handler is not None:
                self.reply(handler(self, msg), out)
            elif type(msg) is Tread:
                self.start_read(msg, out)
            elif type(msg) is Twrite:
                self.start_write(msg, out)
            elif type(msg) is Tflush:
                self.start_flush(msg, out)
            else:
                raise NinePError(E.EBADMSG)
        except NinePError as exc:
            self.reply(Rerror(tag, exc.ename), out)
        except Exception as exc:
            self.reply(self.failed(msg, exc), out)

    def spawn(self, tag: int, fn: Callable[[A], Awaitable[Message]], args: A) -> None:
        """Run fn(args) in a task of its own (args: the request, then what it needs)."""
        request = _Request()
        self.inflight[tag] = request
        assert self.nursery is not None
        self.nursery.start_soon(self.run_request, tag, request, fn, args)

    async def run_request(self, tag: int, request: _Request,
                          fn: Callable[[A], Awaitable[Message]], args: A) -> None:
        reply: Message | None = None
        with request.scope:
            try:
                reply = await fn(args)
            except NinePError as exc:
                reply = Rerror(tag, exc.ename)
            except Exception as exc:
                reply = self.failed(args[0], exc)
        if self.inflight.get(tag) is request:
            self.done(tag)
        try:
            if reply is not None and not request.flushed:
                out: list[bytes] = []
                self.reply(reply, out)
                await self.send(out)
        finally:
            request.done.set()

    def done(self, tag: int) -> None:
        """The request `tag` is answered (or flushed): its tag may be used again."""
        self.inflight.pop(tag, None)
        if len(self.inflight) < self.limits.max_inflight:
            self.room.set()

    # ------------------------------------------------------------ fids

    def clunk_all(self) -> int:
        fids, self.fids = self.fids, {}
        for fid in fids.values():
            self.release(fid)
        return len(fids)

    def release(self, fid: Fid) -> None:
        """Close the fid's handle: a fid is clunked even if its handle fails to close
        (clunk(5)); the failure is logged.  Reads parked on it are interrupted."""
        for parked in list(fid.parked):
            if not parked.interrupted:
                self.parking.interrupt(parked)
                parked.wake()                       # answered "interrupted"
        if fid.handle is not None:
            try:
                fid.handle.clunk()
            except Exception:
                log.exception("clunk of %s for %s failed", fid.node, self.peer)

    # ------------------------------------------------------------ helpers

    def fid(self, n: int) -> Fid:
        fid = self.fids.get(n)
        if fid is None:
            raise NinePError(E.EBADFID)
        return fid

    def new_fid(self, n: int, node: Node, session: Session) -> None:
        if n == NOFID or n in self.fids:
            raise NinePError(E.EDUPFID)
        if len(self.fids) >= self.limits.max_fids:
            raise NinePError(E.ETOOMANYFIDS)
        self.fids[n] = Fid(node, session)

    @property
    def iounit(self) -> int:
        return self.msize - IOHDRSZ

    def check_name(self, name: str) -> None:
        """A name to create or rename to: not empty, `.` or `..`, no `/`."""
        if name in ("", ".", "..") or "/" in name:
            raise NinePError(E.EBADNAME)
        self.check_chars(name)

    def check_chars(self, name: str) -> None:
        """Any name that enters: no NUL byte, at most max_name bytes."""
        if "\0" in name:
            raise NinePError(E.EBADNAMECHAR)
        if len(name) > self.limits.max_name // 4 and \
                len(name.encode()) > self.limits.max_name:
            raise NinePError(E.ENAMETOOLONG)

    # ------------------------------------------------------------ requests

    def io_unit(self, fid: Fid) -> int:
        unit = fid.handle.iounit if fid.handle is not None else 0
        return min(unit, self.iounit) if unit else self.iounit

    def start_read(self, msg: Tread, out: list[bytes]) -> None:
        fid = self.fid(msg.fid)
        if fid.mode is None:
            raise NinePError(E.ENOTOPEN)
        if fid.mode & 3 == OWRITE:
            raise NinePError(E.EPERM)
        if msg.offset > MAX_OFFSET:
            raise NinePError(E.EBADOFFSETRANGE)
        count = min(msg.count, self.iounit)
        if fid.handle is None:
            self.reply(Rread(msg.tag, read_dir(self, fid, msg.offset, count)), out)
            return
        handle = fid.handle
        try:
            data = handle.read_nowait(msg.offset, count)
        except trio.WouldBlock:
            signal = handle.read_signal()
            if signal is not None:
                self.parking.park(msg, fid, handle, count, signal)
            else:
                self.spawn(msg.tag, self.read_file, (msg, handle, count))
            return
        self.reply(Rread(msg.tag, data[:count]), out)

    async def read_file(self, args: tuple[Tread, Handle, int]) -> Message:
        msg, handle, count = args
        data = await handle.read(msg.offset, count)
        return Rread(msg.tag, data[:count])

    def start_write(self, msg: Twrite, out: list[bytes]) -> None:
        fid = self.fid(msg.fid)
        if fid.mode is None:
            raise NinePError(E.ENOTOPEN)
        if fid.mode & 3 not in (OWRITE, ORDWR) or fid.handle is None:
            raise NinePError(E.EPERM)
        if msg.offset + len(msg.data) > MAX_OFFSET:
            raise NinePError(E.EBADOFFSETRANGE)
        try:
            count = fid.handle.write_nowait(msg.offset, msg.data)
        except trio.WouldBlock:
            self.spawn(msg.tag, self.write_file, (msg, fid.handle))
            return
        self.reply(Rwrite(msg.tag, count), out)

    async def write_file(self, args: tuple[Twrite, Handle]) -> Message:
        msg, handle = args
        return Rwrite(msg.tag, await handle.write(msg.offset, msg.data))

    def start_flush(self, msg: Tflush, out: list[bytes]) -> None:
        request = self.inflight.get(msg.oldtag)
        if request is not None:
            self.spawn(msg.tag, self.flush, (msg, request))
            return
        parked = self.parking.reads.get(msg.oldtag)
        if parked is not None:
            self.parking.cancel(parked)
        self.reply(Rflush(msg.tag), out)

    async def flush(self, args: tuple[Tflush, _Request]) -> Message:
        msg, request = args
        request.flushed = True
        request.scope.cancel()
        await request.done.wait()
        return Rflush(msg.tag)


async def serve_stream(stream: trio.abc.Stream | Transport, fs: FileServer, *,
                       peer: dict[str, Any] | None = None, limits: Limits = Limits(),
                       trace: bool = False) -> None:
    """Serve one connection until the client goes away; always closes the stream."""
    transport = transport_for(stream)
    try:
        peer = peer if peer is not None else peer_credentials(stream)
        await Connection(transport, fs, peer=peer, limits=limits, trace=trace).run()
    except Exception:
        log.exception("connection from %s ended by an internal error", peer)
    finally:
        await transport.aclose()


async def serve_listeners(fs: FileServer, listeners: list[trio.SocketListener], *,
                          limits: Limits = Limits(), trace: bool = False,
                          task_status: trio.TaskStatus[list[trio.SocketListener]]
                          = trio.TASK_STATUS_IGNORED) -> None:
    """Accept connections forever, each served in its own task."""
    async def handler(stream: trio.abc.Stream) -> None:
        await serve_stream(stream, fs, limits=limits, trace=trace)
    await trio.serve_listeners(handler, listeners, task_status=task_status)
