"""Fixtures: short temporary folders, our processes, and a real grid (scheduler and
workers) for the tests that need one."""

from __future__ import annotations

import os
import subprocess
import tempfile
from dataclasses import dataclass, field

import pytest

from .helpers import Proc


@pytest.fixture
def short_tmp(tmp_path_factory):
    """A short directory path: unix socket paths must fit in 108 bytes."""
    d = tempfile.mkdtemp(prefix="sg-", dir="/tmp")
    yield d
    subprocess.run(["rm", "-rf", d])              # a task may leave a deep tree


@pytest.fixture
def proc():
    """Start styxgrid processes; every one is stopped at the end of the test."""
    started: list[Proc] = []

    def start(args, ready, env=None) -> Proc:
        p = Proc(args, ready, env)
        started.append(p)
        return p
    yield start
    for p in reversed(started):
        p.stop()


@dataclass
class GridProcs:
    """Start and stop the scheduler and workers of one test's grid."""

    start: object
    dir: str
    state: str = ""
    sock: str = ""
    scheduler: Proc | None = None
    workers: dict[str, Proc] = field(default_factory=dict)

    def start_scheduler(self, *extra: str) -> Proc:
        self.scheduler = self.start(["scheduler", "--state", self.state, "--listen", self.sock,
                                     *extra], r"serving \S+ on (\S+)")
        return self.scheduler

    def start_worker(self, name: str, slots: int = 1, *extra: str) -> Proc:
        worker = self.start(["worker", "--scheduler", self.sock, "--name", name,
                             "--slots", str(slots), "--heartbeat", "0.5",
                             "--workdir", os.path.join(self.dir, f"work-{name}"), *extra],
                            r"joined")
        self.workers[name] = worker
        return worker


@pytest.fixture
def grid(proc):
    """A scheduler on a unix socket in a short temporary folder; no workers yet."""
    d = tempfile.mkdtemp(prefix="sg-", dir="/tmp")
    os.chmod(d, 0o755)               # workers started as root run tasks as nobody
    g = GridProcs(proc, d, state=os.path.join(d, "state"), sock=os.path.join(d, "s.sock"))
    g.start_scheduler()
    yield g
    for p in reversed([g.scheduler, *g.workers.values()]):
        if p is not None:
            p.stop()
    subprocess.run(["rm", "-rf", d])              # a task may leave a deep tree
