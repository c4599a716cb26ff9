"""The 9P connection behind a mount: dialled at mount time, dialled again on demand
after it drops, so a mount outlives a scheduler restart.  While the server is
down every call fails at once with EIO instead of hanging."""

from __future__ import annotations

import errno
import logging

import pyfuse3
import trio

from ..errgroups import unwrapped
from ..ninep.client import Client, ConnectionLost, open_client
from ..ninep.errors import NinePError
from ..security.dial import dial
from ..security.identity import Identity

log = logging.getLogger("styxgrid.fs")

class Remote:
    def __init__(self, addr: str, identity: Identity | None, aname: str = "", *,
                 dial_timeout: float, uname: str | None = None) -> None:
        self.addr = addr
        self.uname = uname                       # whom to attach as (default: who we are)
        self.dial_timeout = dial_timeout
        self.identity = identity                 # certificate for a TCP scheduler
        self.aname = aname
        self.client: Client | None = None
        self.generation = 0              # bumps with each new connection: old fids are dead
        self.attempts = 0
        self.attempted = trio.Event()
        self.wanted = trio.Event()

    async def run(self, *, task_status: trio.TaskStatus = trio.TASK_STATUS_IGNORED) -> None:
        """Keep a connection: the first dial's failure is raised (the mount fails);
        later ones are dialled when an operation asks for one."""
        first = True
        while True:
            try:
                with unwrapped():
                    stream, uname = await dial(self.addr, self.identity)
                    async with open_client(stream, uname=self.uname or uname,
                                           aname=self.aname) as client:
                        self.client = client
                        self.generation += 1
                        self.attempt_over()
                        if first:
                            first = False
                            task_status.started()
                        else:
                            log.warning("reconnected to %s", self.addr)
                        await client.lost.wait()
                        log.warning("lost the connection to %s: %s", self.addr, client.closed)
            except (OSError, ConnectionLost, NinePError, trio.BrokenResourceError,
                    trio.TooSlowError) as exc:
                if first:
                    raise
                log.info("cannot reach %s: %s", self.addr, exc)
            self.client = None
            self.attempt_over()
            await self.wanted.wait()             # dial again when an operation needs it
            self.wanted = trio.Event()

    def attempt_over(self) -> None:
        self.attempts += 1
        self.attempted.set()
        self.attempted = trio.Event()

    async def get(self) -> Client:
        """The live client, dialling again if need be; FUSEError(EIO) if the server
        cannot be reached now."""
        client = self.client
        if client is not None and not client.closed:
            return client
        start = self.attempts
        self.wanted.set()
        with trio.move_on_after(self.dial_timeout):
            while self.attempts == start:
                await self.attempted.wait()
        client = self.client
        if client is None or client.closed:
            raise pyfuse3.FUSEError(errno.EIO)
        return client
