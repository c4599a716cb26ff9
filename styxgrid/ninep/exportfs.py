"""Serve a host folder over 9P2000, like Plan 9's exportfs or diod.

Every node holds a real path (symlinks resolved) inside the exported folder; a
name or link that would lead outside is refused.  Access is checked by the
framework against the attach name with the files' own mode bits, the Plan 9 way;
the kernel then checks the server process's own rights.

File system calls are made inline: on a local disk they take microseconds, far less
than a hand-off to a thread would.  Large reads and writes are the exception: a
megabyte from the disk, or into fresh page-cache pages, takes milliseconds, so
transfers of THREAD_IO bytes or more go to a thread and the loop goes on serving.
A large read is first tried with RWF_NOWAIT: whole in the page cache, it is
answered at once.
"""

from __future__ import annotations

import errno
import grp
import os
import pwd
import stat as st_mod
from dataclasses import dataclass
from functools import lru_cache

import trio

from .errors import EBADWSTAT, EEXIST, ELEAVES, ENOTEMPTY, ENOTFOUND, EPERM, NinePError
from .messages import DMDIR, OEXEC, ORDWR, OTRUNC, OWRITE, QTDIR, Qid, Stat
from .tree import Handle, Node, Session

_ERRNO_TEXT = {
    errno.ENOENT: ENOTFOUND, errno.EACCES: EPERM, errno.EPERM: EPERM,
    errno.EEXIST: EEXIST, errno.ENOTEMPTY: ENOTEMPTY, errno.ELOOP: ELEAVES,
}


def os_error(exc: OSError) -> NinePError:
    """The 9P error for an OSError, with Plan 9's words where they exist."""
    text = _ERRNO_TEXT.get(exc.errno or 0) or os.strerror(exc.errno or errno.EIO).lower()
    return NinePError(text)


