"""Sans-IO 9P2000 codec: message objects to bytes and bytes to message objects.

`encode(msg)` gives the wire bytes of one message.  `Decoder` is fed byte chunks of
any size and hands back whole messages (or NEED_DATA); its buffer never holds more
than one message of at most msize bytes plus the chunk that completed it.  Anything
malformed raises RemoteProtocolError and nothing else.
"""

from __future__ import annotations

import struct
from collections import deque
from typing import Final

from .errors import LocalProtocolError, RemoteProtocolError
from .messages import MAXWELEM, MESSAGE_TYPES, Message, Qid, Stat

HEADER = struct.Struct("<IBH")      # size[4] type[1] tag[2]
MIN_SIZE = HEADER.size              # 7
_U8, _U16, _U32, _U64 = (struct.Struct(f) for f in ("<B", "<H", "<I", "<Q"))
_QID = struct.Struct("<BIQ")
_STAT_FIXED = struct.Struct("<HHIBIQIIIQ")  # size type dev qid(type vers path) mode atime mtime length
_setattr = object.__setattr__


class _NeedData:
    """Sentinel type: the decoder holds no whole message yet."""

    def __repr__(self) -> str:
        return "NEED_DATA"


NEED_DATA: Final = _NeedData()


# ---------------------------------------------------------------- encoding

def _put_str(out: bytearray, value: str) -> None:
    raw = value.encode("utf-8")
    if len(raw) > 0xFFFF:
        raise LocalProtocolError("string longer than 65535 bytes")
    out += _U16.pack(len(raw))
    out += raw


def encode_stat(st: Stat) -> bytes:
    """One stat entry with its leading size[2], as in Rstat and directory reads."""
    strings = bytearray()
    for s in (st.name, st.uid, st.gid, st.muid):
        _put_str(strings, s)
    body_len = _STAT_FIXED.size - 2 + len(strings)
    if body_len > 0xFFFF:
        raise LocalProtocolError("stat entry longer than 65535 bytes")
    q = st.qid
    return _STAT_FIXED.pack(body_len, st.type, st.dev, q.type, q.vers, q.path, st.mode,
                            st.atime, st.mtime, st.length) + bytes(strings)


def _put_field(out: bytearray, kind: str, value) -> None:
    if kind == "u32":
        out += _U32.pack(value)
    elif kind == "s":
        _put_str(out, value)
    elif kind == "u64":
        out += _U64.pack(value)
    elif kind == "u16":
        out += _U16.pack(value)
    elif kind == "u8":
        out += _U8.pack(value)
    elif kind == "qid":
        out += _QID.pack(value.type, value.vers, value.path)
    elif kind == "data":
        out += _U32.pack(len(value))
        out += value
    elif kind == "stat":
        raw = encode_stat(value)
        out += _U16.pack(len(raw))
        out += raw
    elif kind == "wnames":
        out += _U16.pack(len(value))
        for name in value:
            _put_str(out, name)
    elif kind == "wqids":
        out += _U16.pack(len(value))
        for q in value:
            out += _QID.pack(q.type, q.vers, q.path)


def encode_to(frames: list[bytes], msg: Message) -> None:
    """Append the wire bytes of `msg` to `frames`; a trailing data payload (Rread,
    Twrite) is appended as its own frame, so it is never copied."""
    fields = msg.FIELDS
    data = getattr(msg, fields[-1][0]) if fields and fields[-1][1] == "data" else None
    out = bytearray(HEADER.size)
    for name, kind in (fields[:-1] if data is not None else fields):
        _put_field(out, kind, getattr(msg, name))
    size = len(out) + (4 + len(data) if data is not None else 0)
    if size > 0xFFFFFFFF:
        raise LocalProtocolError("message too large")
    HEADER.pack_into(out, 0, size, msg.TYPE, msg.tag)
    if data is None:
        frames.append(bytes(out))
    else:
        out += _U32.pack(len(data))
        frames.append(bytes(out))
        if data:
            frames.append(data)


def encode(msg: Message) -> bytes:
    """The wire bytes of `msg` (size[4] type[1] tag[2] fields...)."""
    frames: list[bytes] = []
    encode_to(frames, msg)
    return b"".join(frames)


# ---------------------------------------------------------------- decoding

class _Reader:
    """Cursor over one message body; every overrun is a RemoteProtocolError."""

    __slots__ = ("buf", "pos", "end")

    def __init__(self, buf: memoryview, pos: int, end: int) -> None:
        self.buf, self.pos, self.end = buf, pos, end

    def take(self, n: int) -> int:
        start = self.pos
        if start + n > self.end:
            raise RemoteProtocolError("message truncated")
        self.pos = start + n
        return start

    def u8(self) -> int:
        return self.buf[self.take(1)]

    def u16(self) -> int:
        return _U16.unpack_from(self.buf, self.take(2))[0]

    def u32(self) -> int:
        return _U32.unpack_from(self.buf, self.take(4))[0]

    def u64(self) -> int:
        return _U64.unpack_from(self.buf, self.take(8))[0]

    def s(self) -> str:
        n = self.u16()
        start = self.take(n)
        try:
            return str(self.buf[start:start + n], "utf-8")
        except UnicodeDecodeError:
            raise RemoteProtocolError("string is not UTF-8") from None

    def qid(self) -> Qid:
        t, v, p = _QID.unpack_from(self.buf, self.take(13))
        qid = object.__new__(Qid)
        _setattr(qid, "type", t)
        _setattr(qid, "vers", v)
        _setattr(qid, "path", p)
        return qid

    def data(self) -> bytes:
        n = self.u32()
        start = self.take(n)
        return bytes(self.buf[start:start + n])

    def stat(self) -> Stat:
        n = self.u16()
        start = self.take(n)
        return decode_stat_at(self.buf, start, start + n)

    def wnames(self) -> tuple[str, ...]:
        n = self.u16()
        if n > MAXWELEM:
            raise RemoteProtocolError(f"walk of {n} names (more than {MAXWELEM})")
        return tuple(self.s() for _ in range(n))

    def wqids(self) -> tuple[Qid, ...]:
        n = self.u16()
        if n > MAXWELEM:
            raise RemoteProtocolError(f"walk reply of {n} qids (more than {MAXWELEM})")
        return tuple(self.qid() for _ in range(n))


