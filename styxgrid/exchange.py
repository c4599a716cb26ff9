"""The labour exchange on /work: what a worker and the scheduler say to each other.

Records in the h11 style, as `ninep/messages.py` is for 9P: frozen, each with
`encode` to bytes, and parsers that take what arrived and give records or raise
`ExchangeError`, whose text names the bad line.  No I/O.  Both sides use only
this module; the whole grammar is in styxgrid(4), "The labour exchange".

    worker -> scheduler, control fid:  Join (once), Heartbeat,
                                       Lease, Output, Done, Vacated, Held,
                                       Checkpoint (a report write)
    scheduler -> worker, control fid:  Kill (orders)
    scheduler -> worker, other fids:   TaskRecord (a lease of tasks)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Union

from . import checks
from .adtext import literal
from .resources import MAX_GPUS, MAX_SIZE, UNLIMITED, Need
from .ninep.errors import quoted

STREAMS = ("stdout", "stderr")
MAX_SLOTS = 4096            # slots of one worker
MAX_LEASE = 16384           # the most tasks one worker may hold at once
MAX_LOAD = 1_000_000        # a load average past this is not believed
MAX_OUTPUT = 1 << 40        # a task's stdout or stderr ends before 1 TiB
MAX_REASON = 1000           # characters of a report's reason that are kept
MAX_CHECKPOINT = 1 << 30    # bytes of one task's checkpoint (a tar of its folder)
REPLACED = "replaced: another worker joined as"   # the start of the answer to an evicted one


class ExchangeError(ValueError):
    """What arrived breaks the exchange's grammar or limits; the text says where."""


def _text(data: bytes | str) -> str:
    if isinstance(data, str):
        return data
    try:
        return data.decode()
    except UnicodeDecodeError:
        raise ExchangeError("not UTF-8 text") from None


def _number(what: str, text: str, low: int, high: int) -> int:
    try:
        return checks.integer(what, text, low, high)
    except ValueError as exc:
        raise ExchangeError(str(exc)) from None


def _task(verb: str, job: str, task: str) -> tuple[int, int]:
    return (_number(f"{verb}: job", job, 0, checks.MAX_JOB),
            _number(f"{verb}: task", task, 0, checks.MAX_JOB))


# ------------------------------------------------------------------ the join