@lru_cache(maxsize=1024)
def _user(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


@lru_cache(maxsize=1024)
def _group(gid: int) -> str:
    try:
        return grp.getgrgid(gid).gr_name
    except KeyError:
        return str(gid)


def _qid(st: os.stat_result) -> Qid:
    is_dir = st_mod.S_ISDIR(st.st_mode)
    path = (st.st_ino ^ (st.st_dev << 48)) & 0xFFFFFFFFFFFFFFFF
    return Qid(QTDIR if is_dir else 0, (st.st_mtime_ns // 1000) & 0xFFFFFFFF, path)


THREAD_IO = 256 * 1024


class FileHandle(Handle):
    """An open host file: positional reads and writes on its descriptor."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.in_threads = 0          # transfers running in a thread: close waits for them
        self.closing = False

    def read_nowait(self, offset: int, count: int) -> bytes | memoryview:
        try:
            if count < THREAD_IO:
                return os.pread(self.fd, count, offset)
            buf = bytearray(count)
            n = os.preadv(self.fd, [buf], offset, os.RWF_NOWAIT)
        except BlockingIOError:
            raise trio.WouldBlock from None        # not all cached: read it in a thread
        except OSError as exc:
            if exc.errno == errno.EOPNOTSUPP:
                raise trio.WouldBlock from None
            raise os_error(exc) from None
        if n < count:
            raise trio.WouldBlock                  # partly cached, or the end: a full read
        return memoryview(buf)

    async def read(self, offset: int, count: int) -> bytes:
        return await self.in_thread(os.pread, self.fd, count, offset)

    def write_nowait(self, offset: int, data: bytes) -> int:
        if len(data) >= THREAD_IO:
            raise trio.WouldBlock
        try:
            return os.pwrite(self.fd, data, offset)
        except OSError as exc:
            raise os_error(exc) from None

    async def write(self, offset: int, data: bytes) -> int:
        return await self.in_thread(os.pwrite, self.fd, data, offset)

    async def in_thread(self, call, *args):
        self.in_threads += 1
        try:
            return await trio.to_thread.run_sync(call, *args)
        except OSError as exc:
            raise os_error(exc) from None
        finally:
            self.in_threads -= 1
            if self.closing and not self.in_threads:
                self.close()

    def clunk(self) -> None:
        """Close the descriptor, or, while a thread still writes to it, once it is done
        (closing it under the thread could let a new file take its number)."""
        self.closing = True
        if not self.in_threads:
            self.close()

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


class HostNode(Node):
    """A file or directory of the exported folder, by its real path.

    It keeps the attributes it was last seen with (`seen`): walk, open and the
    permission check use them, so one request makes one lstat, not five; Tstat and
    anything that changes the file look again.  Children are made with type(self),
    so a subclass (one with its own permission policy, say) governs the subtree.
    """

    def __init__(self, export: "ExportFS", path: str, name: str, parent: Node | None,
                 seen: os.stat_result | None = None) -> None:
        self.export = export
        self.path = path
        self.name = name
        self.parent = parent
        self.seen = seen if seen is not None else self.lstat()

    def lstat(self) -> os.stat_result:
        try:
            self.seen = os.lstat(self.path)
        except OSError as exc:
            raise os_error(exc) from None
        return self.seen

    @property
    def qid(self) -> Qid:
        return _qid(self.seen)

    @property
    def is_dir(self) -> bool:
        return st_mod.S_ISDIR(self.seen.st_mode)

    def permits(self, session: Session, want: int) -> bool:
        s = self.seen
        user: LocalUser | None = session.data.get("local_user")
        if user is not None:                     # a root server acts for each user
            if user.uid == 0:
                return True
            if s.st_uid == user.uid:
                bits = s.st_mode >> 6
            elif s.st_gid in user.gids:
                bits = s.st_mode >> 3
            else:
                bits = s.st_mode
        elif _user(s.st_uid) == session.uname:
            bits = s.st_mode >> 6
        elif _group(s.st_gid) == session.uname:
            bits = s.st_mode >> 3
        else:
            bits = s.st_mode
        return (bits & want) == want

    def stat(self) -> Stat:
        s = self.lstat()
        mode = st_mod.S_IMODE(s.st_mode) | (DMDIR if st_mod.S_ISDIR(s.st_mode) else 0)
        length = 0 if st_mod.S_ISDIR(s.st_mode) else s.st_size
        owner = _user(s.st_uid)
        return Stat(0, 0, _qid(s), mode, int(s.st_atime) & 0xFFFFFFFF,
                    int(s.st_mtime) & 0xFFFFFFFF, length, self.name, owner, _group(s.st_gid),
                    owner)

    def walk(self, name: str, session: Session) -> Node:
        """Child `name`; a symlink must resolve inside the export."""
        path = os.path.join(self.path, name)
        try:
            s = os.lstat(path)
            if st_mod.S_ISLNK(s.st_mode):
                path = os.path.realpath(path)
                if not self.export.contains(path):
                    raise NinePError(ELEAVES)
                s = os.lstat(path)
        except OSError as exc:
            raise os_error(exc) from None
        return type(self)(self.export, path, name, self, s)

    def children(self, session: Session) -> list[Node]:
        try:
            names = sorted(os.listdir(self.path))
        except OSError as exc:
            raise os_error(exc) from None
        out: list[Node] = []
        for name in names:
            try:
                out.append(self.walk(name, session))
            except NinePError:
                continue
        return out

    def open(self, mode: int, session: Session) -> Handle:
        access = mode & 3
        flags = {OWRITE: os.O_WRONLY, ORDWR: os.O_RDWR}.get(access, os.O_RDONLY)
        if access == OEXEC:
            flags = os.O_RDONLY
        if mode & OTRUNC:
            flags |= os.O_TRUNC
        try:
            fd = os.open(self.path, flags | os.O_NOFOLLOW | os.O_CLOEXEC)
            if mode & OTRUNC:
                self.seen = os.fstat(fd)
            elif access != OWRITE and self.seen.st_size > THREAD_IO:
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_SEQUENTIAL)   # a larger read-ahead
            return FileHandle(fd)
        except OSError as exc:
            raise os_error(exc) from None

    def create(self, name: str, perm: int, mode: int, session: Session) -> tuple[Node, Handle | None]:
        path = os.path.join(self.path, name)
        dir_mode = st_mod.S_IMODE(self.lstat().st_mode)
        user: LocalUser | None = session.data.get("local_user")
        try:
            if perm & DMDIR:
                os.mkdir(path, perm & (~0o777 | dir_mode) & 0o777)
                if user is not None:
                    os.lchown(path, user.uid, user.gid)
                return type(self)(self.export, path, name, self), None
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_RDWR | os.O_NOFOLLOW | os.O_CLOEXEC,
                         perm & (~0o666 | (dir_mode & 0o666)) & 0o777)
            if user is not None:
                os.fchown(fd, user.uid, user.gid)
        except OSError as exc:
            raise os_error(exc) from None
        return type(self)(self.export, path, name, self), FileHandle(fd)

    def remove(self, session: Session) -> None:
        try:
            if st_mod.S_ISDIR(self.lstat().st_mode):
                os.rmdir(self.path)
            else:
                os.unlink(self.path)
        except OSError as exc:
            raise os_error(exc) from None

    def wstat(self, stat: Stat, session: Session) -> None:
        """All or nothing (stat(5)): every change is checked before any is made.
        Set-user-id, set-group-id and sticky bits are never stored."""
        target = None
        if stat.name and stat.name != self.name:
            target = os.path.join(os.path.dirname(self.path), stat.name)
            if os.path.lexists(target):
                raise NinePError(EEXIST)
        if stat.mode != 0xFFFFFFFF and stat.mode & 0o7000:
            raise NinePError(f"{EBADWSTAT}: set-user-id, set-group-id and sticky bits "
                             "are not stored here")
        try:
            if stat.length != 0xFFFFFFFFFFFFFFFF:
                os.truncate(self.path, stat.length)
            if stat.mode != 0xFFFFFFFF:
                os.chmod(self.path, stat.mode & 0o777)
            if stat.mtime != 0xFFFFFFFF:
                os.utime(self.path, (self.lstat().st_atime, stat.mtime))
            if target is not None:
                os.rename(self.path, target)
                self.path, self.name = target, stat.name
            self.lstat()
        except OSError as exc:
            raise os_error(exc) from None


@dataclass(frozen=True)
class LocalUser:
    """Whom an attach acts for when the server runs as root: the files it may
    reach are those this uid and these groups may, and what it makes is theirs."""

    name: str
    uid: int
    gid: int
    gids: frozenset[int]

    @classmethod
    def named(cls, name: str) -> "LocalUser":
        try:
            entry = pwd.getpwnam(name)
        except KeyError:
            raise NinePError(f"{EPERM}: no local user {name!r}") from None
        return cls(name, entry.pw_uid, entry.pw_gid,
                   frozenset(os.getgrouplist(name, entry.pw_gid)))


class ExportFS:
    """The FileServer for one exported folder; every attach sees its root.

    Who attaches: on a unix socket the peer's uid says (root may attach as any
    user); elsewhere the attach name is believed, which the command allows on
    TCP only when asked (--insecure).  A server run as root acts for each attach
    with that user's rights; any other server checks the attach name against the
    files' mode bits, and the kernel holds it to its own user's rights."""

    def __init__(self, root: str) -> None:
        self.root = os.path.realpath(root)
        if not os.path.isdir(self.root):
            raise NotADirectoryError(f"{root} is not a directory")
        self.as_root = os.geteuid() == 0

    def contains(self, path: str) -> bool:
        return path == self.root or path.startswith(self.root.rstrip("/") + "/")

    def attach(self, session: Session) -> Node:
        peer = session.peer
        if peer.get("transport") == "unix" and peer.get("uid") != 0:
            name = _user(peer["uid"])
            if session.uname != name:
                raise NinePError(f"{EPERM}: attach name {session.uname!r} is not your user "
                                 f"{name!r}")
        if self.as_root:
            session.data["local_user"] = LocalUser.named(session.uname)
        return HostNode(self, self.root, "/", None)
