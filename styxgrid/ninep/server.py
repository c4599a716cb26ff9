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
from .codec import Decoder, encode_stat, encode_to
from .errors import NinePError, RemoteProtocolError
from .messages import (DMDIR, IOHDRSZ, NOFID, OEXEC, ORCLOSE, ORDWR, OREAD, OTRUNC, OWRITE,
                       VERSION, Message, Qid, Rattach, Rclunk, Rcreate, Rerror, Rflush, Ropen,
                       Rread, Rremove, Rstat, Rversion, Rwalk, Rwrite, Rwstat, Tattach,
                       Tauth, Tclunk, Tcreate, Tflush, Topen, Tread, Tremove, Tstat, Tversion,
                       Twalk, Twrite, Twstat)
from .transport import Transport, peer_credentials, transport_for
from .tree import Handle, Node, Session, Signal

log = logging.getLogger("styxgrid.ninep")
A = TypeVar("A", bound=tuple[Any, ...])     # what a request run in a task of its own is given

RECEIVE_SIZE = 65536          # below malloc's mmap threshold: no mmap per receive
MIN_MSIZE = 256
MAX_OFFSET = (1 << 63) - 1    # a file offset or length must fit a signed 64-bit off_t
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


class _Fid:
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
        self.parked: dict[_Parked, None] = {}    # its reads waiting on a signal


class _Parked:
    """A read waiting on a `Signal`: a record of a few slots instead of a task, so
    that many waiting reads (every worker's, every `cat events`) cost little."""

    __slots__ = ("conn", "msg", "fid", "handle", "count", "signal", "interrupted")

    def __init__(self, conn: Connection, msg: Tread, fid: _Fid, handle: Handle,
                 count: int) -> None:
        self.conn = conn
        self.msg = msg
        self.fid = fid
        self.handle = handle
        self.count = count
        self.signal: Signal | None = None
        self.interrupted = False

    def wait_on(self, signal: Signal) -> None:
        self.signal = signal
        signal.add(self)

    def unwait(self) -> None:
        if self.signal is not None:
            self.signal.discard(self)
            self.signal = None

    def wake(self) -> None:
        self.signal = None
        self.conn.woken.append(self)
        self.conn.answer_soon()


class _Request:
    __slots__ = ("scope", "done", "flushed")

    def __init__(self) -> None:
        self.scope = trio.CancelScope()
        self.done = trio.Event()
        self.flushed = False


