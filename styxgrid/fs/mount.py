"""Mounting: dial the server first (an unreachable one fails the mount with a
message and leaves nothing mounted), then init, run pyfuse3's loop with room for
many parked reads, and unmount on SIGINT/SIGTERM or when the loop ends."""

from __future__ import annotations

import os
import signal
from typing import Callable

import pyfuse3
import trio

from ..ninep.transport import parse_address
from .config import MountConfig
from .operations import NinePOperations
from .remote import Remote


async def serve_mount(config: MountConfig, *, ready: Callable[[], None] = lambda: None) -> None:
    """Mount `config.address` at `config.mountpoint` until unmounted or signalled;
    a TCP address is dialled with TLS and `config.identity`'s certificate."""
    remote = Remote(config.address, config.identity, dial_timeout=config.dial_timeout)
    mountpoint = config.mountpoint
    async with trio.open_nursery() as nursery:
        await nursery.start(remote.run)
        # A root mount of a unix socket serves every local user, each attached under
        # his own name (the scheduler lets root speak for a user and gives that
        # attach the user's rights only).  Any other mount serves its own user only:
        # a certificate names one user, and a user's mount is his.
        per_user = os.getuid() == 0 and parse_address(config.address).path is not None
        ops = NinePOperations(remote, nursery, config, per_user=per_user)
        options = {"fsname=styxgrid", "subtype=styxgrid"}
        if per_user:
            options.add("allow_other")
        pyfuse3.init(ops, mountpoint, options)
        try:
            ready()

            async def on_signal() -> None:
                with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
                    async for _ in signals:
                        pyfuse3.terminate()
                        return
            nursery.start_soon(on_signal)
            await pyfuse3.main(min_tasks=1, max_tasks=config.max_requests)
        finally:
            pyfuse3.close(unmount=True)
            nursery.cancel_scope.cancel()
