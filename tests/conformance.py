"""A 9P2000 conformance check run through two independent clients from PyPI.

The checks are written once, against `Session`, and run through both
`python-9p` (plan9port's C codec behind a small client) and `p9fs`'s `py9p`
(a pure-Python codec): neither shares a line with styxgrid's own codec, so a
server that passes has been read by someone else's idea of the protocol.
Each check names the rule it holds the server to (intro(5), walk(5), ...).
"""

from __future__ import annotations

import socket
import struct
from dataclasses import dataclass, field
from typing import Callable, Protocol

ROOT, F1, F2, UNUSED = 100, 101, 102, 4242
NOFID = 0xFFFFFFFF
QTDIR = 0x80
DMDIR = 0x80000000
OREAD, OWRITE, ORDWR, OTRUNC = 0, 1, 2, 0x10


class Refused(Exception):
    """The server answered Rerror."""


class Skip(Exception):
    """The check does not apply to this file."""


class Session(Protocol):
    def version(self, msize: int, version: str) -> tuple[int, str]: ...
    def attach(self, fid: int, uname: str, aname: str) -> int: ...          # qid type
    def walk(self, fid: int, newfid: int, names: list[str]) -> int: ...     # qids given
    def open(self, fid: int, mode: int) -> None: ...
    def create(self, fid: int, name: str, perm: int, mode: int) -> None: ...
    def read(self, fid: int, offset: int, count: int) -> bytes: ...
    def write(self, fid: int, offset: int, data: bytes) -> int: ...
    def stat(self, fid: int) -> tuple[str, int, int]: ...                   # name, length, qtype
    def clunk(self, fid: int) -> None: ...
    def remove(self, fid: int) -> None: ...
    def flush(self, oldtag: int) -> None: ...
    def close(self) -> None: ...


def dial(address: str) -> socket.socket:
    if address.startswith("/"):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(30)
        s.connect(address)
        return s
    host, port = address.rsplit(":", 1)
    return socket.create_connection((host, int(port)), timeout=30)


class Python9p:
    """python-9p: `py9p.client.Client`, replies checked by message class."""

    def __init__(self, address: str) -> None:
        from py9p import client, messages
        self.m = messages
        self.c = client.Client(dial(address))
        self.refused = client.RemoteError

    def rpc(self, message: object, reply: type) -> object:
        try:
            return self.c.rpc(message, reply)
        except self.refused as e:
            raise Refused(str(e)) from None

    def version(self, msize: int, version: str) -> tuple[int, str]:
        r = self.rpc(self.m.Tversion(msize=msize, version=version), self.m.Rversion)
        return r.msize, r.version

    def attach(self, fid: int, uname: str, aname: str) -> int:
        r = self.rpc(self.m.Tattach(fid=fid, afid=NOFID, uname=uname, aname=aname),
                     self.m.Rattach)
        return int(r.qid.type)

    def walk(self, fid: int, newfid: int, names: list[str]) -> int:
        return len(self.rpc(self.m.Twalk(fid=fid, newfid=newfid, wname=names),
                            self.m.Rwalk).wqid)

    def open(self, fid: int, mode: int) -> None:
        self.rpc(self.m.Topen(fid=fid, mode=mode), self.m.Ropen)

    def create(self, fid: int, name: str, perm: int, mode: int) -> None:
        self.rpc(self.m.Tcreate(fid=fid, name=name, perm=perm, mode=mode), self.m.Rcreate)

    def read(self, fid: int, offset: int, count: int) -> bytes:
        return self.rpc(self.m.Tread(fid=fid, offset=offset, count=count), self.m.Rread).data

    def write(self, fid: int, offset: int, data: bytes) -> int:
        return self.rpc(self.m.Twrite(fid=fid, offset=offset, data=data), self.m.Rwrite).count

    def stat(self, fid: int) -> tuple[str, int, int]:
        r = self.rpc(self.m.Tstat(fid=fid), self.m.Rstat)
        d = r.stat if isinstance(r.stat, self.m.Dir) else self.m.Dir.from_bytes(r.stat)
        return d.name, d.length, int(d.qid.type)

    def clunk(self, fid: int) -> None:
        self.rpc(self.m.Tclunk(fid=fid), self.m.Rclunk)

    def remove(self, fid: int) -> None:
        self.rpc(self.m.Tremove(fid=fid), self.m.Rremove)

    def flush(self, oldtag: int) -> None:
        self.rpc(self.m.Tflush(oldtag=oldtag), self.m.Rflush)

    def close(self) -> None:
        self.c.close()