_OPEN_WANTS = {OREAD: 4, OWRITE: 2, ORDWR: 6, OEXEC: 1}
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
        self.fids: dict[int, _Fid] = {}
        self.inflight: dict[int, _Request] = {}     # requests a task works on
        self.parked: dict[int, _Parked] = {}        # reads waiting on a signal
        self.woken: list[_Parked] = []        # parked reads to ask again
        self.answering = False                # a task is answering `woken`
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
                    self.cancel_parked()
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
            if tag in self.inflight or tag in self.parked:
                raise NinePError(E.EDUPTAG)
            if not self.versioned and type(msg) is not Tversion:
                raise NinePError(E.ENOVERSION)
            handler = _SYNC_HANDLERS.get(type(msg))
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

    # ------------------------------------------------------------ parked reads

    def park(self, msg: Tread, fid: _Fid, handle: Handle, count: int,
             signal: Signal) -> None:
        if len(self.parked) >= self.limits.max_waiting:
            raise NinePError(f"too many reads waiting on this connection "
                             f"(at most {self.limits.max_waiting})")
        if len(fid.parked) >= self.limits.max_waiting_fid:
            raise NinePError(f"too many reads waiting on this fid "
                             f"(at most {self.limits.max_waiting_fid})")
        parked = _Parked(self, msg, fid, handle, count)
        self.parked[msg.tag] = parked
        fid.parked[parked] = None
        parked.wait_on(signal)

    def answer_soon(self) -> None:
        if not self.answering and self.nursery is not None:
            self.answering = True
            self.nursery.start_soon(self.answer_woken)

    async def answer_woken(self) -> None:
        """Ask the handles of woken reads again; send the answers, park the rest."""
        try:
            while self.woken:
                woken = self.woken[:FAIR_SHARE]     # others get a turn in between
                del self.woken[:FAIR_SHARE]
                out: list[bytes] = []
                for parked in woken:
                    self.retry(parked, out)
                await self.send(out)
                await trio.lowlevel.checkpoint()
        finally:
            self.answering = False

    def retry(self, parked: _Parked, out: list[bytes]) -> None:
        msg = parked.msg
        if self.parked.get(msg.tag) is not parked:
            return                                  # flushed meanwhile
        reply: Message
        if parked.interrupted:
            reply = Rerror(msg.tag, E.EINTERRUPTED)
        else:
            try:
                data = parked.handle.read_nowait(msg.offset, parked.count)
                reply = Rread(msg.tag, data[:parked.count])
            except trio.WouldBlock:
                signal = parked.handle.read_signal()
                if signal is not None:
                    parked.wait_on(signal)
                    return
                self.unpark(parked)
                self.spawn(msg.tag, self.read_file, (msg, parked.handle, parked.count))
                return
            except NinePError as exc:
                reply = Rerror(msg.tag, exc.ename)
            except Exception as exc:
                reply = self.failed(msg, exc)
        self.unpark(parked)
        self.reply(reply, out)

    def cancel(self, parked: _Parked) -> None:
        """A parked read is flushed or its connection closes: it gets no answer."""
        self.interrupt(parked)
        self.unpark(parked)

    def interrupt(self, parked: _Parked) -> None:
        """The read stops waiting and its handle is told (a lease hands its tasks
        back); told once, however the read ends."""
        parked.unwait()
        if parked.interrupted:
            return
        parked.interrupted = True
        try:
            parked.handle.read_cancelled()
        except Exception:
            log.exception("cancelling a read of %s for %s failed", parked.fid.node, self.peer)

    def cancel_parked(self) -> None:
        for parked in list(self.parked.values()):
            self.cancel(parked)
        self.woken.clear()

    def unpark(self, parked: _Parked) -> None:
        """The read is answered or cancelled: its tag may be used again."""
        del self.parked[parked.msg.tag]
        del parked.fid.parked[parked]
        memory.released(1)

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

    def release(self, fid: _Fid) -> None:
        """Close the fid's handle: a fid is clunked even if its handle fails to close
        (clunk(5)); the failure is logged.  Reads parked on it are interrupted."""
        for parked in list(fid.parked):
            if not parked.interrupted:
                self.interrupt(parked)
                parked.wake()                       # answered "interrupted"
        if fid.handle is not None:
            try:
                fid.handle.clunk()
            except Exception:
                log.exception("clunk of %s for %s failed", fid.node, self.peer)

    # ------------------------------------------------------------ helpers

    def fid(self, n: int) -> _Fid:
        fid = self.fids.get(n)
        if fid is None:
            raise NinePError(E.EBADFID)
        return fid

    def new_fid(self, n: int, node: Node, session: Session) -> None:
        if n == NOFID or n in self.fids:
            raise NinePError(E.EDUPFID)
        if len(self.fids) >= self.limits.max_fids:
            raise NinePError(E.ETOOMANYFIDS)
        self.fids[n] = _Fid(node, session)

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

    def version(self, msg: Tversion) -> Message:
        """A new session: every outstanding request is aborted unanswered (version(5))
        and every fid clunked."""
        for request in self.inflight.values():
            request.flushed = True
            request.scope.cancel()
        self.cancel_parked()
        self.clunk_all()
        if msg.msize < MIN_MSIZE:
            raise NinePError(f"msize {msg.msize} too small (minimum {MIN_MSIZE})")
        self.msize = min(msg.msize, self.limits.max_msize)
        if not msg.version.startswith(VERSION):
            self.versioned = False
            return Rversion(msg.tag, self.msize, "unknown")
        self.versioned = True
        self.decoder.msize = self.msize
        return Rversion(msg.tag, self.msize, VERSION)

    def auth(self, msg: Tauth) -> Message:
        raise NinePError(E.ENOAUTH)

    def attach(self, msg: Tattach) -> Message:
        if msg.afid != NOFID:
            raise NinePError(E.ENOAUTH)
        if msg.fid in self.fids:
            raise NinePError(E.EDUPFID)
        self.check_chars(msg.uname)
        self.check_chars(msg.aname)
        session = Session(msg.uname, msg.aname, peer=self.peer)
        root = self.fs.attach(session)
        self.new_fid(msg.fid, root, session)
        return Rattach(msg.tag, root.qid)

    def walk(self, msg: Twalk) -> Message:
        fid = self.fid(msg.fid)
        if fid.mode is not None:
            raise NinePError(E.EWALKOPEN)
        if msg.newfid != msg.fid and msg.newfid in self.fids:
            raise NinePError(E.EDUPFID)
        node, session = fid.node, fid.session
        qids: list[Qid] = []
        for name in msg.wnames:
            try:
                if not node.is_dir:
                    raise NinePError(E.ENOTDIR)
                if not node.permits(session, 1):
                    raise NinePError(E.EPERM)
                if name == "..":
                    node = node.parent or node
                elif name in ("", ".") or "/" in name:
                    raise NinePError(E.ENOTFOUND)
                else:
                    self.check_chars(name)
                    node = node.walk(name, session)
            except NinePError:
                if not qids:
                    raise
                return Rwalk(msg.tag, tuple(qids))
            qids.append(node.qid)
        if msg.newfid == msg.fid:
            fid.node = node
        else:
            self.new_fid(msg.newfid, node, session)
        return Rwalk(msg.tag, tuple(qids))

    def open(self, msg: Topen) -> Message:
        fid = self.fid(msg.fid)
        if fid.mode is not None:
            raise NinePError(E.EOPEN)
        mode, node = msg.mode, fid.node
        if mode & ~(3 | OTRUNC | ORCLOSE):
            raise NinePError(E.EBADMODE)
        want = _OPEN_WANTS[mode & 3] | (2 if mode & OTRUNC else 0)
        if node.is_dir and want != 4:
            raise NinePError(E.EISDIR)
        if not node.permits(fid.session, want):
            raise NinePError(E.EPERM)
        if mode & ORCLOSE and (node.parent is None or not node.parent.permits(fid.session, 2)):
            raise NinePError(E.EPERM)
        if not node.is_dir:
            fid.handle = node.open(mode, fid.session)
        fid.mode = mode
        return Ropen(msg.tag, node.qid, self.io_unit(fid))

    def io_unit(self, fid: _Fid) -> int:
        unit = fid.handle.iounit if fid.handle is not None else 0
        return min(unit, self.iounit) if unit else self.iounit

    def create(self, msg: Tcreate) -> Message:
        fid = self.fid(msg.fid)
        if fid.mode is not None:
            raise NinePError(E.EOPEN)
        if not fid.node.is_dir:
            raise NinePError(E.ENOTDIR)
        self.check_name(msg.name)
        if msg.mode & ~(3 | OTRUNC | ORCLOSE):
            raise NinePError(E.EBADMODE)
        if msg.perm & DMDIR and msg.mode & 3 != OREAD:
            raise NinePError(E.EISDIR)
        if not fid.node.permits(fid.session, 2):
            raise NinePError(E.EPERM)
        node, handle = fid.node.create(msg.name, msg.perm, msg.mode, fid.session)
        fid.node, fid.handle, fid.mode = node, handle, msg.mode
        return Rcreate(msg.tag, node.qid, self.io_unit(fid))

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
            self.reply(Rread(msg.tag, self.read_dir(fid, msg.offset, count)), out)
            return
        handle = fid.handle
        try:
            data = handle.read_nowait(msg.offset, count)
        except trio.WouldBlock:
            signal = handle.read_signal()
            if signal is not None:
                self.park(msg, fid, handle, count, signal)
            else:
                self.spawn(msg.tag, self.read_file, (msg, handle, count))
            return
        self.reply(Rread(msg.tag, data[:count]), out)

    async def read_file(self, args: tuple[Tread, Handle, int]) -> Message:
        msg, handle, count = args
        data = await handle.read(msg.offset, count)
        return Rread(msg.tag, data[:count])

    def read_dir(self, fid: _Fid, offset: int, count: int) -> bytes:
        """The next entries that fit in `count`.  Entries are made as they are read,
        never all at once: listing a directory of a million entries costs each read
        only what it returns, and other requests go on between the reads."""
        if offset == 0:
            fid.dir_children = iter(fid.node.children(fid.session))
            fid.dir_next, fid.dir_offset = None, 0
        elif offset != fid.dir_offset:
            raise NinePError(E.EBADOFFSET)
        parts: list[bytes] = []
        size = 0
        while True:
            entry = fid.dir_next if fid.dir_next is not None else self.next_entry(fid)
            if entry is None:
                break
            if size + len(entry) > count:
                fid.dir_next = entry
                if not parts:
                    raise NinePError("read count too small for a directory entry")
                break
            fid.dir_next = None
            parts.append(entry)
            size += len(entry)
        data = b"".join(parts)
        fid.dir_offset = offset + len(data)
        return data

    def next_entry(self, fid: _Fid) -> bytes | None:
        """The next child's stat entry; a child that went away meanwhile is skipped,
        and so is one whose stat fails unexpectedly (logged): `ls` shows the rest."""
        for child in fid.dir_children:
            try:
                return encode_stat(child.stat())
            except NinePError:
                continue
            except Exception:
                log.exception("stat of %s for a directory read by %s failed", child, self.peer)
        return None

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
        parked = self.parked.get(msg.oldtag)
        if parked is not None:
            self.cancel(parked)
        self.reply(Rflush(msg.tag), out)

    async def flush(self, args: tuple[Tflush, _Request]) -> Message:
        msg, request = args
        request.flushed = True
        request.scope.cancel()
        await request.done.wait()
        return Rflush(msg.tag)

    def clunk(self, msg: Tclunk) -> Message:
        fid = self.fids.pop(msg.fid, None)
        if fid is None:
            raise NinePError(E.EBADFID)
        self.release(fid)
        if fid.mode is not None and fid.mode & ORCLOSE:
            try:
                fid.node.remove(fid.session)
            except NinePError as exc:
                log.info("remove-on-close of %s failed: %s", fid.node, exc.ename)
        return Rclunk(msg.tag)

    def remove(self, msg: Tremove) -> Message:
        fid = self.fids.pop(msg.fid, None)
        if fid is None:
            raise NinePError(E.EBADFID)
        self.release(fid)
        parent = fid.node.parent
        if parent is None or not parent.permits(fid.session, 2):
            raise NinePError(E.EPERM)
        fid.node.remove(fid.session)
        return Rremove(msg.tag)

    def stat(self, msg: Tstat) -> Message:
        return Rstat(msg.tag, self.fid(msg.fid).node.stat())

    def wstat(self, msg: Twstat) -> Message:
        fid = self.fid(msg.fid)
        node, new, session = fid.node, msg.stat, fid.session
        cur = node.stat()
        if (new.type not in (0xFFFF, cur.type) or new.dev not in (0xFFFFFFFF, cur.dev)
                or new.qid.path not in (0xFFFFFFFFFFFFFFFF, cur.qid.path)
                or new.uid not in ("", cur.uid) or new.muid not in ("", cur.muid)):
            raise NinePError(E.EBADWSTAT)
        if new.mode != 0xFFFFFFFF and (new.mode ^ cur.mode) & DMDIR:
            raise NinePError(E.EBADWSTAT)
        owner_only = new.mode != 0xFFFFFFFF or new.gid not in ("", cur.gid) \
            or new.mtime != 0xFFFFFFFF
        if owner_only and cur.uid != session.uname:
            raise NinePError(E.EPERM)
        if new.name and new.name != cur.name:
            self.check_name(new.name)
            if node.parent is None or not node.parent.permits(session, 2):
                raise NinePError(E.EPERM)
        if new.length != 0xFFFFFFFFFFFFFFFF:
            if new.length > MAX_OFFSET:
                raise NinePError(E.EBADLENGTH)
            if node.is_dir and new.length != 0:
                raise NinePError(E.EISDIR)
            if not node.permits(session, 2):
                raise NinePError(E.EPERM)
        node.wstat(new, session)
        return Rwstat(msg.tag)


# Plain functions, not bound methods kept on each Connection: those made every
# connection a reference cycle (conn -> dict -> method -> conn), so a closed
# connection, its nursery and every request still in `inflight` waited for a full
# collection, which the scheduler's thresholds make rare.
_SYNC_HANDLERS: dict[type, Callable[[Connection, Any], Message]] = {
    Tversion: Connection.version, Tauth: Connection.auth, Tattach: Connection.attach,
    Twalk: Connection.walk, Topen: Connection.open, Tcreate: Connection.create,
    Tclunk: Connection.clunk, Tremove: Connection.remove, Tstat: Connection.stat,
    Twstat: Connection.wstat,
}


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
