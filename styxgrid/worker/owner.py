"""The desktop owner's say over the tasks running on the machine, as HTCondor's
default policy has it.

While the owner is away the worker takes work.  When the owner is back it
takes no new work and (if it runs any) SUSPENDS its tasks (SIGSTOP of each task's process group) and takes no new
work; if the owner goes again within `suspend_for` seconds the tasks continue
(SIGCONT) where they were; if not, it VACATES them: SIGTERM (a task may save a
checkpoint), `vacate_grace` seconds, then SIGKILL, and each goes back to the
scheduler's queue as an eviction, not a failure.  The worker then takes no work
until the owner is away again.

The owner is back while any of these says so (looked at every `owner_poll`):
the busy file exists (`--busy-file`: an owner, a screensaver hook or a test says
it); the load not from this worker's tasks is at `--max-load` or more; an input
device (/dev/input) was used within `--idle-after` seconds.
"""

from __future__ import annotations

import logging
import os
import time
from typing import Callable

import trio

from . import policy
from .config import WorkerConfig
from .runner import Runner

log = logging.getLogger("styxgrid.worker")
INPUT = "/dev/input"


def input_idle() -> float | None:
    """Seconds since an input device was last used (the newest access time of
    /dev/input's event and mouse devices), None where the machine has none."""
    newest = None
    try:
        names = os.listdir(INPUT)
    except OSError:
        return None
    for name in names:
        if not name.startswith(("event", "mouse", "mice")):
            continue
        try:
            st = os.stat(os.path.join(INPUT, name))
        except OSError:
            continue
        seen = max(st.st_atime, st.st_mtime)
        newest = seen if newest is None else max(newest, seen)
    return None if newest is None else max(0.0, time.time() - newest)


class OwnerWatch:
    """The owner's state as the worker acts on it: away, suspended, vacating,
    back (vacated; no work till the owner is away)."""

    def __init__(self, config: WorkerConfig, runner: Runner,
                 changed: Callable[[str], None]) -> None:
        self.config = config
        self.runner = runner
        self.changed = changed                # tell the scheduler now, not at the next beat
        self.state = "away"
        self.own_load = 0.0                   # our running tasks, averaged like the load

    def back(self) -> str:
        """Why the owner counts as back ('' while away)."""
        config = self.config
        if config.busy_file and os.path.lexists(config.busy_file):
            return f"the busy file {config.busy_file} exists"
        load = os.getloadavg()[0]
        if policy.owner_busy(load, self.own_load, config.max_load):
            return f"the load not from grid tasks is {load - self.own_load:.2f}"
        if config.idle_after:
            idle = input_idle()
            if idle is not None and idle < config.idle_after:
                return f"input was used {idle:.0f}s ago"
        return ""

    def enter(self, state: str, why: str = "") -> None:
        self.state = state
        self.runner.hold(state != "away")
        log.info("node=%s owner %s%s", self.config.name, state, f": {why}" if why else "")
        self.changed(state)

    async def run(self) -> None:
        config, runner = self.config, self.runner
        since = 0.0
        while True:
            self.own_load = policy.own_load(self.own_load, runner.working(), config.owner_poll,
                                            config.load_window)
            why = self.back()
            now = trio.current_time()
            if self.state == "away" and why and not runner.running():
                self.enter("back", why)           # nothing to stop: take no work,
                await runner.vacate(0)            # and give back what waits here
            elif self.state == "away" and why:
                since = now
                runner.suspend()
                self.enter("suspended", why)
            elif self.state == "suspended" and not why:
                runner.resume()
                self.enter("away")
            elif self.state == "suspended" and now - since >= config.suspend_for:
                self.enter("vacating", f"back for {config.suspend_for:g}s")
                await runner.vacate(config.vacate_grace)
                self.enter("back")
            elif self.state == "back" and not why:
                self.enter("away")
            await trio.sleep(config.owner_poll)
