"""Files in the grid's /data from the command line: `mkdir`, `put`, `get`, `rm`.

Paths on the grid side are paths in its tree, as `cat` and `ls` take them
(`data/alice/in.csv`).  Folders go whole, both ways.  On a terminal, transfers of
more than a MiB show a progress line on stderr.
"""

from __future__ import annotations

import argparse
import functools
import os
import sys
import time
from typing import Awaitable, Callable

from ..ninep import NinePError
from ..ninep import errors as E
from ..ninep.client import Client
from ..ninep.messages import DMDIR, OREAD
from .common import UserError, os_error
from .session import client_command, explain

CHUNK = 1 << 20               # bytes read or written per call (the client splits by iounit)
SHOW_PROGRESS = 1 << 20       # a transfer this large shows progress on a terminal


class Progress:
    """`put: 12.0 of 96.0 MiB, 41.2 MiB/s` redrawn on stderr, at most 5 times a second."""

    def __init__(self, verb: str, total: int) -> None:
        self.verb, self.total, self.done = verb, total, 0
        self.show = total >= SHOW_PROGRESS and sys.stderr.isatty()
        self.start = self.drawn = time.monotonic()

    def add(self, n: int) -> None:
        self.done += n
        now = time.monotonic()
        if self.show and (now - self.drawn >= 0.2 or self.done >= self.total):
            self.drawn = now
            rate = self.done / max(now - self.start, 1e-6) / 2**20
            sys.stderr.write(f"\r{self.verb}: {self.done / 2**20:.1f} of "
                             f"{self.total / 2**20:.1f} MiB, {rate:.1f} MiB/s  ")
            sys.stderr.flush()

    def end(self) -> None:
        if self.show:
            sys.stderr.write("\n")


async def is_dir(client: Client, path: str) -> bool | None:
    """True for a folder, False for a file, None when nothing is there."""
    try:
        return bool((await client.stat(path)).mode & DMDIR)
    except NinePError as exc:
        if exc.ename.startswith(E.ENOTFOUND):
            return None
        raise


async def makedirs(client: Client, path: str) -> None:
    """`mkdir -p`: each missing folder of `path` is made; one made meanwhile is fine."""
    parts = [p for p in path.split("/") if p]
    for i in range(1, len(parts) + 1):
        here = "/".join(parts[:i])
        kind = await is_dir(client, here)
        if kind:
            continue
        if kind is False:
            raise UserError(f"{here}: not a folder")
        try:
            await (await client.create(here, perm=DMDIR | 0o755, mode=OREAD)).close()
        except NinePError as exc:
            if not (exc.ename.startswith(E.EEXIST) and await is_dir(client, here)):
                raise await explain(client, here, exc) from None


async def cmd_mkdir(client: Client, args: argparse.Namespace) -> int:
    for path in args.paths:
        if args.parents:
            await makedirs(client, path)
            continue
        try:
            await (await client.create(path, perm=DMDIR | 0o755, mode=OREAD)).close()
        except NinePError as exc:
            raise await explain(client, path, exc) from None
    return 0


def local_size(path: str) -> int:
    if os.path.isdir(path):
        return sum(os.path.getsize(os.path.join(d, f))
                   for d, _, files in os.walk(path) for f in files)
    return os.path.getsize(path)


async def put_file(client: Client, local: str, remote: str, progress: Progress) -> None:
    try:
        f = await client.open_or_create(remote)
        async with f:
            with open(local, "rb") as src:
                offset = 0
                while chunk := src.read(CHUNK):
                    offset += await f.pwrite(offset, chunk)
                    progress.add(len(chunk))
    except NinePError as exc:
        raise await explain(client, remote, exc) from None


async def put_tree(client: Client, local: str, remote: str, progress: Progress) -> None:
    if not os.path.isdir(local):
        await put_file(client, local, remote, progress)
        return
    await makedirs(client, remote)
    for name in sorted(os.listdir(local)):
        await put_tree(client, os.path.join(local, name), f"{remote}/{name}", progress)


