"""Addresses, listeners and connections: TCP `HOST:PORT` or a unix socket path.

A unix listener replaces a stale socket file (one nobody answers on), but refuses to
take over a live one.  `peer_credentials` reports what the kernel knows about the
client: its address and, on a unix socket, its uid/gid/pid (SO_PEERCRED).
"""

from __future__ import annotations

import errno
import os
import socket
import ssl
import stat
import struct
from dataclasses import dataclass
from typing import Any, Sequence

import trio

Buffer = bytes | memoryview        # a frame to send, or what is left of one


@dataclass(frozen=True)
class Address:
    """Where a 9P server listens: a unix socket path, or a TCP host and port."""

    path: str | None = None
    host: str | None = None
    port: int | None = None

    def __str__(self) -> str:
        return self.path if self.path is not None else f"{self.host}:{self.port}"


def parse_address(text: str) -> Address:
    """`HOST:PORT` (or `tcp!HOST!PORT`) is TCP; anything else with no colon, or with
    a slash, is a unix socket path (`unix!PATH` too), relative ones from the
    current folder."""
    given = text
    if text.startswith("unix!") and text[5:]:
        return Address(path=os.path.abspath(text[5:]))
    if text.startswith("tcp!"):
        parts = text.split("!")
        if len(parts) != 3:
            raise ValueError(f"bad address {text!r}: want tcp!HOST!PORT")
        text = f"{parts[1]}:{parts[2]}"
    elif text and "!" not in text and ("/" in text or ":" not in text):
        return Address(path=os.path.abspath(text))
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or int(port) > 65535:
        raise ValueError(f"bad address {given!r}: want HOST:PORT or a unix socket path")
    return Address(host=host.strip("[]") or "127.0.0.1", port=int(port))


async def _socket_is_live(path: str) -> bool:
    probe = trio.socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        await probe.connect(path)
    except OSError:
        return False
    finally:
        probe.close()
    return True


async def open_listeners(addr: Address, *, mode: int = 0o666) -> list[trio.SocketListener]:
    """Listen on `addr`; a stale unix socket file is removed first, and a new one
    gets `mode` (who may connect at all)."""
    if addr.path is None:
        assert addr.port is not None
        return await trio.open_tcp_listeners(addr.port, host=addr.host)
    path = addr.path
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        pass
    else:
        if not stat.S_ISSOCK(mode):
            raise OSError(errno.EEXIST, f"{path} exists and is not a socket")
        if await _socket_is_live(path):
            raise OSError(errno.EADDRINUSE, f"a server already answers on {path}")
        os.unlink(path)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    sock = trio.socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        await sock.bind(path)
        os.chmod(path, mode)
        sock.listen(socket.SOMAXCONN)
    except BaseException:
        sock.close()
        raise
    return [trio.SocketListener(sock)]


async def connect(addr: Address) -> trio.SocketStream:
    """A stream to `addr` (TCP_NODELAY is set by trio for TCP)."""
    if addr.path is not None:
        return await trio.open_unix_socket(addr.path)
    assert addr.host is not None and addr.port is not None
    return await trio.open_tcp_stream(addr.host, addr.port)


_UCRED = struct.Struct("3i")


def peer_credentials(stream: object) -> dict[str, Any]:
    """The peer's address, and uid/gid/pid when the stream is a unix socket."""
    sock = getattr(stream, "socket", None)
    if sock is None:
        return {}
    if sock.family == socket.AF_UNIX:
        raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _UCRED.size)
        pid, uid, gid = _UCRED.unpack(raw)
        return {"transport": "unix", "pid": pid, "uid": uid, "gid": gid}
    try:
        host, port = sock.getpeername()[:2]
    except OSError:
        return {"transport": "tcp"}
    return {"transport": "tcp", "address": f"{host}:{port}"}


class SocketTransport:
    """A connected socket driven through its descriptor: each call tries the system
    call first and waits only when the kernel says EAGAIN, so a request answered at
    once costs one pass of the event loop, not three (trio's streams checkpoint on
    every call).  Sends are scatter-gather (writev), so large reads go out uncopied.
    """

    IOV_MAX = 512
    BUFFER = 1 << 21            # room for a whole 1 MiB message each way (capped by the
                                # kernel's wmem_max/rmem_max; memory is used only when
                                # data waits, so idle connections cost nothing)

    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self.fd = stream.socket.fileno()
        for option in (socket.SO_SNDBUF, socket.SO_RCVBUF):
            stream.socket.setsockopt(socket.SOL_SOCKET, option, self.BUFFER)
        self._drained = True            # the last read emptied the socket
        self._fresh = 0

    async def receive_some(self, max_bytes: int) -> bytes:
        fd = self.fd
        try:
            if self._drained:
                await trio.lowlevel.wait_readable(fd)
                self._fresh = 0
            try:
                data = os.read(fd, max_bytes)
            except BlockingIOError:
                await trio.lowlevel.wait_readable(fd)
                self._fresh = 0
                data = os.read(fd, max_bytes)
        except OSError as exc:
            raise trio.BrokenResourceError(str(exc)) from exc
        self._drained = len(data) < max_bytes
        if not self._drained:
            self._fresh += 1
            if self._fresh >= 16:       # data kept arriving: let other tasks run
                self._fresh = 0
                await trio.lowlevel.checkpoint()
        return data

    async def send_frames(self, frames: Sequence[Buffer]) -> None:
        fd = self.fd
        while frames:
            try:
                sent = os.writev(fd, frames[:self.IOV_MAX])
            except BlockingIOError:
                await trio.lowlevel.wait_writable(fd)
                continue
            except OSError as exc:
                raise trio.BrokenResourceError(str(exc)) from exc
            frames = _advance(frames, sent)

    async def aclose(self) -> None:
        await trio.aclose_forcefully(self.stream)


