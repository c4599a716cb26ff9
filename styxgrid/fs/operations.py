"""The pyfuse3 Operations that put a 9P2000 tree under a mount point.

Inodes are paths: `paths[inode]` and `inodes[path]`, kept while the kernel holds
a lookup count (`lookups`), dropped on `forget`.  One open FUSE file is one open
9P fid (`handles[fh]`, an `OpenFile`: openfile.py moves its bytes), so a read
after a write on the same descriptor reaches the same server file (the clone
idiom).  Every open uses direct I/O: the files
are synthetic, their stat length is 0, and each read must reach the server.

Known limits: rename works within one folder only (9P2000 renames by wstat;
`mv` across folders falls back to copy and delete on EXDEV); file owners are
shown as the mounting user unless the 9P user name exists locally.
"""

from __future__ import annotations

import errno
import itertools
import os
import pwd
import stat as st
import time
from typing import Sequence

import pyfuse3
import trio

from ..ninep.client import Client, ConnectionLost
from ..ninep.errors import EPERM, NinePError
from ..ninep.messages import DMDIR, OREAD, ORDWR, OTRUNC, OWRITE, Stat
from .errors import errno_for
from .openfile import OpenFile
from .config import MountConfig
from .remote import Remote

ERRSTR = "errstr"
ERRSTR_INODE = pyfuse3.ROOT_INODE + 1


def fuse_error(exc: Exception) -> pyfuse3.FUSEError:
    if isinstance(exc, NinePError):
        return pyfuse3.FUSEError(errno_for(exc.ename))
    return pyfuse3.FUSEError(errno.EIO)


