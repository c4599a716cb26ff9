"""Shared test helpers: real processes of ours, started and waited on properly."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
from pathlib import Path

import trio

from styxgrid.api import GridClient

REPO = Path(__file__).resolve().parent.parent
STYXGRID = [sys.executable, "-m", "styxgrid"]


class Proc:
    """A styxgrid process whose stderr announces readiness with a known line."""

    def __init__(self, args: list[str], ready: str, env: dict | None = None) -> None:
        self.args = args
        self.popen = subprocess.Popen(
            STYXGRID + args, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True,
            env={**os.environ, **(env or {})})
        self.lines: list[str] = []
        self.more = threading.Condition()     # notified with each line read after ready
        self.match = self.wait_for(ready)
        # keep reading its stderr: a server that logs much must never block on a full pipe
        threading.Thread(target=self.keep_reading, daemon=True).start()

    def keep_reading(self) -> None:
        assert self.popen.stderr is not None
        try:
            for line in self.popen.stderr:
                with self.more:
                    self.lines.append(line)
                    self.more.notify_all()
        except (ValueError, OSError):          # closed by stop()
            pass

    def said(self, text: str, timeout: float = 60) -> bool:
        """Wait (blocking) until a line of its stderr holds `text`."""
        with self.more:
            return self.more.wait_for(lambda: any(text in line for line in self.lines),
                                      timeout)

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


TIMEOUT = 60


async def submit(client, text: str) -> int:
    """The clone idiom: write a description to /new, read the job id on the same fid."""
    return await GridClient(client).submit(text)


async def wait(client, job: int) -> str:
    """The job's final status line, once it is finished (reading `wait`)."""
    with trio.fail_after(TIMEOUT):
        return (await client.read_file(f"jobs/{job}/wait")).decode()