def _advance(frames: Sequence[Buffer], sent: int) -> list[Buffer]:
    """Drop `sent` bytes from the front of `frames`."""
    i = 0
    while i < len(frames) and sent >= len(frames[i]):
        sent -= len(frames[i])
        i += 1
    rest = list(frames[i:])
    if sent:
        rest[0] = memoryview(rest[0])[sent:]
    return rest


class StreamTransport:
    """Any other trio stream (TLS, in-memory test streams) behind the same calls."""

    def __init__(self, stream: trio.abc.Stream) -> None:
        self.stream = stream

    async def receive_some(self, max_bytes: int) -> bytes | bytearray:
        return await self.stream.receive_some(max_bytes)

    async def send_frames(self, frames: list[bytes]) -> None:
        await self.stream.send_all(b"".join(frames))

    async def aclose(self) -> None:
        await trio.aclose_forcefully(self.stream)


class TLSTransport:
    """TLS on a socket, driven by hand: an ssl.SSLObject between two memory BIOs,
    its records carried by a SocketTransport.  trio.SSLStream costs ~45 us a round
    trip on these machines; the cipher itself ~4 us, so this is what the scheduler's
    TLS port and its clients use.  Every record goes out under one lock, so records
    flushed by a read (TLS 1.3 tickets, key updates) never cut into a write's.
    """

    def __init__(self, raw: SocketTransport, ssl_object: ssl.SSLObject,
                 incoming: ssl.MemoryBIO, outgoing: ssl.MemoryBIO) -> None:
        self.raw = raw
        self.ssl = ssl_object
        self.incoming = incoming
        self.outgoing = outgoing
        self.send_lock = trio.StrictFIFOLock()

    @classmethod
    async def handshake(cls, stream: trio.SocketStream, context: ssl.SSLContext, *,
                        server_side: bool, server_hostname: str | None = None) -> "TLSTransport":
        """Wrap a connected socket and complete the handshake (ssl.SSLError or
        trio.BrokenResourceError when it fails)."""
        incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        obj = context.wrap_bio(incoming, outgoing, server_side=server_side,
                               server_hostname=server_hostname)
        self = cls(SocketTransport(stream), obj, incoming, outgoing)
        while True:
            try:
                obj.do_handshake()
                break
            except ssl.SSLWantReadError:
                await self.flush()
                await self.fill()
        await self.flush()
        return self

    async def fill(self) -> None:
        data = await self.raw.receive_some(65536)
        if not data:
            raise trio.BrokenResourceError("connection closed during TLS")
        self.incoming.write(data)

    async def flush(self) -> None:
        if self.outgoing.pending:
            async with self.send_lock:
                data = self.outgoing.read()
                if data:
                    await self.raw.send_frames([data])

    def getpeercert(self, binary_form: bool = False):
        return self.ssl.getpeercert(binary_form)

    async def receive_some(self, max_bytes: int) -> bytes:
        if not self.incoming.pending and not self.ssl.pending():
            await self.flush()                   # nothing buffered: read the socket first,
            try:                                 # sparing a raised SSLWantReadError
                await self.fill()
            except trio.BrokenResourceError:
                return b""
        while True:
            try:
                return self.ssl.read(max_bytes)
            except ssl.SSLWantReadError:
                await self.flush()
                try:
                    await self.fill()
                except trio.BrokenResourceError:
                    return b""
            except ssl.SSLZeroReturnError:
                return b""
            except ssl.SSLError as exc:
                raise trio.BrokenResourceError(f"TLS: {exc}") from exc

    async def send_frames(self, frames: list[bytes]) -> None:
        try:
            self.send_lock.acquire_nowait()     # uncontended: no trip through the loop
        except trio.WouldBlock:
            await self.send_lock.acquire()
        try:
            if sum(map(len, frames)) <= 16384:   # small replies: one record, not one a frame
                frames = [b"".join(frames)]
            for frame in frames:
                self.ssl.write(frame)
            await self.raw.send_frames([self.outgoing.read()])
        except ssl.SSLError as exc:
            raise trio.BrokenResourceError(f"TLS: {exc}") from exc
        finally:
            self.send_lock.release()

    async def aclose(self) -> None:
        await self.raw.aclose()


Transport = SocketTransport | StreamTransport | TLSTransport


def transport_for(stream: trio.abc.Stream | Transport) -> Transport:
    """The fastest transport that can drive `stream` (a transport is used as it is)."""
    if isinstance(stream, (SocketTransport, StreamTransport, TLSTransport)):
        return stream
    if type(stream) is trio.SocketStream:
        return SocketTransport(stream)
    return StreamTransport(stream)
