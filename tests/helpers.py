"""Shared test helpers: real processes of ours, started and waited on properly."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SHARED_TOOLS = REPO.parent / "shared" / "tools"
STYXGRID = [sys.executable, "-m", "styxgrid.cli"]


class Proc:
    """A styxgrid process whose stderr announces readiness with a known line."""

    def __init__(self, args: list[str], ready: str, env: dict | None = None) -> None:
        self.args = args
        self.popen = subprocess.Popen(
            STYXGRID + args, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True,
            env={**os.environ, **(env or {})})
        self.lines: list[str] = []
        self.match = self.wait_for(ready)

    def wait_for(self, pattern: str) -> re.Match:
        """Read stderr lines (blocking) until one matches; fail if the process ends."""
        assert self.popen.stderr is not None
        for line in self.popen.stderr:
            self.lines.append(line)
            m = re.search(pattern, line)
            if m:
                return m
        raise AssertionError(f"{self.args} ended before {pattern!r}: {''.join(self.lines)}")

    def stop(self) -> None:
        if self.popen.poll() is None:
            self.popen.terminate()
            try:
                self.popen.wait(10)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()
        if self.popen.stderr:
            self.popen.stderr.close()


def p9probe(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SHARED_TOOLS / "p9probe.py"), *args],
                          capture_output=True, text=True, timeout=120)