class P9fs:
    """p9fs's `py9p.py9p`: Fcall records sent one at a time on its `Sock`."""

    def __init__(self, address: str) -> None:
        from py9p import py9p
        self.p = py9p
        self.sock = py9p.Sock(dial(address))
        self.tag = 1

    def rpc(self, kind: int, **fields: object) -> object:
        f = self.p.Fcall(kind, tag=self.p.NOTAG if kind == self.p.Tversion else self.tag)
        self.tag += 1
        for k, v in fields.items():
            setattr(f, k, v)
        self.sock.send(f)
        r = self.sock.recv()
        if r.tag != f.tag:
            raise AssertionError(f"reply tag {r.tag} for request tag {f.tag}")
        if r.type == self.p.Rerror:
            raise Refused(text(r.ename))
        if r.type != kind + 1:
            raise AssertionError(f"reply type {r.type} to request type {kind}")
        return r

    def version(self, msize: int, version: str) -> tuple[int, str]:
        r = self.rpc(self.p.Tversion, msize=msize, version=version.encode())
        return r.msize, text(r.version)

    def attach(self, fid: int, uname: str, aname: str) -> int:
        r = self.rpc(self.p.Tattach, fid=fid, afid=NOFID, uname=uname, aname=aname, uidnum=0)
        return r.qid.type

    def walk(self, fid: int, newfid: int, names: list[str]) -> int:
        return len(self.rpc(self.p.Twalk, fid=fid, newfid=newfid, wname=names).wqid)

    def open(self, fid: int, mode: int) -> None:
        self.rpc(self.p.Topen, fid=fid, mode=mode)

    def create(self, fid: int, name: str, perm: int, mode: int) -> None:
        self.rpc(self.p.Tcreate, fid=fid, name=name, perm=perm, mode=mode, extension=b"")

    def read(self, fid: int, offset: int, count: int) -> bytes:
        return self.rpc(self.p.Tread, fid=fid, offset=offset, count=count).data

    def write(self, fid: int, offset: int, data: bytes) -> int:
        return self.rpc(self.p.Twrite, fid=fid, offset=offset, data=data).count

    def stat(self, fid: int) -> tuple[str, int, int]:
        d = self.rpc(self.p.Tstat, fid=fid).stat[0]
        return text(d.name), d.length, d.qid.type

    def clunk(self, fid: int) -> None:
        self.rpc(self.p.Tclunk, fid=fid)

    def remove(self, fid: int) -> None:
        self.rpc(self.p.Tremove, fid=fid)

    def flush(self, oldtag: int) -> None:
        self.rpc(self.p.Tflush, oldtag=oldtag)

    def close(self) -> None:
        self.sock.close()


def text(value: str | bytes) -> str:
    """p9fs gives strings as bytes."""
    return value.decode() if isinstance(value, bytes) else value


CLIENTS: dict[str, Callable[[str], Session]] = {"python-9p": Python9p, "p9fs": P9fs}


def dir_names(data: bytes) -> list[str]:
    """Names in a directory read: stat records, each size[2] then the fixed part."""
    names, at = [], 0
    while at < len(data):
        size = struct.unpack_from("<H", data, at)[0]
        nlen = struct.unpack_from("<H", data, at + 41)[0]
        names.append(data[at + 43:at + 43 + nlen].decode())
        at += 2 + size
    return names


def refused(action: Callable[[], object], what: str) -> None:
    try:
        action()
    except Refused:
        return
    raise AssertionError(f"{what}: the server did not answer Rerror")


@dataclass
class Report:
    client: str
    passed: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        return (f"{self.client}: passed {self.passed}, skipped {self.skipped}, "
                f"failed {self.failed}")