def decode_stat_at(buf: memoryview | bytes, start: int, end: int) -> Stat:
    """Decode the stat entry occupying exactly buf[start:end] (with its size[2])."""
    r = _Reader(memoryview(buf), start, end)
    size = r.u16()
    if start + 2 + size != end:
        raise RemoteProtocolError("stat size does not match its field")
    typ, dev = r.u16(), r.u32()
    qid = r.qid()
    mode, atime, mtime, length = r.u32(), r.u32(), r.u32(), r.u64()
    name, uid, gid, muid = r.s(), r.s(), r.s(), r.s()
    if r.pos != end:
        raise RemoteProtocolError("stat entry has trailing bytes")
    return Stat(typ, dev, qid, mode, atime, mtime, length, name, uid, gid, muid)


def decode_stats(data: bytes) -> list[Stat]:
    """Split a directory read's data into its stat entries."""
    view, pos, out = memoryview(data), 0, []
    while pos < len(data):
        if pos + 2 > len(data):
            raise RemoteProtocolError("directory entry truncated")
        end = pos + 2 + _U16.unpack_from(view, pos)[0]
        if end > len(data):
            raise RemoteProtocolError("directory entry truncated")
        out.append(decode_stat_at(view, pos, end))
        pos = end
    return out


def decode_message(frame: bytes | memoryview) -> Message:
    """Decode exactly one whole message (size field included)."""
    view = memoryview(frame)
    if len(view) < MIN_SIZE:
        raise RemoteProtocolError("message shorter than its header")
    size, code, tag = HEADER.unpack_from(view, 0)
    if size != len(view):
        raise RemoteProtocolError("size field does not match the message length")
    cls = MESSAGE_TYPES.get(code)
    if cls is None:
        raise RemoteProtocolError(f"unknown message type {code}")
    r = _Reader(view, MIN_SIZE, size)
    values = [getattr(r, kind)() for _, kind in cls.FIELDS]
    if r.pos != size:
        raise RemoteProtocolError(f"{cls.__name__} has {size - r.pos} trailing bytes")
    return _build(cls, tag, values)



def _build(cls: type[Message], tag: int, values: list) -> Message:
    """Construct a decoded message without re-checking it: every value came from a
    wire field of the right width, so it is valid by construction."""
    msg = object.__new__(cls)
    _setattr(msg, "tag", tag)
    for (name, _), value in zip(cls.FIELDS, values):
        _setattr(msg, name, value)
    return msg


class Decoder:
    """Incremental decoder: `feed(bytes)`, then `next_message()` until NEED_DATA.

    Received pieces are kept as they came (a queue and an offset into the first),
    not appended to one buffer: a frame inside one piece is decoded from a view of
    it, a frame spanning pieces is joined once.  A 1 MiB Twrite that arrives in
    sixteen reads is copied once here, not four times.
    """

    def __init__(self, msize: int = 8192) -> None:
        self.msize = msize
        self._pieces: deque[bytes] = deque()
        self._offset = 0                    # bytes of the first piece already used
        self._held = 0                      # bytes held in all pieces, unused

    def feed(self, data: bytes | bytearray) -> None:
        if data:
            self._pieces.append(data if type(data) is bytes else bytes(data))
            self._held += len(data)

    @property
    def buffered(self) -> int:
        """Bytes held that are not yet a whole message."""
        return self._held

    def _size_field(self) -> int:
        first = self._pieces[0]
        if len(first) - self._offset >= 4:
            return _U32.unpack_from(first, self._offset)[0]
        head = b"".join(self._pieces)[self._offset:self._offset + 4]
        return _U32.unpack(head)[0]

    def missing(self) -> int:
        """Bytes still to come for the frame being received (0 if unknown)."""
        if self._held < 4:
            return 0
        return max(0, min(self._size_field(), self.msize) - self._held)

    def _take(self, n: int) -> bytes | memoryview:
        pieces, off = self._pieces, self._offset
        first = pieces[0]
        self._held -= n
        if len(first) - off >= n:
            if off == 0 and len(first) == n:
                pieces.popleft()
                return first
            self._offset = off + n
            if self._offset == len(first):
                pieces.popleft()
                self._offset = 0
            return memoryview(first)[off:off + n]
        parts: list[bytes | memoryview] = [memoryview(first)[off:]]
        need = n - (len(first) - off)
        pieces.popleft()
        self._offset = 0
        while need:
            piece = pieces[0]
            if len(piece) <= need:
                parts.append(piece)
                need -= len(piece)
                pieces.popleft()
            else:
                parts.append(memoryview(piece)[:need])
                self._offset = need
                need = 0
        return b"".join(parts)

    def next_message(self) -> Message | _NeedData:
        if self._held < 4:
            return NEED_DATA
        size = self._size_field()
        if size < MIN_SIZE:
            raise RemoteProtocolError(f"size field {size} is less than {MIN_SIZE}")
        if size > self.msize:
            raise RemoteProtocolError(f"size field {size} is more than msize {self.msize}")
        if self._held < size:
            return NEED_DATA
        return decode_message(self._take(size))
