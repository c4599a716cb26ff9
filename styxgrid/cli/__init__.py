"""The `styxgrid` command: one subcommand per job, each a thin layer over a library.

    common   the table of commands, status lines, user errors
    where    which scheduler a command talks to
    parser   every command and option, with help
    serve    exportfs, scheduler, worker, up
    mount    mount, umount
    enrol    ca, token, login
    session  a user command's connection, and its failures as one line each
    user     submit, q, status, wait, why, cat, ls, write
    data     mkdir, put, get, rm
"""

from __future__ import annotations

import logging
import resource

from . import data, enrol, mount, serve, user  # noqa: F401  (each registers its commands)
from .common import COMMANDS, say
from .parser import parser


def raise_fd_limit() -> None:
    """Servers hold one descriptor per connection: allow as many as the system does."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def main(argv: list[str] | None = None) -> int:
    args, extra = parser().parse_known_args(argv)
    if extra:
        say(f"{args.command}: unrecognized arguments: {' '.join(extra)} "
            f"(see styxgrid {args.command} --help)")
        return 2
    raise_fd_limit()
    log_to_stderr(args.verbose, args.trace)
    return COMMANDS[args.command](args)


def log_to_stderr(verbose: int, trace: bool) -> None:
    """Warnings and errors always; `-v` what changes, `-vv` every task as well;
    `--trace` every 9P message, whatever -v says."""
    level = (logging.WARNING, logging.INFO)[verbose] if verbose < 2 else logging.DEBUG
    logging.basicConfig(level=level, format="%(asctime)s %(name)s %(levelname)s: %(message)s"
                        if verbose else "%(name)s: %(message)s")
    if trace:
        logging.getLogger("styxgrid.ninep").setLevel(logging.DEBUG)