def check(address: str, client: str, *, path: str, uname: str = "probe",
          wfile: str | None = None, wdir: str | None = None) -> Report:
    """Run every check through one client; a failing check does not stop the rest."""
    s = CLIENTS[client](address)
    report = Report(client)
    names = [p for p in path.split("/") if p]
    length = 0

    def step(name: str, action: Callable[[], object]) -> None:
        try:
            action()
        except Skip as why:
            report.skipped.append(f"{name} ({why})")
        except Exception as e:              # any failure is that step's, reported by name
            report.failed.append(f"{name}: {type(e).__name__}: {e}")
        else:
            report.passed.append(name)

    def version() -> None:
        msize, v = s.version(8192, "9P2000")
        assert v == "9P2000" and 0 < msize <= 8192, (msize, v)

    def version_unknown() -> None:               # version(5): an unknown version is named
        other = CLIENTS[client](address)
        try:
            assert other.version(8192, "XX-bogus")[1] == "unknown"
        finally:
            other.close()

    def attach() -> None:
        assert s.attach(ROOT, uname, "") & QTDIR, "the root is not a directory"
        refused(lambda: s.attach(ROOT, uname, ""), "attach on a fid in use")

    def walk_stat_open_read() -> None:
        nonlocal length
        assert s.walk(ROOT, F1, names) == len(names), "walk gave fewer qids than names"
        name, length, qtype = s.stat(F1)
        assert name == names[-1] and not qtype & QTDIR, (name, qtype)
        s.open(F1, OREAD)
        data = s.read(F1, 0, 4096)
        assert data and len(data) <= 4096
        if length:
            assert len(data) == min(4096, length), (len(data), length)

    def read_eof() -> None:
        if not length:
            raise Skip("a synthetic file: stat length 0")
        assert s.read(F1, length, 4096) == b""

    def clunk() -> None:
        s.clunk(F1)
        refused(lambda: s.clunk(F1), "clunk of a clunked fid")
        refused(lambda: s.stat(UNUSED), "stat of a fid never used")

    def ls() -> None:
        s.walk(ROOT, F1, [])
        s.open(F1, OREAD)
        listed, offset = [], 0
        while data := s.read(F1, offset, 8192):
            listed += dir_names(data)
            offset += len(data)
        s.clunk(F1)
        assert names[0] in listed, listed

    def write() -> None:
        if not wfile:
            raise Skip("no file to write")
        s.walk(ROOT, F1, wfile.split("/"))
        s.open(F1, ORDWR)
        original = s.read(F1, 0, 8192)
        s.clunk(F1)
        s.walk(ROOT, F1, wfile.split("/"))
        s.open(F1, ORDWR | OTRUNC)
        assert s.write(F1, 0, b"written by " + client.encode()) == 11 + len(client)
        assert s.read(F1, 0, 8192) == b"written by " + client.encode()
        s.clunk(F1)
        s.walk(ROOT, F1, wfile.split("/"))
        s.open(F1, OWRITE | OTRUNC)
        s.write(F1, 0, original)
        s.clunk(F1)

    def create_remove() -> None:
        if not wdir:
            raise Skip("no folder to create in")
        made = f"conformance-{client}.txt"
        s.walk(ROOT, F1, wdir.split("/"))
        s.create(F1, made, 0o644, OWRITE)
        assert s.write(F1, 0, b"12345") == 5
        s.clunk(F1)
        s.walk(ROOT, F1, [*wdir.split("/"), made])
        assert s.stat(F1)[:2] == (made, 5)
        s.remove(F1)                             # remove(5): the fid is clunked too
        refused(lambda: s.stat(F1), "stat of a removed fid")
        gone = [*wdir.split("/"), made]
        try:                                     # walk(5): an error, or fewer qids than names
            assert s.walk(ROOT, F2, gone) < len(gone), "walk reached a removed file"
        except Refused:
            pass

    def walk_errors() -> None:                   # walk(5)
        refused(lambda: s.walk(ROOT, F2, ["no-such-name"]), "walk to a missing name")
        refused(lambda: s.stat(F2), "a failed walk made its newfid")
        if wdir:
            assert s.walk(ROOT, F2, [wdir.split("/")[0], "no-such-name"]) == 1
            refused(lambda: s.stat(F2), "a partial walk made its newfid")

    def flush() -> None:                         # flush(5): an unknown oldtag is fine
        s.flush(999)

    def clunk_root() -> None:
        s.clunk(ROOT)

    try:
        for name, action in [("version", version), ("version-unknown", version_unknown),
                             ("attach", attach), ("walk-stat-open-read", walk_stat_open_read),
                             ("read-eof", read_eof), ("clunk", clunk), ("ls", ls),
                             ("write", write), ("create-remove", create_remove),
                             ("walk-errors", walk_errors), ("flush", flush),
                             ("clunk-root", clunk_root)]:
            step(name, action)
    finally:
        s.close()
    return report


def check_both(address: str, **kwargs: object) -> list[Report]:
    return [check(address, client, **kwargs) for client in CLIENTS]  # type: ignore[arg-type]
