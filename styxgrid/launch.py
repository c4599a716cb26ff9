"""The `styxgrid` command's first step, taken before anything heavy is imported.

The servers (scheduler, up, exportfs) run with the system allocator: after a crowd
of connections has gone, malloc_trim can return every free page (ninep/memory.py),
while Python's own allocator keeps a whole 1 MiB arena for one live object in it.
PYTHONMALLOC is read only when Python starts, so a server command run without it
starts itself again with it (the same process: exec, before any import of weight).
"""

from __future__ import annotations

import os
import sys

SERVERS = ("scheduler", "up", "exportfs")


TAKES_VALUE = ("--scheduler",)       # the top level's options that are followed by a value


def command_of(argv: list[str]) -> str | None:
    """The verb: the first word that is neither an option nor an option's value."""
    words = iter(argv)
    for word in words:
        if word in TAKES_VALUE:
            next(words, None)
        elif not word.startswith("-"):
            return word
    return None


def main() -> int:
    if command_of(sys.argv[1:]) in SERVERS and "PYTHONMALLOC" not in os.environ:
        os.environ["PYTHONMALLOC"] = "malloc"
        os.execv(sys.executable, [sys.executable, "-m", "styxgrid", *sys.argv[1:]])
    from .cli import main as cli_main
    return cli_main()
