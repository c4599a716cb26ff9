"""9P2000 messages as values: one frozen, slotted dataclass per T- and R-message.

Each class lists its wire fields in `FIELDS` (after size, type and tag), which the
codec reads to encode and decode it; construction checks every field, so an invalid
message cannot be built (it raises LocalProtocolError).  No I/O here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from .errors import LocalProtocolError

NOTAG = 0xFFFF
NOFID = 0xFFFFFFFF
MAXWELEM = 16
IOHDRSZ = 24  # Rread/Twrite header (size[4] type[1] tag[2] fid[4] offset[8] count[4] + slack)
VERSION = "9P2000"

# Open modes (intro(5), open(5)).
OREAD, OWRITE, ORDWR, OEXEC = 0, 1, 2, 3
OTRUNC, ORCLOSE = 0x10, 0x40

# Qid types and the mode bits of a stat.
QTDIR, QTAPPEND, QTEXCL, QTAUTH, QTTMP, QTFILE = 0x80, 0x40, 0x20, 0x08, 0x04, 0x00
DMDIR, DMAPPEND, DMEXCL, DMAUTH, DMTMP = 0x80000000, 0x40000000, 0x20000000, 0x08000000, 0x04000000

_LIMITS = {"u8": 0xFF, "u16": 0xFFFF, "u32": 0xFFFFFFFF, "u64": 0xFFFFFFFFFFFFFFFF}


def _int_check(limit: int):
    return lambda v: type(v) is int and 0 <= v <= limit


_CHECKS = {kind: _int_check(limit) for kind, limit in _LIMITS.items()}
_CHECKS.update({
    "s": lambda v: type(v) is str and len(v) <= 0xFFFF,
    "data": lambda v: isinstance(v, (bytes, bytearray, memoryview)),
    "qid": lambda v: type(v) is Qid,
    "stat": lambda v: type(v) is Stat,
    "wnames": lambda v: type(v) is tuple and len(v) <= MAXWELEM and all(type(n) is str for n in v),
    "wqids": lambda v: type(v) is tuple and len(v) <= MAXWELEM and all(type(q) is Qid for q in v),
})


class _Checked:
    """Mixin: validate every field listed in FIELDS after construction."""

    __slots__ = ()
    FIELDS: ClassVar[tuple[tuple[str, str], ...]] = ()

    def __post_init__(self) -> None:
        for name, kind in self.FIELDS:
            if not _CHECKS[kind](getattr(self, name)):
                raise LocalProtocolError(
                    f"{type(self).__name__}.{name}: {getattr(self, name)!r} is not a valid {kind}")


@dataclass(frozen=True, slots=True)
class Qid(_Checked):
    """The server's unique identity of a file: type bits, version, path."""

    type: int
    vers: int
    path: int
    FIELDS: ClassVar = (("type", "u8"), ("vers", "u32"), ("path", "u64"))

    @property
    def is_dir(self) -> bool:
        return bool(self.type & QTDIR)


@dataclass(frozen=True, slots=True)
class Stat(_Checked):
    """A directory entry (stat(5)); ~0 / "" mean "don't touch" in Twstat."""

    type: int
    dev: int
    qid: Qid
    mode: int
    atime: int
    mtime: int
    length: int
    name: str
    uid: str
    gid: str
    muid: str
    FIELDS: ClassVar = (("type", "u16"), ("dev", "u32"), ("qid", "qid"), ("mode", "u32"),
                        ("atime", "u32"), ("mtime", "u32"), ("length", "u64"), ("name", "s"),
                        ("uid", "s"), ("gid", "s"), ("muid", "s"))

    @classmethod
    def dont_touch(cls, **changes: object) -> Stat:
        """A Twstat stat that changes only the given fields."""
        base = dict(type=0xFFFF, dev=0xFFFFFFFF, qid=Qid(0xFF, 0xFFFFFFFF, 0xFFFFFFFFFFFFFFFF),
                    mode=0xFFFFFFFF, atime=0xFFFFFFFF, mtime=0xFFFFFFFF,
                    length=0xFFFFFFFFFFFFFFFF, name="", uid="", gid="", muid="")
        base.update(changes)
        return cls(**base)  # type: ignore[arg-type]


@dataclass(frozen=True, slots=True)
class Message(_Checked):
    """Base of every 9P message; TYPE is the wire type byte."""

    tag: int
    TYPE: ClassVar[int] = 0

    def __post_init__(self) -> None:
        if type(self.tag) is not int or not 0 <= self.tag <= NOTAG:
            raise LocalProtocolError(f"{type(self).__name__}.tag: {self.tag!r} is not a u16")
        for name, kind in self.FIELDS:
            if not _CHECKS[kind](getattr(self, name)):
                raise LocalProtocolError(
                    f"{type(self).__name__}.{name}: {getattr(self, name)!r} is not a valid {kind}")


def _msg(type_code: int, fields: tuple[tuple[str, str], ...]):
    """Class decorator: give a message its wire type and field list."""
    def wrap(cls):
        cls.TYPE = type_code
        cls.FIELDS = fields
        return cls
    return wrap