@dataclass(frozen=True, slots=True)
class Join:
    """The first write on a worker's control fid: who it is, how many cpus
    (`slots`) it offers and how many tasks it may hold, what memory, disk and
    GPUs it offers for tasks, its ClassAd, and the tasks it still holds."""

    name: str
    slots: int = 1
    lease: int | None = None                     # None: as many as its slots
    attrs: tuple[tuple[str, Any], ...] = ()      # values as ClassAd literals hold them
    running: tuple[tuple[int, int], ...] = ()
    memory: int = UNLIMITED                      # MiB for tasks (not said: no limit known)
    disk: int = UNLIMITED                        # MiB
    gpus: int = 0

    @property
    def offer(self) -> Need:
        return Need(self.slots, self.memory, self.disk, self.gpus)

    def encode(self) -> bytes:
        lines = [f"join {self.name}", f"slots {self.slots}"]
        if self.lease is not None:
            lines.append(f"lease {self.lease}")
        if (self.memory, self.disk, self.gpus) != (UNLIMITED, UNLIMITED, 0):
            lines.append(f"offer memory={self.memory} disk={self.disk} gpus={self.gpus}")
        lines += [f"attr {k} = {literal(v)}" for k, v in self.attrs]
        lines += [f"running {j} {t}" for j, t in self.running]
        return ("\n".join(lines) + "\n").encode()

    @classmethod
    def parse(cls, data: bytes | str) -> "Join":
        name, slots, lease = "", 1, None
        offer = {"memory": UNLIMITED, "disk": UNLIMITED, "gpus": 0}
        attrs: dict[str, Any] = {}
        running: list[tuple[int, int]] = []
        said: set[str] = set()                  # join, slots, lease, offer: once each
        for line in _text(data).split("\n"):
            key, _, value = line.strip().partition(" ")
            value = value.strip()
            if not key:
                continue
            if key in said:
                raise ExchangeError(f"join: {key} said twice")
            if key in ("join", "slots", "lease", "offer"):
                said.add(key)
            if key == "join":
                try:
                    name = checks.node_name(value)
                except ValueError as exc:
                    raise ExchangeError(str(exc)) from None
            elif key == "slots":
                slots = _number("join: slots", value, 1, MAX_SLOTS)
            elif key == "lease":
                lease = Lease.size_of(value)
            elif key == "offer":
                offered: set[str] = set()
                for word in value.split():
                    what, eq, number = word.partition("=")
                    if not eq or what not in offer:
                        raise ExchangeError(f"bad join line {quoted(line)}: want "
                                            "'offer memory=MIB disk=MIB gpus=N'")
                    if what in offered:
                        raise ExchangeError(f"join: offer {what} said twice")
                    offered.add(what)
                    offer[what] = _number(f"join: offer {what}", number,
                                          0, MAX_GPUS if what == "gpus" else MAX_SIZE)
            elif key == "attr":
                attr, eq, written = value.partition("=")
                if not eq:
                    raise ExchangeError(f"bad attribute line {quoted(line)}: "
                                        "want 'attr Name = value'")
                if attr.strip().lower() in {a.lower() for a in attrs}:   # names ignore case
                    raise ExchangeError(f"join: attribute {attr.strip()} said twice")
                try:
                    attrs[attr.strip()] = checks.attribute(attr.strip(), written)
                except ValueError as exc:
                    raise ExchangeError(str(exc)) from None
                if len(attrs) > checks.MAX_ATTRS:
                    raise ExchangeError(f"join: more than {checks.MAX_ATTRS} attributes")
            elif key == "running":
                words = value.split()
                if len(words) != 2:
                    raise ExchangeError(f"bad join line {quoted(line)}: want 'running J T'")
                running.append(_task("running", words[0], words[1]))
            else:
                raise ExchangeError(f"unknown join line {quoted(line)}")
        if not name:
            raise ExchangeError("join: needs a worker name")
        return cls(name, slots, lease, tuple(attrs.items()), tuple(running), **offer)


OWNER_STATES = ("away", "suspended", "vacating", "back")   # the desktop owner, as a worker sees


@dataclass(frozen=True, slots=True)
class Heartbeat:
    """`heartbeat load=L owner=STATE`: alive, the machine's load average, and
    what the owner's return did to its tasks (away: nothing; suspended;
    vacating; back: vacated, and taking no work till the owner goes)."""

    load: float | None = None
    owner: str = "away"

    def encode(self) -> bytes:
        words = ["heartbeat"]
        if self.load is not None:
            words.append(f"load={self.load:.2f}")
        if self.owner != "away":
            words.append(f"owner={self.owner}")
        return " ".join(words).encode()

    @classmethod
    def parse(cls, data: bytes | str) -> "Heartbeat":
        words = _text(data).split()
        if words[:1] != ["heartbeat"]:
            raise ExchangeError(f"bad heartbeat {quoted(' '.join(words))}")
        load, owner = None, "away"
        for word in words[1:]:                  # other keys are for later versions
            key, _, value = word.partition("=")
            if key == "owner":
                if value not in OWNER_STATES:
                    raise ExchangeError(f"heartbeat: owner {quoted(value)} is not one of "
                                        f"{', '.join(OWNER_STATES)}")
                owner = value
            elif key == "load":
                try:
                    load = checks.attribute("LoadAvg", value)
                except ValueError as exc:
                    raise ExchangeError(str(exc)) from None
                if type(load) not in (int, float) or not 0 <= load <= MAX_LOAD:
                    raise ExchangeError(f"heartbeat: load {quoted(value)} is not a number "
                                        f"in 0..{MAX_LOAD}")
        return cls(load, owner)


