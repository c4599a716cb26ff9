"""What the scheduler's core keeps: jobs and their tasks' states, groups of jobs
with the same requirements, workers, and the assignments between them.

Data structures are chosen for the targets of DESIGN.md:
- a job keeps its tasks' states in a bytearray and exit codes in an array, and
  hands out fresh task indices from a counter, so a million-task job is a few MB;
- tasks with the same `requirements` form a group; each group keeps a heap of its
  jobs that have queued tasks (priority, then submission) and the set of matching
  workers that are asking for work and have a free slot, updated when that
  changes, so a dispatch looks at the groups one worker matches, never at every
  worker or task.
"""

from __future__ import annotations

from array import array
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from .. import allowlist
from ..describe import JobSpec
from ..resources import UNLIMITED, Need

QUEUED, RUNNING, DONE, FAILED, KILLED, HELD = range(6)
STATE_NAMES = ("queued", "running", "done", "failed", "killed", "held")
FINISHED = frozenset((DONE, FAILED, KILLED))
EXITED = frozenset((DONE, FAILED))      # finished with an exit status of their own


def _table(change: dict[int, int]) -> bytes:
    """A bytes.translate table that changes these states and keeps the others."""
    return bytes(change.get(s, s) for s in range(256))


# Verbs on every task of a job are one translate of its states, in C, whatever
# the number of tasks (a 10,000,000-task hold is a few ms, not seconds).
KILL = _table({QUEUED: KILLED, RUNNING: KILLED, HELD: KILLED})
HOLD = _table({QUEUED: HELD})
RELEASE = _table({HELD: QUEUED})
RETRY = {False: _table({FAILED: QUEUED}), True: _table({FAILED: HELD})}
MAX_LOSSES = 3


class CoreError(ValueError):
    """A ctl verb that cannot apply (unknown job, wrong state); the text says why."""


def classad_of(attrs: dict[str, Any]) -> Any:
    """The worker's ad for matchmaking; None where HTCondor's package is missing
    (then no job has requirements or rank: they are refused at submit)."""
    try:
        import classad2
    except ImportError:
        return None
    try:
        return classad2.ClassAd(attrs)
    except Exception as exc:    # classad2's own errors: the ad is refused, named
        raise ValueError(f"join: the ad cannot be built: {str(exc)[:200]}") from None


def expression(text: str):
    import classad2
    return classad2.ExprTree(text)


def split_clauses(requirements: str) -> list[str]:
    """The top-level `&&` clauses of an expression (parentheses and strings respected)."""
    clauses, depth, quote, start, i = [], 0, False, 0, 0
    while i < len(requirements):
        ch = requirements[i]
        if ch == '"' and (i == 0 or requirements[i - 1] != "\\"):
            quote = not quote
        elif not quote and ch == "(":
            depth += 1
        elif not quote and ch == ")":
            depth -= 1
        elif not quote and depth == 0 and requirements.startswith("&&", i):
            clauses.append(requirements[start:i].strip())
            start = i + 2
            i += 1
        i += 1
    clauses.append(requirements[start:].strip())
    return [c for c in clauses if c]


@dataclass(eq=False)
class Job:
    id: int
    spec: JobSpec
    owner: str
    priority: int
    state: bytearray
    exit: array
    counts: list[int]
    next_fresh: int = 0                       # tasks >= this index were never handed out
    requeued: deque = field(default_factory=deque)
    running: dict[int, str] = field(default_factory=dict)    # task -> worker
    # task -> when it was leased, oldest first (so a scan for slow ones stops early)
    started: dict[int, float] = field(default_factory=dict)
    copies: dict[int, list[str]] = field(default_factory=dict)   # task -> workers of copies
    runtimes: deque = field(default_factory=lambda: deque(maxlen=1001))  # of done tasks
    median: tuple[int, float] = (0, 0.0)     # (runtimes it was worked out of, median)
    losses: dict[int, int] = field(default_factory=dict)
    failures: dict[int, int] = field(default_factory=dict)
    evictions: dict[int, int] = field(default_factory=dict)  # vacated by owners: no failure
    elsewhere: dict[int, str] = field(default_factory=dict)  # lost/failed/vacated there: not again first
    checkpoints: dict[int, int] = field(default_factory=dict)  # task -> bytes of its kept one
    reasons: dict[int, str] = field(default_factory=dict)
    held: bool = False
    killed: bool = False                      # killed tasks never run again: no retry
    note: str = ""                            # why all its tasks failed, if it was not loaded
    waiting: dict[int, bool] = field(default_factory=dict)   # parent jobs still to end
    heap_key: tuple[int, int] | None = None  # the entry this job has in its group's heap
    group: "Group | None" = None              # the group whose heap holds that entry

    @property
    def finished(self) -> bool:
        return sum(self.counts[s] for s in FINISHED) == self.spec.tasks

    @property
    def queued(self) -> int:
        return self.counts[QUEUED]

    @property
    def runnable(self) -> bool:
        """Whether its queued tasks may be handed out now."""
        return bool(self.counts[QUEUED]) and not self.held and not self.waiting

    @property
    def state_name(self) -> str:
        c = self.counts
        if self.finished:
            return "failed" if c[FAILED] else "killed" if c[KILLED] else "done"
        if c[RUNNING]:
            return "running"
        if self.held or (c[HELD] and not c[QUEUED]):
            return "held"
        if self.waiting:
            return "waiting"
        return "queued"

    def status_line(self) -> str:
        c = self.counts
        return (f"{self.id} {self.state_name} tasks={self.spec.tasks} queued={c[QUEUED]} "
                f"running={c[RUNNING]} done={c[DONE]} failed={c[FAILED]} killed={c[KILLED]} "
                f"held={c[HELD]} owner={self.owner}")

    def exit_of(self, index: int) -> int:
        """A finished task's exit status: a killed task's is -1 (whatever an earlier,
        retried run left in `exit`: retry does not touch each task)."""
        return -1 if self.state[index] == KILLED else self.exit[index]

    def set_state(self, index: int, new: int) -> None:
        self.counts[self.state[index]] -= 1
        self.state[index] = new
        self.counts[new] += 1

    def pop_queued(self) -> int | None:
        """The next queued task index: requeued ones first, then fresh ones."""
        while self.requeued:
            index = self.requeued.popleft()
            if self.state[index] == QUEUED:
                return index
        index = self.state.find(QUEUED, self.next_fresh)    # memchr: skips in C
        if index < 0:
            self.next_fresh = self.spec.tasks
            return None
        self.next_fresh = index + 1
        return index

    def rewind(self) -> None:
        """Queued tasks below `next_fresh` (released, retried) are found again."""
        first = self.state.find(QUEUED, 0, self.next_fresh)
        if first >= 0:
            self.next_fresh = first


