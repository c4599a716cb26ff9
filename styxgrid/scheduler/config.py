"""Everything a scheduler can be told, with its default written once: the CLI,
`styxgrid up`, the benches and the tests only fill in a `SchedulerConfig`."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ..ninep.server import Limits
from ..ninep.transport import Address
from .shares import HALF_LIFE

SOCKET_NAME = "scheduler.sock"      # the local socket, in the state folder


@dataclass(frozen=True)
class SchedulerConfig:
    state_dir: Path
    listen: Address | None = None           # default: STATE/scheduler.sock
    ca_dir: str | None = None               # the grid CA: a TCP address speaks TLS
    insecure: bool = False                  # plain 9P on TCP, attach names believed
    heartbeat_timeout: float = 10.0         # seconds of silence after which a worker is lost
    usage_half_life: float = HALF_LIFE      # seconds in which a user's usage halves
    usage_saved_every: float = 60.0         # seconds between saves of users' usage
    trace: bool = False                     # log every 9P message
    limits: Limits = field(default_factory=Limits)     # per connection (styxgrid-scheduler(8))
    # The scheduler holds many long-lived objects (each worker's connection and its
    # waiting read); with Python's default thresholds the collector walks them all
    # every few hundred tasks, so the cost of a task grew with the workers connected.
    gc_thresholds: tuple[int, int, int] = (50_000, 20, 100)

    @property
    def address(self) -> Address:
        return self.listen or Address(path=str(Path(self.state_dir).resolve() / SOCKET_NAME))
