"""The keeper: a small process beside the worker that ends the worker's tasks
when the worker ends in a way that lets it do nothing itself (SIGKILL, a crash).

Every task the worker starts carries `STYXGRID_KEEPER=TOKEN` in its environment,
a token this worker's keeper alone knows, and so does whatever the task starts
(unless it clears its environment on purpose).  The keeper waits for the end of
its standard input, a pipe from the worker that the kernel closes however the
worker ends; then it kills every process whose starting environment carries the
token, until none is left, and, for a worker started as root, every process of
its task users (which reaches also a task that cleared its environment and left
its session).  Nothing passes between them while tasks run, so a task costs the
worker nothing more.  The keeper sits in a session of its own and
ignores SIGINT and SIGTERM, so a Ctrl-C meant for the worker does not take it.

    python -m styxgrid.worker.keeper TOKEN [UID...]
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys

from .accounts import Account, kill_leftovers

VARIABLE = "STYXGRID_KEEPER"


class Keeper:
    """The worker's side: start the keeper; `env` marks a task as the worker's."""

    def __init__(self, uids: list[int], lock: int | None = None) -> None:
        """`lock`: the task users' lock (accounts.py), held by the keeper too until
        it has killed their processes."""
        self.token = secrets.token_hex(16)
        self.process = subprocess.Popen([sys.executable, "-m", "styxgrid.worker.keeper",
                                         self.token, *map(str, uids)],
                                        stdin=subprocess.PIPE, start_new_session=True,
                                        pass_fds=() if lock is None else (lock,))
        self.env = {VARIABLE: self.token}


def marked(token: str) -> list[int]:
    """The processes whose environment carries the token."""
    mark = f"{VARIABLE}={token}".encode()
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/environ", "rb") as f:
                if mark in f.read().split(b"\0"):
                    found.append(int(name))
        except OSError:
            continue
    return found


def main() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    token, uids = sys.argv[1], [int(uid) for uid in sys.argv[2:]]
    sys.stdin.buffer.read()                 # until the worker is gone
    for uid in uids:
        kill_leftovers(Account(str(uid), uid, uid))
    for _ in range(10):                     # a task may fork while we look
        left = [pid for pid in marked(token) if pid != os.getpid()]
        if not left:
            return
        for pid in left:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass


if __name__ == "__main__":
    main()
