"""The scheduler's TLS port: handshake, refuse revoked names, serve 9P, and drop
the connections of a name the moment it is revoked.

Failed handshakes (plaintext, another CA's certificate, an expired one) end the
connection before a single 9P byte is read.
"""

from __future__ import annotations

import logging
import os
import ssl
from collections import defaultdict
from typing import Any

import trio

from ..ninep import FileServer, Limits, NinePError, serve_stream
from ..ninep.tree import Node, Session
from . import tls
from .ca import CA
from .identity import Identity

log = logging.getLogger("styxgrid.security")

REVOCATION_POLL = 0.5
REFUSED_GRACE = 5.0         # seconds a revoked name's connection may stay to hear why


class Refused:
    """The file server a revoked name attaches to: every attach fails, saying why."""

    def __init__(self, why: str) -> None:
        self.why = why

    def attach(self, session: Session) -> Node:
        raise NinePError(self.why)


class Gate:
    def __init__(self, ca: CA, hosts: tuple[str, ...] = ()) -> None:
        self.ca = ca
        self.context = tls.server_context(Identity(ca.scheduler_identity(hosts)))
        self.revoked = ca.revoked()
        self.live: dict[str, set[trio.CancelScope]] = defaultdict(set)

    async def serve(self, stream: trio.SocketStream, *, fs: FileServer, limits: Limits = Limits(),
                    trace: bool = False) -> None:
        """One connection: handshake, then 9P until it ends or its name is revoked."""
        try:
            secure, peer = await tls.accept(stream, self.context)
        except (trio.BrokenResourceError, trio.TooSlowError, ssl.SSLError, OSError) as exc:
            log.info("TLS handshake refused: %s", exc)
            await trio.aclose_forcefully(stream)
            return
        name = peer["name"]
        if name is not None and name in self.ca.revoked():
            log.warning("refused %s: certificate revoked", name)
            # enough 9P to say why (the attach fails with the reason), then gone
            with trio.move_on_after(REFUSED_GRACE):
                await serve_stream(secure, Refused(f"the certificate of {name} is revoked"),
                                   peer=peer, limits=Limits(max_fids=4, max_inflight=4))
            await secure.aclose()                  # forceful: no TLS goodbye to wait for
            return
        with trio.CancelScope() as scope:
            if name is not None:
                self.live[name].add(scope)
            try:
                await serve_stream(secure, fs, peer=peer, limits=limits, trace=trace)
            finally:
                if name is not None:
                    self.live[name].discard(scope)
        await secure.aclose()

    async def watch_revocations(self) -> None:
        """Drop every connection of a name once it appears in the revoked list."""
        seen: Any = None
        while True:
            try:
                stamp = os.stat(self.ca.revoked_path).st_mtime_ns
            except FileNotFoundError:
                stamp = None
            if stamp != seen:
                seen = stamp
                self.revoked = self.ca.revoked()
                for name in self.revoked & set(self.live):
                    for scope in self.live[name]:
                        log.warning("dropping %s: certificate revoked", name)
                        scope.cancel()
            await trio.sleep(REVOCATION_POLL)
