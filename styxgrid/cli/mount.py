"""`mount` and `umount`: the grid (or any 9P server) as a folder, through FUSE."""

from __future__ import annotations

import argparse
import functools
import os
import subprocess
import sys

import trio

from ..errgroups import unwrapped
from ..ninep import NinePError
from ..ninep.client import ConnectionLost
from ..ninep.transport import parse_address
from ..up import clear_dead_mount
from .common import command, fuse_installed, say
from .where import user_identity


@command
def cmd_mount(args: argparse.Namespace) -> int:
    """Mount a 9P server with FUSE; in the background unless --foreground."""
    if not fuse_installed("mount"):
        return 2
    try:
        parse_address(args.addr)
    except ValueError as exc:
        say(f"mount: {exc}")
        return 2
    mountpoint = os.path.abspath(args.mountpoint)
    try:
        cleared = clear_dead_mount(mountpoint)
    except OSError as exc:
        say(f"mount: {exc}")
        return 1
    if cleared:
        say(f"mount: {cleared}")
    if not os.path.isdir(mountpoint):
        say(f"mount: {mountpoint} is not a folder")
        return 2
    if os.path.ismount(mountpoint):
        say(f"mount: {mountpoint} is a mount point already (styxgrid umount it first)")
        return 1
    if not args.foreground:
        return _mount_in_background(args, mountpoint)
    from ..fs.config import MountConfig
    from ..fs.mount import serve_mount

    def ready() -> None:
        say(f"mount: {args.addr} mounted on {mountpoint}")
        if os.environ.pop("STYXGRID_DETACHED", None):
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, 2)
            os.close(devnull)
    try:
        with unwrapped():
            trio.run(functools.partial(serve_mount, MountConfig(
                args.addr, mountpoint, identity=user_identity()), ready=ready))
    except (OSError, ConnectionLost, NinePError, RuntimeError, trio.BrokenResourceError) as exc:
        say(f"mount: cannot mount {args.addr} on {mountpoint}: {exc}")
        return 1
    return 0


def _mount_in_background(args: argparse.Namespace, mountpoint: str) -> int:
    """Start the foreground mount as a detached child; return once it is mounted
    (0) or has failed (its message, 1)."""
    child = subprocess.Popen(
        [sys.executable, "-m", "styxgrid", "mount", "--foreground", args.addr, mountpoint],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        text=True, start_new_session=True, env={**os.environ, "STYXGRID_DETACHED": "1"})
    assert child.stderr is not None
    for line in child.stderr:
        sys.stderr.write(line)
        if " mounted on " in line:
            child.stderr.close()
            return 0
    child.wait()
    return 1


@command
def cmd_umount(args: argparse.Namespace) -> int:
    result = subprocess.run(["fusermount3", "-u", os.path.abspath(args.mountpoint)],
                            capture_output=True, text=True)
    if result.returncode:
        say(f"umount: {result.stderr.strip() or 'fusermount3 failed'}")
        return 1
    return 0
