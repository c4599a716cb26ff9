"""What every `styxgrid` subcommand shares: the table of commands, the operator's
status line, user errors, and running trio until a signal."""

from __future__ import annotations

import argparse
import signal
import sys
from typing import Awaitable, Callable

import trio

Command = Callable[[argparse.Namespace], int]
COMMANDS: dict[str, Command] = {}

DEFAULT_STATE = ".styxgrid"


def command(fn: Command) -> Command:
    COMMANDS[fn.__name__.replace("cmd_", "").replace("_", "-")] = fn
    return fn


def say(text: str) -> None:
    """A status line for the operator (stderr, flushed: tests and scripts wait on it)."""
    print(f"styxgrid: {text}", file=sys.stderr, flush=True)


class UserError(Exception):
    """Something the user can fix: said in one line, with the exit status given
    (2: the command line is wrong; 1: the grid refused or is out of reach)."""

    def __init__(self, message: str, status: int = 1) -> None:
        super().__init__(message)
        self.status = status


def os_error(exc: OSError) -> str:
    """`PATH: reason`, as the shell says it, rather than Python's [Errno N] form."""
    reason = exc.strerror or str(exc)
    return f"{exc.filename}: {reason}" if exc.filename else reason


def run_until_signal(main: Callable[[], Awaitable[None]]) -> None:
    """Run `main` under trio until it ends or SIGINT/SIGTERM arrives."""
    async def run() -> None:
        async with trio.open_nursery() as nursery:
            async def on_signal() -> None:
                with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
                    async for _ in signals:
                        nursery.cancel_scope.cancel()
            nursery.start_soon(on_signal)
            await main()
            nursery.cancel_scope.cancel()
    trio.run(run)


def fuse_installed(verb: str) -> bool:
    """pyfuse3 is an optional part: without it, one line says what to install."""
    try:
        import pyfuse3  # noqa: F401
    except ImportError:
        say(f"{verb}: FUSE support is not installed: pip install 'styxgrid[fuse]' "
            "(it needs the fuse3 and libfuse3-dev packages)")
        return False
    return True


def local_user() -> str:
    from ..ninep.client import default_uname
    return default_uname()
