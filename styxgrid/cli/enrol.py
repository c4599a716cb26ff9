"""Certificates: the grid CA (`ca`), join tokens (`token`), and spending a token for
a certificate (`login`, and `worker --join`)."""

from __future__ import annotations

import argparse
from pathlib import Path

import trio

from ..errgroups import unwrapped
from ..ninep import NinePError
from ..ninep.client import ConnectionLost
from ..ninep.transport import parse_address
from .common import command, local_user, os_error, say
from .where import user_identity


def enrol(verb: str, scheduler: str, token: str, name: str, out: Path) -> int:
    """Spend a join token at a TCP scheduler for a certificate kept in `out`;
    0, or the exit status after saying what went wrong (2: a bad argument; 1: the
    scheduler refused the token or could not be reached)."""
    from ..security.ca import CAError
    from ..security.enrol import enrol as spend
    from ..security.tokens import TokenError
    try:
        where = parse_address(scheduler)
        if where.path is not None:
            raise ValueError("--join needs the scheduler's HOST:PORT (a unix socket needs no "
                             "certificate)")
        assert where.host is not None and where.port is not None
        with unwrapped():
            identity = trio.run(spend, where.host, where.port, token, name, out)
    except (ValueError, TokenError) as exc:         # the command line's mistake
        say(f"{verb}: {exc}")
        return 2
    except NinePError as exc:
        say(f"{verb}: {scheduler} refused: {exc}")
        return 1
    except CAError as exc:
        say(f"{verb}: {scheduler}: {exc}")
        return 1
    except (OSError, ConnectionLost, trio.BrokenResourceError, trio.TooSlowError) as exc:
        say(f"{verb}: cannot enrol at {scheduler}: {exc}")
        return 1
    identity.remember_scheduler(scheduler)
    say(f"{verb}: enrolled as {name}; certificate in {out}")
    return 0


@command
def cmd_login(args: argparse.Namespace) -> int:
    """Spend a user join token for a certificate; later commands use it, and the
    scheduler's address is remembered beside it."""
    return enrol("login", args.scheduler, args.join, args.name or local_user(),
                 user_identity().dir)


@command
def cmd_ca(args: argparse.Namespace) -> int:
    """The grid CA: init, issue, revoke."""
    from ..security.ca import CA, CAError
    try:
        if args.ca_command == "init":
            ca = CA.init(args.dir)
            say(f"ca: made {ca.dir} (fingerprint {ca.fingerprint})")
        elif args.ca_command == "issue":
            out = CA.open(args.dir).issue(args.name, args.role,
                                          args.out or f"{args.name}.identity", days=args.days)
            say(f"ca: {args.role} {args.name}: key and certificate in {out}")
        else:
            CA.open(args.dir).revoke(args.name)
            say(f"ca: {args.name} revoked; its connections are dropped")
    except CAError as exc:
        say(f"ca: {exc}")
        return 2
    except OSError as exc:
        say(f"ca: {os_error(exc)}")
        return 1
    return 0


@command
def cmd_token(args: argparse.Namespace) -> int:
    """Print a join token for a new worker or user."""
    from ..security import tokens
    from ..security.ca import CA, CAError
    try:
        token = tokens.create(CA.open(args.ca), args.role, ttl=tokens.parse_ttl(args.ttl),
                              uses=args.uses)
    except (CAError, ValueError) as exc:
        say(f"token: {exc}")
        return 2
    print(token)
    return 0