def local_errors(fn: Callable[[Client, argparse.Namespace], Awaitable[int]]):
    """An OSError in a data command is about a local file: said with its path (a
    lost connection reaches the command as ConnectionLost, never as OSError)."""
    @functools.wraps(fn)
    async def run(client: Client, args: argparse.Namespace) -> int:
        try:
            return await fn(client, args)
        except OSError as exc:
            raise UserError(os_error(exc)) from None
    return run


async def cmd_put(client: Client, args: argparse.Namespace) -> int:
    """`put LOCAL... DEST`: into the folder DEST (each under its own name), or, for
    one file and a DEST that is not a folder, as the file DEST."""
    for local in args.local:
        if not os.path.exists(local):
            raise UserError(f"{local}: no such file or folder here", 2)
    dest = args.dest.rstrip("/")
    into = len(args.local) > 1 or args.dest.endswith("/") or \
        await is_dir(client, dest) or os.path.isdir(args.local[0])
    if into:
        await makedirs(client, dest)
    progress = Progress("put", sum(local_size(p) for p in args.local))
    for local in args.local:
        name = os.path.basename(os.path.normpath(local))
        await put_tree(client, local, f"{dest}/{name}" if into else dest, progress)
    progress.end()
    return 0


async def remote_size(client: Client, path: str) -> int:
    s = await client.stat(path)
    if not s.mode & DMDIR:
        return s.length
    return sum([await remote_size(client, f"{path}/{e.name}") for e in await client.ls(path)])


async def get_tree(client: Client, remote: str, local: str, progress: Progress) -> None:
    try:
        if await is_dir(client, remote):
            os.makedirs(local, exist_ok=True)
            for entry in await client.ls(remote):
                await get_tree(client, f"{remote}/{entry.name}",
                               os.path.join(local, entry.name), progress)
            return
        f = await client.open(remote, OREAD)
    except NinePError as exc:
        raise await explain(client, remote, exc) from None
    async with f:
        with open(local, "wb") as out:
            offset = 0
            while chunk := await f.pread(offset, CHUNK):
                out.write(chunk)
                offset += len(chunk)
                progress.add(len(chunk))


async def cmd_get(client: Client, args: argparse.Namespace) -> int:
    """`get SRC... LOCALDIR`: each file or folder (whole) into LOCALDIR."""
    if os.path.exists(args.localdir.rstrip("/")) and not os.path.isdir(args.localdir):
        raise UserError(f"{args.localdir}: not a folder", 2)
    total = 0
    for src in args.src:
        try:
            total += await remote_size(client, src)
        except NinePError as exc:
            raise await explain(client, src, exc) from None
    os.makedirs(args.localdir, exist_ok=True)
    progress = Progress("get", total)
    for src in args.src:
        name = src.rstrip("/").rpartition("/")[2]
        await get_tree(client, src.rstrip("/"), os.path.join(args.localdir, name), progress)
    progress.end()
    return 0


async def remove_tree(client: Client, path: str, recursive: bool) -> None:
    try:
        if recursive and await is_dir(client, path):
            for entry in await client.ls(path):
                await remove_tree(client, f"{path}/{entry.name}", True)
        await client.remove(path)
    except NinePError as exc:
        if exc.ename.startswith(E.ENOTEMPTY):
            raise UserError(f"{path}: folder not empty (rm -r removes it whole)") from None
        raise await explain(client, path, exc) from None


async def cmd_rm(client: Client, args: argparse.Namespace) -> int:
    """Files, and with -r folders whole; never a folder of the tree's top level
    (`rm -r data` would empty every user's folder before failing on /data itself)."""
    for path in args.paths:
        if len([p for p in path.split("/") if p not in ("", ".")]) < 2:
            raise UserError(f"{path or '/'}: a folder of the grid itself, not removed "
                            "(name what is in it)", 2)
    for path in args.paths:
        await remove_tree(client, path.rstrip("/"), args.recursive)
    return 0


for _fn in (cmd_mkdir, local_errors(cmd_put), local_errors(cmd_get), cmd_rm):
    client_command(_fn)
