"""The scheduler's event log: one line per state change, read like acme's log file.

A reader starts at the moment it opens (`cursor()`), reads every line after that,
and waits when it has seen them all.  The log keeps the last `keep` lines in
memory; a reader that falls further behind is told how many it missed.

Every line also goes to the `styxgrid.scheduler` logger as key=value words (the
operator's log, `-v`): job and node changes at INFO, each task's at DEBUG (`-vv`).
"""

from __future__ import annotations

import itertools
import logging
import re
import time
from collections import deque

from ..checks import shown
from ..ninep.tree import Signal


log = logging.getLogger("styxgrid.scheduler")
_SUBJECT = re.compile(r"(job|node) (\S+)(?: task (\d+))?")


def key_values(text: str) -> str:
    """`job 3 task 0 running node=w1` as `job=3 task=0 running node=w1`."""
    text = shown(text)
    m = _SUBJECT.match(text)
    if m is None:
        return text
    words = f"{m[1]}={m[2]}" + (f" task={m[3]}" if m[3] is not None else "")
    return words + text[m.end():]


class EventLog:
    def __init__(self, keep: int = 65536) -> None:
        self.lines: deque[tuple[int, bytes]] = deque(maxlen=keep)   # (job or 0, line)
        self.next_seq = 0                   # sequence number of the next line
        self.changed = Signal()             # fired when a line is added

    @property
    def first_seq(self) -> int:
        return self.next_seq - len(self.lines)

    def cursor(self) -> int:
        return self.next_seq

    def add(self, job: int, text: str) -> None:
        self.lines.append((job, f"{time.time():.3f} {text}\n".encode()))
        self.next_seq += 1
        self.changed.fire()
        level = logging.DEBUG if " task " in text else logging.INFO
        if log.isEnabledFor(level):
            log.log(level, "%s", key_values(text))

    def after(self, start: int):
        """The lines from position `start` on, reached from the nearer end of the deque
        (a reader that keeps up is near the right end)."""
        lines = self.lines
        if start > len(lines) // 2:
            return reversed(list(itertools.islice(reversed(lines), len(lines) - start)))
        return itertools.islice(lines, start, None)

    def take(self, cursor: int, job: int, count: int) -> tuple[bytes, int]:
        """Lines from `cursor` on (of `job` only, unless 0), at most `count` bytes but
        at least one line; returns them and the new cursor."""
        out: list[bytes] = []
        size = 0
        if cursor < self.first_seq:
            missed = self.first_seq - cursor
            out.append(f"{time.time():.3f} ({missed} events dropped: reader too slow)\n".encode())
            size = len(out[0])
            cursor = self.first_seq
        for line_job, line in self.after(cursor - self.first_seq):
            if job and line_job != job:
                cursor += 1
                continue
            if out and size + len(line) > count:
                break
            out.append(line)
            size += len(line)
            cursor += 1
        return b"".join(out), cursor
