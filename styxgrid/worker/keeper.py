"""The keeper: a small process beside the worker that ends the worker's tasks
when the worker ends in a way that lets it do nothing itself (SIGKILL, a crash).

The worker writes `+PGID` when a task starts and `-PGID` when it is over on the
keeper's standard input.  When that pipe reaches its end (the kernel closes it
however the worker ends) the keeper kills every process group still listed and
exits.  It sits in a session of its own and ignores SIGINT and SIGTERM, so a
Ctrl-C or a signal meant for the worker does not take it first.

    python -m styxgrid.worker.keeper
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys


class Keeper:
    """The worker's side: start the keeper, tell it of each task's group."""

    def __init__(self) -> None:
        self.process = subprocess.Popen([sys.executable, "-m", "styxgrid.worker.keeper"],
                                        stdin=subprocess.PIPE, start_new_session=True)
        assert self.process.stdin is not None
        self.fd = self.process.stdin.fileno()

    def add(self, pgid: int) -> None:
        os.write(self.fd, b"+%d\n" % pgid)

    def remove(self, pgid: int) -> None:
        os.write(self.fd, b"-%d\n" % pgid)


def main() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    groups: set[int] = set()
    for line in sys.stdin.buffer:
        try:
            pgid = int(line[1:])
        except ValueError:
            continue
        if line[:1] == b"+":
            groups.add(pgid)
        else:
            groups.discard(pgid)
    for pgid in groups:
        try:
            os.killpg(pgid, signal.SIGKILL)
        except OSError:
            pass


if __name__ == "__main__":
    main()
