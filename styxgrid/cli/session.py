"""A user's command's session with the scheduler: find it, connect, run the
command, and turn every failure a user can cause into one line on stderr and the
documented exit status (styxgrid(1), EXIT STATUS)."""

from __future__ import annotations

import argparse
import functools
import os
import re
import sys
from typing import Awaitable, Callable

import trio

from ..errgroups import unwrapped
from ..ninep import NinePError
from ..ninep import errors as E
from ..ninep.client import Client, ConnectionLost, open_client
from ..ninep.errors import LocalProtocolError, RemoteProtocolError
from ..ninep.transport import parse_address
from .common import UserError, command, local_user, say
from .where import find_scheduler, user_identity

ClientCommand = Callable[[Client, argparse.Namespace], Awaitable[int]]


def client_command(fn: ClientCommand) -> ClientCommand:
    """Register an async command that talks to the scheduler: find it, connect,
    run, and turn every failure into one line and an exit status."""
    @functools.wraps(fn)
    def run(args: argparse.Namespace) -> int:
        verb = args.command
        try:
            address = find_scheduler(args.scheduler, user_identity())
            parse_address(address)
        except UserError as exc:
            say(f"{verb}: {exc}")
            return exc.status
        except ValueError as exc:
            say(f"{verb}: {exc}")
            return 2

        async def main() -> int:
            from ..security.dial import dial
            with unwrapped():
                stream, uname = await dial(address, user_identity())
                args.uname = uname or local_user()
                async with open_client(stream, uname=args.uname) as client:
                    return await fn(client, args)
        try:
            return trio.run(main)
        except BrokenPipeError:               # `| head`: the reader has gone; end quietly
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            return 141
        except UserError as exc:
            say(f"{verb}: {exc}")
            return exc.status
        except NinePError as exc:
            say(f"{verb}: {exc}")
            return 1
        except UnicodeError:
            say(f"{verb}: names in the grid are UTF-8 text; an argument is not")
            return 2
        except LocalProtocolError as exc:
            say(f"{verb}: {exc}")
            return 2
        except (ValueError, RemoteProtocolError) as exc:
            say(f"{verb}: {exc}")
            return 2 if isinstance(exc, ValueError) else 1
        except (OSError, ConnectionLost, trio.BrokenResourceError) as exc:
            why = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            say(f"{verb}: cannot reach the scheduler at {address}: {why or type(exc).__name__}")
            return 1
        except KeyboardInterrupt:
            return 130
    command(run)
    return fn


async def explain(client: Client, path: str, exc: NinePError) -> UserError:
    """A refusal about `path`, said so that it names the path (or the job)."""
    job = re.match(r"jobs/(\d+)(?:/|$)", path.strip("/"))
    if exc.ename.startswith(E.ENOTFOUND) and job:
        try:
            await client.stat(f"jobs/{job.group(1)}")
        except NinePError:
            return UserError(f"no job {job.group(1)}")
    text = exc.ename.removesuffix(f": {path}")        # a walk's error names the path last
    if path and path not in text:
        text = f"{path}: {text}"
    return UserError(text)


async def read(client: Client, path: str) -> bytes:
    try:
        return await client.read_file(path)
    except NinePError as exc:
        raise await explain(client, path, exc) from None
