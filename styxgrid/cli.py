"""The `styxgrid` command: one subcommand per job, each a thin layer over a library."""

from __future__ import annotations

import argparse
import functools
import logging
import resource
import sys
from typing import Callable

import trio

from .ninep import serve_listeners
from .ninep.exportfs import ExportFS
from .ninep.transport import open_listeners, parse_address

Command = Callable[[argparse.Namespace], int]
COMMANDS: dict[str, Command] = {}


def command(fn: Command) -> Command:
    COMMANDS[fn.__name__.replace("cmd_", "").replace("_", "-")] = fn
    return fn


def say(text: str) -> None:
    """A status line for the operator (stderr, flushed: tests and scripts wait on it)."""
    print(f"styxgrid: {text}", file=sys.stderr, flush=True)


@command
def cmd_exportfs(args: argparse.Namespace) -> int:
    try:
        fs = ExportFS(args.dir)
        addr = parse_address(args.listen)
    except (OSError, ValueError) as exc:
        say(f"exportfs: {exc}")
        return 2

    async def run() -> None:
        listeners = await open_listeners(addr)
        async with trio.open_nursery() as nursery:
            await nursery.start(functools.partial(serve_listeners, fs, listeners,
                                                  trace=args.trace))
            say(f"exportfs: serving {fs.root} on {_bound(listeners, addr)}")

    try:
        trio.run(run)
    except OSError as exc:
        say(f"exportfs: {exc}")
        return 1
    except KeyboardInterrupt:
        return 0
    return 0


def _bound(listeners: list, addr) -> str:
    """The address actually listened on (TCP port 0 becomes the chosen port)."""
    if addr.path is not None:
        return addr.path
    host, port = listeners[0].socket.getsockname()[:2]
    return f"{host}:{port}"


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="styxgrid", description=__doc__)
    top.add_argument("--trace", action="store_true", help="log every 9P message in and out")
    sub = top.add_subparsers(dest="command", required=True)

    p = sub.add_parser("exportfs", help="serve a local folder over 9P2000")
    p.add_argument("dir", help="the folder to serve")
    p.add_argument("--listen", required=True, help="HOST:PORT or an absolute unix socket path")
    return top


def raise_fd_limit() -> None:
    """Servers hold one descriptor per connection: allow as many as the system does."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    raise_fd_limit()
    logging.basicConfig(level=logging.DEBUG if args.trace else logging.WARNING,
                        format="%(name)s: %(message)s")
    return COMMANDS[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