@dataclass(frozen=True)
class Assignment:
    """Task `index` of `job` is leased to `worker` (`copy`: as a copy of a slow
    task that runs elsewhere too)."""

    worker: str
    job: int
    index: int
    copy: bool = False


@dataclass(eq=False)
class Group:
    """Jobs with the same requirements, program (allowlist.job_program) and
    requests: a worker matches all of them or none, and has room for all or none."""

    requirements: str
    program: allowlist.Program
    need: Need
    expr: Any
    queues: dict[str, list] = field(default_factory=dict)  # user -> heap of (-priority, job id)
    idle: dict[str, None] = field(default_factory=dict)  # matching workers that would take one
    tails: dict[int, None] = field(default_factory=dict)  # jobs running with none queued

    @property
    def lowered(self) -> str:
        """The requirements in lower case: ClassAd attribute names ignore case."""
        return self.requirements.lower()

    def matches(self, worker: "Worker") -> bool:
        if not self.need.fits(worker.total) or not worker.runs(self.program):
            return False
        if self.expr is None:
            return True
        return worker.eval(self.expr) is True


@dataclass(eq=False)
class Worker:
    name: str
    attrs: dict[str, Any]
    ad: Any
    slots: int                                # its cpus
    lease: int                                # most tasks held at once (>= slots: some wait)
    total: Need = Need(1, UNLIMITED, UNLIMITED, 0)    # what it offers tasks in all
    # held (leased, not reported) -> what each asks: the sum is `used`
    running: dict[tuple[int, int], Need] = field(default_factory=dict)
    used: list[int] = field(default_factory=lambda: [0, 0, 0, 0])
    groups: list[Group] = field(default_factory=list)
    draining: bool = False
    asking: bool = False                      # a read of /work waits for tasks
    listed: bool = False                      # in the `idle` of some of its groups
    recent: int = 0                           # the job it last reported a task of
    allow: tuple[str, ...] = ()               # its owner's allow list (from its ad)
    owner: str = "away"                       # the desktop owner: away, suspended, ...

    def __post_init__(self) -> None:
        allow = self.attrs.get("Allow")
        self.allow = allowlist.parse_globs(allow) if isinstance(allow, str) else ()

    def runs(self, program: allowlist.Program) -> bool:
        """Whether its owner's allow list may let it run `program`."""
        if not self.allow:
            return True
        path, folders = self.attrs.get("TaskPath"), self.attrs.get("TaskFolders")
        return allowlist.could_run(program, self.allow, path if isinstance(path, str) else "",
                                   folders if isinstance(folders, str) else "")

    @property
    def taking(self) -> bool:
        """Whether it would take a task that fits it now."""
        return self.asking and not self.draining and len(self.running) < self.lease

    @property
    def idle(self) -> int:
        """How many tasks of one cpu it would take now: its free cpus."""
        return max(0, self.total[0] - self.used[0]) if self.taking else 0

    def fits(self, need: Need) -> bool:
        """Whether a task asking `need` fits in what its held tasks leave free."""
        used, total = self.used, self.total
        return (need[0] + used[0] <= total[0] and need[1] + used[1] <= total[1]
                and need[2] + used[2] <= total[2] and need[3] + used[3] <= total[3])

    def free(self) -> Need:
        return Need(*(max(0, t - u) for t, u in zip(self.total, self.used)))

    def eval(self, expr: Any) -> Any:
        try:
            return expr.eval(self.ad)
        except Exception:  # classad2 raises on evaluation errors: no match
            return None
