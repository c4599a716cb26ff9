"""Dialling the scheduler: a unix socket as it is; a TCP address with TLS and the
caller's certificate when it has an identity, else plain (for a scheduler run
with --insecure).  Returns the stream and the name to attach with."""

from __future__ import annotations

import trio

from ..ninep.transport import Transport, connect, parse_address
from . import tls
from .identity import Identity


async def dial(addr: str, identity: Identity | None) -> tuple[trio.abc.Stream | Transport,
                                                              str | None]:
    where = parse_address(addr)
    if where.path is None and identity is not None and identity.exists():
        assert where.host is not None and where.port is not None
        stream = await tls.connect(where.host, where.port, tls.client_context(identity))
        return stream, identity.name_and_role()[0]
    return await connect(where), None