# ------------------------------------------------------------------ a report write

@dataclass(frozen=True, slots=True)
class Lease:
    """`lease L`: the worker holds up to L tasks from now on (0: none for now)."""

    size: int

    def encode(self) -> bytes:
        return f"lease {self.size}\n".encode()

    @staticmethod
    def size_of(text: str) -> int:
        return _number("lease", text.strip(), 0, MAX_LEASE)


@dataclass(frozen=True, slots=True)
class Output:
    """`output J T STREAM OFFSET SIZE` and SIZE bytes: a piece of a task's stream."""

    job: int
    task: int
    stream: str
    offset: int
    data: bytes

    def encode(self) -> bytes:
        return (f"output {self.job} {self.task} {self.stream} {self.offset} "
                f"{len(self.data)}\n").encode() + self.data


@dataclass(frozen=True, slots=True)
class Done:
    """`done J T STATUS [REASON]`: the task ended with STATUS (minus a signal)."""

    job: int
    task: int
    status: int
    reason: str = ""

    def encode(self) -> bytes:
        reason = " ".join(self.reason.split())             # one line, whatever it says
        return f"done {self.job} {self.task} {self.status} {reason}".strip().encode() + b"\n"


@dataclass(frozen=True, slots=True)
class Vacated:
    """`vacated J T [REASON]`: the owner took the machine back; the task did not
    end and goes back to the queue (an eviction, not a failure)."""

    job: int
    task: int
    reason: str = ""

    def encode(self) -> bytes:
        reason = " ".join(self.reason.split())
        return f"vacated {self.job} {self.task} {reason}".strip().encode() + b"\n"


@dataclass(frozen=True, slots=True)
class Held:
    """`held J T REASON`: the task broke a limit of its requests (memory, disk)
    and was stopped; it is held with the reason, for its owner to change the
    request and release it (running it again as it is would end the same way)."""

    job: int
    task: int
    reason: str

    def encode(self) -> bytes:
        reason = " ".join(self.reason.split())
        return f"held {self.job} {self.task} {reason}".strip().encode() + b"\n"


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """`checkpoint J T SIZE`: the task's checkpoint, uploaded to its `checkpoint`
    file, is whole at SIZE bytes: it replaces the one kept before."""

    job: int
    task: int
    size: int

    def encode(self) -> bytes:
        return f"checkpoint {self.job} {self.task} {self.size}\n".encode()


Report = Union[Lease, Output, Done, Vacated, Held, Checkpoint]


def parse_reports(data: bytes) -> list[Report]:
    """One write on the control fid after the join: every line checked before any is
    carried out (the caller acts only on a whole list)."""
    out: list[Report] = []
    at = 0
    while at < len(data):
        end = data.find(b"\n", at)
        end = len(data) if end < 0 else end
        text, at = _text(data[at:end]), end + 1
        words = text.split()
        if not words:
            continue
        try:
            if words[0] == "lease" and len(words) == 2:
                out.append(Lease(Lease.size_of(words[1])))
            elif words[0] == "output" and len(words) == 6 and words[3] in STREAMS:
                jid, index = _task("output", words[1], words[2])
                offset = _number("output: offset", words[4], 0, MAX_OUTPUT)
                size = _number("output: size", words[5], 0, MAX_OUTPUT - offset)
                if at + size > len(data):
                    raise ExchangeError("the write ends before its SIZE bytes")
                out.append(Output(jid, index, words[3], offset, data[at:at + size]))
                at += size
            elif words[0] == "done" and len(words) >= 4:
                words = text.split(None, 4)
                jid, index = _task("done", words[1], words[2])
                status = _number("done: status", words[3], checks.MIN_STATUS,
                                 checks.MAX_STATUS)
                out.append(Done(jid, index, status, words[4][:MAX_REASON]
                                if len(words) > 4 else ""))
            elif words[0] == "checkpoint" and len(words) == 4:
                jid, index = _task("checkpoint", words[1], words[2])
                out.append(Checkpoint(jid, index, _number("checkpoint: size", words[3], 0,
                                                          MAX_CHECKPOINT)))
            elif words[0] == "vacated" and len(words) >= 3:
                words = text.split(None, 3)
                jid, index = _task("vacated", words[1], words[2])
                out.append(Vacated(jid, index, words[3][:MAX_REASON] if len(words) > 3 else ""))
            elif words[0] == "held" and len(words) >= 4:
                words = text.split(None, 3)
                jid, index = _task("held", words[1], words[2])
                out.append(Held(jid, index, words[3][:MAX_REASON]))
            else:
                raise ExchangeError("want 'done J T STATUS [REASON]', 'vacated J T [REASON]', "
                                    "'held J T REASON', "
                                    "'output J T STREAM OFFSET SIZE', 'checkpoint J T SIZE' "
                                    "or 'lease L'")
        except ExchangeError as exc:
            raise ExchangeError(f"bad report {quoted(text)}: {exc}") from None
    return out