@_msg(100, (("msize", "u32"), ("version", "s")))
@dataclass(frozen=True, slots=True)
class Tversion(Message):
    msize: int
    version: str


@_msg(101, (("msize", "u32"), ("version", "s")))
@dataclass(frozen=True, slots=True)
class Rversion(Message):
    msize: int
    version: str


@_msg(102, (("afid", "u32"), ("uname", "s"), ("aname", "s")))
@dataclass(frozen=True, slots=True)
class Tauth(Message):
    afid: int
    uname: str
    aname: str


@_msg(103, (("aqid", "qid"),))
@dataclass(frozen=True, slots=True)
class Rauth(Message):
    aqid: Qid


@_msg(104, (("fid", "u32"), ("afid", "u32"), ("uname", "s"), ("aname", "s")))
@dataclass(frozen=True, slots=True)
class Tattach(Message):
    fid: int
    afid: int
    uname: str
    aname: str


@_msg(105, (("qid", "qid"),))
@dataclass(frozen=True, slots=True)
class Rattach(Message):
    qid: Qid


@_msg(107, (("ename", "s"),))
@dataclass(frozen=True, slots=True)
class Rerror(Message):
    ename: str


@_msg(108, (("oldtag", "u16"),))
@dataclass(frozen=True, slots=True)
class Tflush(Message):
    oldtag: int


@_msg(109, ())
@dataclass(frozen=True, slots=True)
class Rflush(Message):
    pass


@_msg(110, (("fid", "u32"), ("newfid", "u32"), ("wnames", "wnames")))
@dataclass(frozen=True, slots=True)
class Twalk(Message):
    fid: int
    newfid: int
    wnames: tuple[str, ...] = field(default=())


@_msg(111, (("wqids", "wqids"),))
@dataclass(frozen=True, slots=True)
class Rwalk(Message):
    wqids: tuple[Qid, ...] = field(default=())


@_msg(112, (("fid", "u32"), ("mode", "u8")))
@dataclass(frozen=True, slots=True)
class Topen(Message):
    fid: int
    mode: int


@_msg(113, (("qid", "qid"), ("iounit", "u32")))
@dataclass(frozen=True, slots=True)
class Ropen(Message):
    qid: Qid
    iounit: int


@_msg(114, (("fid", "u32"), ("name", "s"), ("perm", "u32"), ("mode", "u8")))
@dataclass(frozen=True, slots=True)
class Tcreate(Message):
    fid: int
    name: str
    perm: int
    mode: int


@_msg(115, (("qid", "qid"), ("iounit", "u32")))
@dataclass(frozen=True, slots=True)
class Rcreate(Message):
    qid: Qid
    iounit: int


@_msg(116, (("fid", "u32"), ("offset", "u64"), ("count", "u32")))
@dataclass(frozen=True, slots=True)
class Tread(Message):
    fid: int
    offset: int
    count: int


@_msg(117, (("data", "data"),))
@dataclass(frozen=True, slots=True)
class Rread(Message):
    data: bytes | memoryview        # a server's reply may hold a view (no copy); decoded: bytes


@_msg(118, (("fid", "u32"), ("offset", "u64"), ("data", "data")))
@dataclass(frozen=True, slots=True)
class Twrite(Message):
    fid: int
    offset: int
    data: bytes


@_msg(119, (("count", "u32"),))
@dataclass(frozen=True, slots=True)
class Rwrite(Message):
    count: int


@_msg(120, (("fid", "u32"),))
@dataclass(frozen=True, slots=True)
class Tclunk(Message):
    fid: int


@_msg(121, ())
@dataclass(frozen=True, slots=True)
class Rclunk(Message):
    pass


@_msg(122, (("fid", "u32"),))
@dataclass(frozen=True, slots=True)
class Tremove(Message):
    fid: int


@_msg(123, ())
@dataclass(frozen=True, slots=True)
class Rremove(Message):
    pass


@_msg(124, (("fid", "u32"),))
@dataclass(frozen=True, slots=True)
class Tstat(Message):
    fid: int


@_msg(125, (("stat", "stat"),))
@dataclass(frozen=True, slots=True)
class Rstat(Message):
    stat: Stat


@_msg(126, (("fid", "u32"), ("stat", "stat")))
@dataclass(frozen=True, slots=True)
class Twstat(Message):
    fid: int
    stat: Stat


@_msg(127, ())
@dataclass(frozen=True, slots=True)
class Rwstat(Message):
    pass


MESSAGE_TYPES: dict[int, type[Message]] = {
    cls.TYPE: cls for cls in (
        Tversion, Rversion, Tauth, Rauth, Tattach, Rattach, Rerror, Tflush, Rflush,
        Twalk, Rwalk, Topen, Ropen, Tcreate, Rcreate, Tread, Rread, Twrite, Rwrite,
        Tclunk, Rclunk, Tremove, Rremove, Tstat, Rstat, Twstat, Rwstat)
}
T_MESSAGES = frozenset(cls for code, cls in MESSAGE_TYPES.items() if code % 2 == 0)
