"""A task's checkpoint folder ($STYXGRID_CHECKPOINT) on its way to the
scheduler and back (HTCondor's self-checkpointing, with no relinking).

The folder goes up as one uncompressed tar, packed by a thread acting as the
task's user (what the task could not read, it cannot save), with regular files
and folders only; it comes back unpacked by that user too, regular files and
folders only, no name absolute or with '..', no set-id bits: a checkpoint
never writes outside the new folder, nor more than its task's user could.
The upload goes to jobs/J/tasks/T/checkpoint; the report `checkpoint J T SIZE`
makes it the task's (the scheduler replaces the kept one whole).
"""

from __future__ import annotations

import os
import stat
import tarfile

import trio

from ..exchange import MAX_CHECKPOINT
from ..ninep.client import Client
from ..ninep.messages import OREAD
from .credentials import acting_as
from .outputs import upload
from .sandbox import CHECKPOINT_FOLDER, TaskRun

SAVE_PAUSE = 1.0              # seconds from SIGUSR1 to the save of a periodic checkpoint


def folder(run: TaskRun) -> str:
    """The task's checkpoint folder: every sandbox has one, empty (sandbox.py)."""
    return os.path.join(run.sandbox, CHECKPOINT_FOLDER)


def _plain(info: tarfile.TarInfo) -> tarfile.TarInfo | None:
    """Regular files and folders only, with no set-id or sticky bits."""
    if info.type not in (tarfile.REGTYPE, tarfile.AREGTYPE, tarfile.DIRTYPE) \
            or info.issparse():
        return None
    name = info.name
    if name.startswith("/") or ".." in name.split("/"):
        return None
    info.mode &= 0o777
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info


class CheckpointError(OSError):
    """The folder cannot be saved as it is (too big, too deep, too many files)."""


MAX_DEPTH = 64                # folders within folders
MAX_ENTRIES = 100_000         # files and folders
_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_FILE = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC   # a FIFO never waits


def _info(name: str, st: os.stat_result, kind: bytes, size: int = 0) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.size = kind, size
    info.mode, info.mtime = st.st_mode & 0o777, int(st.st_mtime)
    return info


def pack(path: str, out: int, user: tuple[int, int] | None) -> int:
    """Write the folder as a tar to the open file `out` (as `user`); its size
    (0: the folder is empty, or gone, and nothing is written).  Walked by
    descriptor, one folder at a time, never through a link; what is not a
    regular file or a folder is left out (a name swapped for a FIFO meanwhile
    too); past MAX_CHECKPOINT bytes, MAX_DEPTH or MAX_ENTRIES it stops with
    CheckpointError, before writing more."""
    with acting_as(user):
        try:
            top = os.open(path, _DIR)
        except OSError:
            return 0
        folders = [(top, ".", 0)]
        entries = 0
        try:
            with os.scandir(top) as probe:
                if next(iter(probe), None) is None:
                    return 0
            with os.fdopen(os.dup(out), "wb") as f, \
                    tarfile.open(fileobj=f, mode="w", format=tarfile.PAX_FORMAT) as tar:
                tar.addfile(_info(".", os.fstat(top), tarfile.DIRTYPE))
                while folders:
                    fd, name, depth = folders.pop()
                    try:
                        with os.scandir(fd) as found:
                            listed = list(found)
                        for entry in listed:
                            entries += 1
                            if entries > MAX_ENTRIES:
                                raise CheckpointError(f"more than {MAX_ENTRIES} files")
                            folders += _add(tar, fd, entry, f"{name}/{entry.name}", depth)
                    finally:
                        os.close(fd)
        finally:
            for fd, _, _ in folders:
                os.close(fd)
    return os.fstat(out).st_size


def _add(tar: tarfile.TarFile, folder: int, entry: os.DirEntry, name: str,
         depth: int) -> list[tuple[int, str, int]]:
    """Add one entry of an open folder; a subfolder comes back, open, to walk."""
    st = entry.stat(follow_symlinks=False)
    if stat.S_ISDIR(st.st_mode):
        if depth + 1 > MAX_DEPTH:
            raise CheckpointError(f"folders deeper than {MAX_DEPTH}")
        try:
            sub = os.open(entry.name, _DIR, dir_fd=folder)
        except OSError:
            return []                           # swapped meanwhile: left out
        tar.addfile(_info(name, st, tarfile.DIRTYPE))
        return [(sub, name, depth + 1)]
    if not stat.S_ISREG(st.st_mode):
        return []
    try:
        fd = os.open(entry.name, _FILE, dir_fd=folder)
    except OSError:
        return []
    with os.fdopen(fd, "rb") as f:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            return []
        if tar.offset + st.st_size > MAX_CHECKPOINT:
            raise CheckpointError(f"checkpoint over {MAX_CHECKPOINT >> 20} MiB")
        tar.addfile(_info(name, st, tarfile.REGTYPE, st.st_size), f)
    return []


def unpack(source: int, path: str, user: tuple[int, int] | None) -> None:
    """Unpack the tar in the open file `source` into the folder (as `user`)."""
    with acting_as(user):
        with os.fdopen(os.dup(source), "rb") as f, tarfile.open(fileobj=f, mode="r:") as tar:
            members = [m for m in tar if _plain(m) is not None]
            for member in members:
                if hasattr(tarfile, "data_filter"):      # Python 3.11.4 on: checked twice
                    tar.extract(member, path, set_attrs=member.isfile(), filter="data")
                else:
                    tar.extract(member, path, set_attrs=member.isfile())


async def save(client: Client, run: TaskRun, scratch: str, piece: int) -> int:
    """Pack and upload the task's folder; the size to report (0: nothing to save)."""
    out = os.open(scratch, os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    try:
        size = await trio.to_thread.run_sync(pack, folder(run), out, run.user)
        if size == 0:
            return 0
        if size > MAX_CHECKPOINT:
            raise OSError(f"checkpoint of {size} bytes is over {MAX_CHECKPOINT >> 20} MiB")
        await upload(client, out, f"jobs/{run.job}/tasks/{run.index}/checkpoint", piece)
        return size
    finally:
        os.close(out)
        os.unlink(scratch)


async def restore(client: Client, run: TaskRun, scratch: str) -> None:
    """Fetch the task's kept checkpoint and unpack it into its folder."""
    local = os.open(scratch, os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    try:
        remote = await client.open(f"jobs/{run.job}/tasks/{run.index}/checkpoint", OREAD)
        async with remote:
            offset = 0
            while chunk := await remote.pread(offset, remote.iounit or 8192):
                os.pwrite(local, chunk, offset)
                offset += len(chunk)
                if offset > MAX_CHECKPOINT:
                    raise OSError("checkpoint over its limit")
        await trio.to_thread.run_sync(unpack, local, folder(run), run.user)
    finally:
        os.close(local)
        os.unlink(scratch)
