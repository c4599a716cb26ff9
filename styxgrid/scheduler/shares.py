"""Fair share between users, like HTCondor's user priorities.

Each user's usage is the cpu-seconds their tasks held, decaying with a
half-life (a day by default): while r cpus run, usage u moves as
du/dt = r - ln2/H * u, which has a closed form, so a user's usage is settled
only when their count of running cpus changes, never by a periodic pass.  A
user's effective priority is factor * (0.5 + usage): smaller is better (0.5, as
HTCondor's least real priority, lets the factor order users with no usage).
When a slot frees, the matching task of the user with the best effective
priority goes first (core.py), then by job priority, then by submission.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Callable

HALF_LIFE = 86400.0             # seconds: a user's usage halves in a day
MIN_FACTOR, MAX_FACTOR = 1.0, 1_000_000.0


@dataclass(eq=False)
class Share:
    name: str
    factor: float = 1.0          # set by an admin: 2 gets half the share of 1
    usage: float = 0.0           # decayed cpu-seconds, as at `at`
    at: float = 0.0              # when `usage` was settled (the shares' clock)
    running: int = 0             # cpus its tasks hold now


class Shares:
    def __init__(self, clock: Callable[[], float] = time.time,
                 half_life: float = HALF_LIFE) -> None:
        self.clock = clock
        self.decay = math.log(2) / half_life
        self.users: dict[str, Share] = {}

    def of(self, name: str) -> Share:
        share = self.users.get(name)
        if share is None:
            share = self.users[name] = Share(name, at=self.clock())
        return share

    def usage(self, share: Share, now: float | None = None) -> float:
        now = self.clock() if now is None else now
        steady = share.running / self.decay
        return steady + (share.usage - steady) * math.exp(-self.decay * max(0.0, now - share.at))

    def effective(self, name: str, now: float) -> float:
        share = self.users.get(name)
        if share is None:
            return 0.5
        return share.factor * (0.5 + self.usage(share, now))

    def settle(self, share: Share) -> None:
        now = self.clock()
        share.usage, share.at = self.usage(share, now), now

    def started(self, name: str, cpus: int = 1) -> None:
        share = self.of(name)
        self.settle(share)
        share.running += cpus

    def ended(self, name: str, cpus: int = 1) -> None:
        share = self.of(name)
        self.settle(share)
        share.running = max(0, share.running - cpus)

    def set_factor(self, name: str, factor: float) -> None:
        if not MIN_FACTOR <= factor <= MAX_FACTOR:
            raise ValueError(f"factor {factor:g} is out of range ({MIN_FACTOR:g}.."
                             f"{MAX_FACTOR:g})")
        self.of(name).factor = factor

    def restore(self, name: str, factor: float, usage: float, at: float) -> None:
        """A user as stored (usage as at wall time `at`; the clock is wall time)."""
        share = self.of(name)
        share.factor, share.usage, share.at = factor, usage, at