class NinePOperations(pyfuse3.Operations):
    def __init__(self, remote: Remote, nursery: trio.Nursery, config: MountConfig, *,
                 per_user: bool = False) -> None:
        super().__init__()
        self.remote = remote
        self.per_user = per_user                  # a root mount: each uid attaches as itself
        self.remotes: dict[int, Remote] = {os.getuid(): remote}
        self.dialling: dict[int, trio.Event] = {}
        self.config = config
        self.nursery = nursery
        self.paths: dict[int, str] = {pyfuse3.ROOT_INODE: ""}
        self.inodes: dict[str, int] = {"": pyfuse3.ROOT_INODE}
        self.lookups: dict[int, int] = {}
        self.sizes: dict[int, int] = {}           # stat length last seen (getattr/lookup)
        self.next_inode = itertools.count(ERRSTR_INODE + 1)
        self.handles: dict[int, OpenFile] = {}
        self.dirs: dict[int, tuple[str, list[Stat]]] = {}
        self.next_fh = itertools.count(1)
        self.errors: dict[int, str] = {}          # uid -> last error message (errstr)
        self.owner = os.getuid(), os.getgid()

    # ------------------------------------------------------------ helpers

    def failed(self, uid: int, exc: Exception) -> pyfuse3.FUSEError:
        """Remember the message for /errstr and give the errno to raise."""
        text = exc.ename if isinstance(exc, NinePError) else f"i/o error: {exc}"
        self.errors[uid] = text
        return fuse_error(exc)

    def path_of(self, inode: int) -> str:
        path = self.paths.get(inode)
        if path is None:
            raise pyfuse3.FUSEError(errno.ESTALE)
        return path

    @staticmethod
    def join(parent: str, name: bytes) -> str:
        text = os.fsdecode(name)
        return f"{parent}/{text}" if parent else text

    def remember(self, path: str) -> int:
        """The inode for `path`, counted as one more kernel lookup."""
        inode = self.inodes.get(path)
        if inode is None:
            inode = next(self.next_inode)
            self.inodes[path] = inode
            self.paths[inode] = path
        self.lookups[inode] = self.lookups.get(inode, 0) + 1
        return inode

    @staticmethod
    def user_name(uid: int) -> str:
        try:
            return pwd.getpwuid(uid).pw_name
        except KeyError:
            return str(uid)

    def user_id(self, name: str) -> int:
        try:
            return pwd.getpwnam(name).pw_uid
        except KeyError:
            return self.owner[0]

    def attributes(self, inode: int, s: Stat) -> pyfuse3.EntryAttributes:
        a = pyfuse3.EntryAttributes()
        is_dir = bool(s.mode & DMDIR)
        a.st_ino = inode
        a.st_mode = (st.S_IFDIR if is_dir else st.S_IFREG) | (s.mode & 0o777)
        a.st_nlink = 2 if is_dir else 1
        a.st_uid = self.user_id(s.uid)
        a.st_gid = self.owner[1]
        a.st_size = self.sizes[inode] = s.length     # open reads ahead when it is not 0
        a.st_blksize = 1 << 20              # cp and friends then move 1 MiB a call
        a.st_blocks = (s.length + 511) // 512
        a.st_atime_ns = s.atime * 10**9
        a.st_mtime_ns = a.st_ctime_ns = s.mtime * 10**9
        a.entry_timeout = self.config.dir_timeout
        a.attr_timeout = self.config.dir_timeout if is_dir else 0
        return a

    def errstr_attributes(self) -> pyfuse3.EntryAttributes:
        a = pyfuse3.EntryAttributes()
        a.st_ino = ERRSTR_INODE
        a.st_mode = st.S_IFREG | 0o444
        a.st_nlink = 1
        a.st_uid, a.st_gid = self.owner
        a.st_mtime_ns = a.st_ctime_ns = a.st_atime_ns = time.time_ns()
        a.entry_timeout = self.config.dir_timeout
        return a

    async def remote_for(self, uid: int) -> Remote:
        """The connection of the user `uid`: on a root mount each local user has
        his own, attached under his name (made at his first request; the server
        gives it that user's rights, not root's)."""
        if not self.per_user:
            return self.remote
        while (remote := self.remotes.get(uid)) is None:
            dialling = self.dialling.get(uid)
            if dialling is not None:
                await dialling.wait()
                continue
            self.dialling[uid] = dialling = trio.Event()
            try:
                remote = Remote(self.remote.addr, None, dial_timeout=self.config.dial_timeout,
                                uname=self.user_name(uid))
                try:
                    await self.nursery.start(remote.run)
                except (OSError, ConnectionLost, NinePError, trio.BrokenResourceError,
                        trio.TooSlowError) as exc:
                    raise self.failed(uid, exc) from None
                self.remotes[uid] = remote
            finally:
                del self.dialling[uid]
                dialling.set()
        return remote

    async def client(self, uid: int) -> Client:
        return await (await self.remote_for(uid)).get()

    async def stat_path(self, path: str, uid: int) -> Stat:
        try:
            return await (await self.client(uid)).stat(path)
        except (NinePError, ConnectionLost) as exc:
            raise self.failed(uid, exc) from None

    # ------------------------------------------------------------ names

    async def lookup(self, parent_inode: int, name: bytes,
                     ctx: pyfuse3.RequestContext) -> pyfuse3.EntryAttributes:
        if parent_inode == pyfuse3.ROOT_INODE and name == ERRSTR.encode():
            return self.errstr_attributes()
        if name == b"..":
            path = self.path_of(parent_inode).rpartition("/")[0]
        elif name == b".":
            path = self.path_of(parent_inode)
        else:
            path = self.join(self.path_of(parent_inode), name)
        try:
            s = await (await self.client(ctx.uid)).stat(path)
        except (NinePError, ConnectionLost) as exc:
            # not remembered for /errstr: the kernel and the shell look names up all the
            # time (after a failed write, before ln, for completion), and the message that
            # explains the user's failed call would be lost under "file does not exist"
            raise fuse_error(exc) from None
        return self.attributes(self.remember(path), s)

    def unsupported(self, uid: int, what: str) -> pyfuse3.FUSEError:
        self.errors[uid] = f"{what} are not supported by a styxgrid mount (9P2000 has none)"
        return pyfuse3.FUSEError(errno.ENOSYS)

    async def symlink(self, parent_inode: int, name: bytes, target: bytes,
                      ctx: pyfuse3.RequestContext) -> pyfuse3.EntryAttributes:
        raise self.unsupported(ctx.uid, "symbolic links")

    async def link(self, inode: int, new_parent_inode: int, new_name: bytes,
                   ctx: pyfuse3.RequestContext) -> pyfuse3.EntryAttributes:
        raise self.unsupported(ctx.uid, "hard links")

    async def mknod(self, parent_inode: int, name: bytes, mode: int, rdev: int,
                    ctx: pyfuse3.RequestContext) -> pyfuse3.EntryAttributes:
        raise self.unsupported(ctx.uid, "device files, fifos and sockets")

    async def forget(self, inode_list: Sequence[tuple[int, int]]) -> None:
        for inode, count in inode_list:
            left = self.lookups.get(inode, 0) - count
            if left > 0:
                self.lookups[inode] = left
                continue
            self.lookups.pop(inode, None)
            self.sizes.pop(inode, None)
            path = self.paths.pop(inode, None)
            if path is not None and self.inodes.get(path) == inode:
                del self.inodes[path]

    async def getattr(self, inode: int, ctx: pyfuse3.RequestContext) -> pyfuse3.EntryAttributes:
        if inode == ERRSTR_INODE:
            return self.errstr_attributes()
        s = await self.stat_path(self.path_of(inode), ctx.uid)
        return self.attributes(inode, s)

    async def setattr(self, inode: int, attr: pyfuse3.EntryAttributes,
                      fields: pyfuse3.SetattrFields, fh: int | None,
                      ctx: pyfuse3.RequestContext) -> pyfuse3.EntryAttributes:
        """Truncate, chmod and mtime become one Twstat, which the server takes whole
        or refuses (set-id bits included).  What 9P cannot change is refused
        here, never dropped: a new owner or group, or atime alone (`touch`, which
        sets both times, sets the mtime)."""
        if inode == ERRSTR_INODE:
            return self.errstr_attributes()
        if fields.update_uid or fields.update_gid:
            raise self.failed(ctx.uid, NinePError(f"{EPERM}: files here keep their owner "
                                                  "and group"))
        if fields.update_atime and not fields.update_mtime:
            raise self.failed(ctx.uid, NinePError(f"{EPERM}: atime cannot be changed"))
        changes: dict[str, int] = {}
        if fields.update_size:
            changes["length"] = attr.st_size
        if fields.update_mode:
            changes["mode"] = attr.st_mode & 0o7777
        if fields.update_mtime:
            changes["mtime"] = attr.st_mtime_ns // 10**9
        path = self.path_of(inode)
        if changes:
            try:
                if "mode" in changes:
                    current = await (await self.client(ctx.uid)).stat(path)
                    changes["mode"] |= current.mode & DMDIR
                await (await self.client(ctx.uid)).wstat(path, Stat.dont_touch(**changes))
            except (NinePError, ConnectionLost) as exc:
                raise self.failed(ctx.uid, exc) from None
        return await self.getattr(inode, ctx)

    async def statfs(self, ctx: pyfuse3.RequestContext) -> pyfuse3.StatvfsData:
        s = pyfuse3.StatvfsData()
        s.f_bsize = s.f_frsize = 128 * 1024
        s.f_blocks = s.f_bfree = s.f_bavail = 1 << 30
        s.f_files = s.f_ffree = s.f_favail = 1 << 30
        s.f_namemax = 255
        return s

    # ------------------------------------------------------------ folders

    async def opendir(self, inode: int, ctx: pyfuse3.RequestContext) -> int:
        path = self.path_of(inode)
        try:
            entries = await (await self.client(ctx.uid)).ls(path)
        except (NinePError, ConnectionLost) as exc:
            raise self.failed(ctx.uid, exc) from None
        fh = next(self.next_fh)
        self.dirs[fh] = (path, entries)
        return fh

    async def readdir(self, fh: int, start_id: int, token: pyfuse3.ReaddirToken) -> None:
        """Entries 0 and 1 are `.` and `..` (no lookup counted for them, as the
        kernel counts none); then the server's entries; /errstr last at the root."""
        path, entries = self.dirs[fh]
        extra = 1 if path == "" else 0               # /errstr, at the mount's root
        for i in range(start_id, len(entries) + extra + 2):
            if i < 2:
                here = path if i == 0 else path.rpartition("/")[0]
                attrs = self.folder_attributes(self.inodes.get(here, pyfuse3.ROOT_INODE))
                if not pyfuse3.readdir_reply(token, b"." * (i + 1), attrs, i + 1):
                    return
                continue
            n = i - 2
            if n == len(entries):
                if not pyfuse3.readdir_reply(token, ERRSTR.encode(),
                                             self.errstr_attributes(), i + 1):
                    return
                continue
            s = entries[n]
            child = f"{path}/{s.name}" if path else s.name
            inode = self.remember(child)              # an entry the kernel takes is a lookup
            if not pyfuse3.readdir_reply(token, os.fsencode(s.name),
                                         self.attributes(inode, s), i + 1):
                await self.forget([(inode, 1)])       # not taken: buffer full
                return

    def folder_attributes(self, inode: int) -> pyfuse3.EntryAttributes:
        """Enough of a folder's attributes for its `.` and `..` entries."""
        a = pyfuse3.EntryAttributes()
        a.st_ino = inode
        a.st_mode = st.S_IFDIR | 0o555
        a.st_nlink = 2
        a.st_uid, a.st_gid = self.owner
        return a

    async def releasedir(self, fh: int) -> None:
        self.dirs.pop(fh, None)

    async def mkdir(self, parent_inode: int, name: bytes, mode: int,
                    ctx: pyfuse3.RequestContext) -> pyfuse3.EntryAttributes:
        path = self.join(self.path_of(parent_inode), name)
        try:
            client = await self.client(ctx.uid)
            f = await client.create(path, perm=DMDIR | (mode & 0o777), mode=OREAD)
            s = await f.stat()
            await f.close()
        except (NinePError, ConnectionLost) as exc:
            raise self.failed(ctx.uid, exc) from None
        return self.attributes(self.remember(path), s)

    async def unlink(self, parent_inode: int, name: bytes, ctx: pyfuse3.RequestContext) -> None:
        path = self.join(self.path_of(parent_inode), name)
        try:
            await (await self.client(ctx.uid)).remove(path)
        except (NinePError, ConnectionLost) as exc:
            raise self.failed(ctx.uid, exc) from None

    rmdir = unlink

    async def rename(self, parent_inode_old: int, name_old: bytes, parent_inode_new: int,
                     name_new: bytes, flags: int, ctx: pyfuse3.RequestContext) -> None:
        """Within one folder, by Twstat of the name; a file already there is
        replaced (removed first), as rename(2) does."""
        if parent_inode_old != parent_inode_new:
            raise pyfuse3.FUSEError(errno.EXDEV)
        if flags:
            raise pyfuse3.FUSEError(errno.EINVAL)
        parent = self.path_of(parent_inode_old)
        old, new = self.join(parent, name_old), self.join(parent, name_new)
        try:
            client = await self.client(ctx.uid)
            try:
                await client.remove(new)
            except NinePError as exc:
                if errno_for(exc.ename) != errno.ENOENT:
                    raise
            await client.wstat(old, Stat.dont_touch(name=os.fsdecode(name_new)))
        except (NinePError, ConnectionLost) as exc:
            raise self.failed(ctx.uid, exc) from None
        self.moved(old, new)

    def moved(self, old: str, new: str) -> None:
        """Re-key the inode table after a rename: the file and all below it."""
        for path in [p for p in self.inodes if p == old or p.startswith(old + "/")]:
            inode = self.inodes.pop(path)
            moved_to = new + path[len(old):]
            self.inodes[moved_to] = inode
            self.paths[inode] = moved_to

    # ------------------------------------------------------------ files

    @staticmethod
    def nine_mode(flags: int) -> int:
        access = flags & os.O_ACCMODE
        mode = {os.O_WRONLY: OWRITE, os.O_RDWR: ORDWR}.get(access, OREAD)
        return mode | (OTRUNC if flags & os.O_TRUNC else 0)

    def add_handle(self, handle: OpenFile) -> pyfuse3.FileInfo:
        fh = next(self.next_fh)
        self.handles[fh] = handle
        return pyfuse3.FileInfo(fh=fh, direct_io=True, keep_cache=False)

    async def open(self, inode: int, flags: int, ctx: pyfuse3.RequestContext) -> pyfuse3.FileInfo:
        if inode == ERRSTR_INODE:
            text = (self.errors.get(ctx.uid, "") + "\n").encode()
            return self.add_handle(OpenFile(None, ERRSTR, ctx.pid, ctx.uid, 0, errstr=text))
        path = self.path_of(inode)
        try:
            client = await self.client(ctx.uid)
            f = await client.open(path, self.nine_mode(flags))
        except (NinePError, ConnectionLost) as exc:
            raise self.failed(ctx.uid, exc) from None
        size = self.sizes.get(inode, 0) if flags & os.O_ACCMODE == os.O_RDONLY else 0
        generation = self.remotes[ctx.uid].generation if self.per_user else self.remote.generation
        return self.add_handle(OpenFile(f, path, ctx.pid, ctx.uid, generation, size))

    async def create(self, parent_inode: int, name: bytes, mode: int, flags: int,
                     ctx: pyfuse3.RequestContext) -> tuple[pyfuse3.FileInfo,
                                                           pyfuse3.EntryAttributes]:
        path = self.join(self.path_of(parent_inode), name)
        try:
            client = await self.client(ctx.uid)
            f = await client.create(path, perm=mode & 0o777, mode=self.nine_mode(flags) & ~OTRUNC)
            s = await f.stat()
        except (NinePError, ConnectionLost) as exc:
            raise self.failed(ctx.uid, exc) from None
        generation = self.remotes[ctx.uid].generation if self.per_user else self.remote.generation
        info = self.add_handle(OpenFile(f, path, ctx.pid, ctx.uid, generation))
        return info, self.attributes(self.remember(path), s)

    def live(self, fh: int) -> OpenFile:
        handle = self.handles.get(fh)
        if handle is None:
            raise pyfuse3.FUSEError(errno.EBADF)
        remote = self.remotes.get(handle.uid, self.remote) if self.per_user else self.remote
        if handle.file is not None and handle.generation != remote.generation:
            raise pyfuse3.FUSEError(errno.EIO)       # opened on a connection since lost
        return handle

    async def read(self, fh: int, off: int, size: int) -> bytes:
        handle = self.live(fh)
        if handle.file is None:
            return handle.errstr[off:off + size]
        try:
            await handle.drain()
            if handle.size:
                return await handle.read_ahead(off, size, self.nursery, self.config)
            return await handle.read_parked(off, size)
        except (NinePError, ConnectionLost) as exc:
            raise self.failed(handle.uid, exc) from None

    async def write(self, fh: int, off: int, buf: bytes) -> int:
        """Small writes and a descriptor's first wait for the answer; large
        sequential ones go behind (openfile.py)."""
        handle = self.live(fh)
        if handle.file is None:
            raise pyfuse3.FUSEError(errno.EACCES)
        handle.ahead.clear()
        try:
            handle.raise_write_error()                  # one that went behind, first
            if handle.goes_behind(off, len(buf), self.config):
                await handle.write_behind(off, buf, self.nursery, self.config)
                return len(buf)
            await handle.drain()
            n = await handle.file.pwrite(off, buf)
        except (NinePError, ConnectionLost) as exc:
            raise self.failed(handle.uid, exc) from None
        handle.next_write = off + n if n == len(buf) else -1
        return n

    async def flush(self, fh: int) -> None:
        handle = self.handles.get(fh)
        if handle is not None:
            try:
                await handle.drain()
            except NinePError as exc:
                raise self.failed(handle.uid, exc) from None

    async def fsync(self, fh: int, datasync: bool) -> None:
        await self.flush(fh)

    async def release(self, fh: int) -> None:
        handle = self.handles.pop(fh, None)
        if handle is not None:
            await handle.close()
