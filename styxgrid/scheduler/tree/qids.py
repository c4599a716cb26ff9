"""Qid paths of the served tree: the kind of file in the low byte, then the job
(32 bits) and the task + 1 (24 bits), or a node's number.

The values are part of what clients see (a kernel's cache keys on them), so each
kind has its value written out, and a node's number is a hash of its name that
does not change when the scheduler restarts.
"""

from __future__ import annotations

import hashlib
from enum import IntEnum


class Kind(IntEnum):
    ROOT = 0
    NEW = 1
    CTL = 2
    STATS = 3
    EVENTS = 4
    JOBS = 5
    NODES = 6
    WORK = 7
    JOB = 8
    JOBCTL = 9
    DESC = 10
    STATUS = 11
    WAIT = 12
    STDOUT = 13
    STDERR = 14
    JEVENTS = 15
    WHY = 16
    TASKS = 17
    INPUTS = 18
    TASK = 19
    TSTATUS = 20
    TNODE = 21
    TSTDOUT = 22
    TSTDERR = 23
    TEXIT = 24
    INDEX = 25
    NODE = 26
    NSTATUS = 27
    NAD = 28
    NCTL = 29
    TCHECKPOINT = 30
    USERS = 31
    UINDEX = 32
    USER = 33
    USTATUS = 34
    UCTL = 35


def qpath(kind: Kind, job: int = 0, task: int = -1) -> int:
    return int(kind) | (job & 0xFFFFFFFF) << 8 | ((task + 1) & 0xFFFFFF) << 40


def node_path(kind: Kind, name: str) -> int:
    """A node's files: 56 bits of a hash of its name (the same after a restart;
    two names of 10,000 share one with odds of about 1 in 10^9)."""
    number = int.from_bytes(hashlib.blake2b(name.encode(), digest_size=7).digest(), "big")
    return int(kind) | number << 8
