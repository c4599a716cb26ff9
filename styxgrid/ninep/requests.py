"""The answer to each request that never waits, as lib9p's per-request functions:
the checks of intro(5) and of each message's page, then the tree's node is asked.

Each function takes the connection and the request and returns the reply, or
raises NinePError (the Rerror); server.py calls them from its one dispatch, which
also contains any other failure.  Reads, writes and flushes, which may wait, are
started in server.py.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, Callable

from . import errors as E
from .codec import encode_stat
from .errors import NinePError
from .messages import (DMDIR, NOFID, OEXEC, ORCLOSE, ORDWR, OREAD, OTRUNC, OWRITE, VERSION,
                       Message, Qid, Rattach, Rclunk, Rcreate, Ropen, Rremove, Rstat,
                       Rversion, Rwalk, Rwstat, Tattach, Tauth, Tclunk, Tcreate, Topen,
                       Tremove, Tstat, Tversion, Twalk, Twstat)
from .tree import Session

if TYPE_CHECKING:
    from .server import Connection, Fid

log = logging.getLogger("styxgrid.ninep")

MIN_MSIZE = 256
MAX_OFFSET = (1 << 63) - 1    # a file offset or length must fit a signed 64-bit off_t
_OPEN_WANTS = {OREAD: 4, OWRITE: 2, ORDWR: 6, OEXEC: 1}


def version(conn: Connection, msg: Tversion) -> Message:
    """A new session: every outstanding request is aborted unanswered (version(5))
    and every fid clunked."""
    for request in conn.inflight.values():
        request.flushed = True
        request.scope.cancel()
    conn.parking.cancel_all()
    conn.clunk_all()
    if msg.msize < MIN_MSIZE:
        raise NinePError(f"msize {msg.msize} too small (minimum {MIN_MSIZE})")
    conn.msize = min(msg.msize, conn.limits.max_msize)
    if not msg.version.startswith(VERSION):
        conn.versioned = False
        return Rversion(msg.tag, conn.msize, "unknown")
    conn.versioned = True
    conn.decoder.msize = conn.msize
    return Rversion(msg.tag, conn.msize, VERSION)


def auth(conn: Connection, msg: Tauth) -> Message:
    raise NinePError(E.ENOAUTH)


def attach(conn: Connection, msg: Tattach) -> Message:
    if msg.afid != NOFID:
        raise NinePError(E.ENOAUTH)
    if msg.fid in conn.fids:
        raise NinePError(E.EDUPFID)
    conn.check_chars(msg.uname)
    conn.check_chars(msg.aname)
    session = Session(msg.uname, msg.aname, peer=conn.peer)
    root = conn.fs.attach(session)
    conn.new_fid(msg.fid, root, session)
    return Rattach(msg.tag, root.qid)


def walk(conn: Connection, msg: Twalk) -> Message:
    fid = conn.fid(msg.fid)
    if fid.mode is not None:
        raise NinePError(E.EWALKOPEN)
    if msg.newfid != msg.fid and msg.newfid in conn.fids:
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
                conn.check_chars(name)
                node = node.walk(name, session)
        except NinePError:
            if not qids:
                raise
            return Rwalk(msg.tag, tuple(qids))
        qids.append(node.qid)
    if msg.newfid == msg.fid:
        fid.node = node
    else:
        conn.new_fid(msg.newfid, node, session)
    return Rwalk(msg.tag, tuple(qids))


def open_file(conn: Connection, msg: Topen) -> Message:
    fid = conn.fid(msg.fid)
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
    if mode & ORCLOSE and node.is_dir:
        raise NinePError(f"{E.EISDIR}: a directory cannot be removed on close")
    if mode & ORCLOSE and (node.parent is None or not node.parent.permits(fid.session, 2)):
        raise NinePError(E.EPERM)
    if not node.is_dir:
        fid.handle = node.open(mode, fid.session)
    fid.mode = mode
    return Ropen(msg.tag, node.qid, conn.io_unit(fid))


def create(conn: Connection, msg: Tcreate) -> Message:
    fid = conn.fid(msg.fid)
    if fid.mode is not None:
        raise NinePError(E.EOPEN)
    if not fid.node.is_dir:
        raise NinePError(E.ENOTDIR)
    conn.check_name(msg.name)
    if msg.mode & ~(3 | OTRUNC | ORCLOSE):
        raise NinePError(E.EBADMODE)
    if msg.perm & DMDIR and (msg.mode & 3 != OREAD or msg.mode & ORCLOSE):
        raise NinePError(E.EISDIR)
    if not fid.node.permits(fid.session, 2):
        raise NinePError(E.EPERM)
    node, handle = fid.node.create(msg.name, msg.perm, msg.mode, fid.session)
    fid.node, fid.handle, fid.mode = node, handle, msg.mode
    return Rcreate(msg.tag, node.qid, conn.io_unit(fid))


def read_dir(conn: Connection, fid: Fid, offset: int, count: int) -> bytes:
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
        entry = fid.dir_next if fid.dir_next is not None else next_entry(conn, fid)
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


def next_entry(conn: Connection, fid: Fid) -> bytes | None:
    """The next child's stat entry; a child that went away meanwhile is skipped,
    and so is one whose stat fails unexpectedly (logged): `ls` shows the rest."""
    for child in fid.dir_children:
        try:
            return encode_stat(child.stat())
        except NinePError:
            continue
        except Exception:
            log.exception("stat of %s for a directory read by %s failed", child, conn.peer)
    return None


def clunk(conn: Connection, msg: Tclunk) -> Message:
    fid = conn.fids.pop(msg.fid, None)
    if fid is None:
        raise NinePError(E.EBADFID)
    conn.release(fid)
    if fid.mode is not None and fid.mode & ORCLOSE:
        try:
            fid.node.remove(fid.session)
        except NinePError as exc:
            log.info("remove-on-close of %s failed: %s", fid.node, exc.ename)
    return Rclunk(msg.tag)


def remove(conn: Connection, msg: Tremove) -> Message:
    fid = conn.fids.pop(msg.fid, None)
    if fid is None:
        raise NinePError(E.EBADFID)
    conn.release(fid)
    parent = fid.node.parent
    if parent is None or not parent.permits(fid.session, 2):
        raise NinePError(E.EPERM)
    fid.node.remove(fid.session)
    return Rremove(msg.tag)


def stat(conn: Connection, msg: Tstat) -> Message:
    return Rstat(msg.tag, conn.fid(msg.fid).node.stat())


def wstat(conn: Connection, msg: Twstat) -> Message:
    fid = conn.fid(msg.fid)
    node, new, session = fid.node, msg.stat, fid.session
    cur = node.stat()
    if (new.type not in (0xFFFF, cur.type) or new.dev not in (0xFFFFFFFF, cur.dev)
            or new.qid.path not in (0xFFFFFFFFFFFFFFFF, cur.qid.path)
            or new.uid not in ("", cur.uid) or new.muid not in ("", cur.muid)):
        raise NinePError(E.EBADWSTAT)
    # stat(5): nothing but name, length, mode, mtime and gid may change; this server
    # has no groups to move a file to, so a gid other than the file's is refused too
    if new.atime not in (0xFFFFFFFF, cur.atime):
        raise NinePError(f"{E.EBADWSTAT}: atime cannot be changed")
    if new.gid not in ("", cur.gid):
        raise NinePError(f"{E.EBADWSTAT}: the group cannot be changed")
    if new.mode != 0xFFFFFFFF and (new.mode ^ cur.mode) & DMDIR:
        raise NinePError(E.EBADWSTAT)
    owner_only = new.mode != 0xFFFFFFFF or new.mtime != 0xFFFFFFFF
    if owner_only and cur.uid != session.uname:
        raise NinePError(E.EPERM)
    if new.name and new.name != cur.name:
        conn.check_name(new.name)
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


# Plain functions, not methods bound to each connection: a table of bound methods
# kept on a Connection would make it a reference cycle (see parking.py).
SYNC_HANDLERS: dict[type, Callable[["Connection", Any], Message]] = {
    Tversion: version, Tauth: auth, Tattach: attach, Twalk: walk, Topen: open_file,
    Tcreate: create, Tclunk: clunk, Tremove: remove, Tstat: stat, Twstat: wstat,
}
