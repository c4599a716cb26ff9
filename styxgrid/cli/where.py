"""Which scheduler a command talks to: one order for every command and the worker.

    1. --scheduler ADDRESS (before or after the verb)
    2. $STYXGRID_SCHEDULER
    3. the address stored by `styxgrid login` (a worker: by its own --join)
    4. the socket of a `styxgrid up` in this folder or a parent: .styxgrid/scheduler.sock
"""

from __future__ import annotations

import os
from pathlib import Path

from ..security.identity import Identity, user_identity_dir
from ..scheduler.config import SOCKET_NAME
from .common import DEFAULT_STATE, UserError


def user_identity() -> Identity:
    return Identity(user_identity_dir())


def find_scheduler(given: str | None, stored: Identity | None) -> str:
    if given is not None:                    # even empty: a bad address is said so
        return given
    env = os.environ.get("STYXGRID_SCHEDULER")
    if env:
        return env
    if stored is not None and stored.scheduler:
        return stored.scheduler
    here = Path.cwd()
    for folder in (here, *here.parents):
        sock = folder / DEFAULT_STATE / SOCKET_NAME
        if sock.exists():
            return str(sock)
    raise UserError("no scheduler to talk to: give --scheduler ADDRESS, set "
                    "STYXGRID_SCHEDULER, log in with `styxgrid login`, or run "
                    "`styxgrid up` in this folder or one above it")