# ------------------------------------------------------------------ the scheduler's side

@dataclass(frozen=True, slots=True)
class Kill:
    """`kill J T`: an order on the control fid; the task's process group goes."""

    job: int
    task: int

    def encode(self) -> bytes:
        return f"kill {self.job} {self.task}\n".encode()


def parse_orders(data: bytes) -> list[Kill]:
    """A read of the control fid: its orders (lines of kinds this worker does not
    know are for later versions, and are passed over)."""
    out = []
    for line in _text(data).split("\n"):
        words = line.split()
        if len(words) == 3 and words[0] == "kill":
            out.append(Kill(*_task("kill", words[1], words[2])))
    return out


@dataclass(frozen=True, slots=True)
class TaskRecord:
    """`task J T N OWNER SIZE [checkpoint]` and SIZE bytes of the job's
    description: one task leased (N is the job's number of tasks; OWNER the user
    whose job it is, so that a worker never runs two users' tasks as one uid;
    `checkpoint`: the task has one kept, to restore before it starts)."""

    job: int
    task: int
    tasks: int
    owner: str
    description: bytes
    checkpoint: bool = False

    def __post_init__(self) -> None:
        try:
            checks.user_name(self.owner)
        except ValueError as exc:
            raise ExchangeError(f"task record: {exc}") from None

    def encode(self) -> bytes:
        return self.head(self.job, self.task, self.tasks, self.owner,
                         len(self.description), self.checkpoint) + self.description

    @staticmethod
    def head(job: int, task: int, tasks: int, owner: str, size: int,
             checkpoint: bool = False) -> bytes:
        """The record's first line alone: the scheduler sends one description,
        made once per job, after each task's own line."""
        flag = " checkpoint" if checkpoint else ""
        return f"task {job} {task} {tasks} {owner} {size}{flag}\n".encode()


def parse_tasks(data: bytes) -> list[TaskRecord]:
    out, at = [], 0
    while at < len(data):
        end = data.find(b"\n", at)
        words = data[at:end].split() if end >= 0 else []
        try:
            if len(words) not in (6, 7) or words[0] != b"task" or words[6:] not in \
                    ([], [b"checkpoint"]):
                raise ValueError
            job, task, tasks, size = int(words[1]), int(words[2]), int(words[3]), int(words[5])
            if min(job, task, tasks, size) < 0:
                raise ValueError
            owner = words[4].decode("ascii")
        except ValueError:
            raise ExchangeError(f"bad task record {data[at:at + 80]!r}") from None
        text, at = data[end + 1:end + 1 + size], end + 1 + size
        if len(text) != size:
            raise ExchangeError(f"task record cut short: {len(text)} of {size} bytes")
        out.append(TaskRecord(job, task, tasks, owner, text, len(words) == 7))
    return out
