"""Job descriptions: the lines a user writes into /new, parsed and checked.

A description is a sequence of `key value` lines ended by `submit`:

    cmd ./sim
    args --seed $STYXGRID_TASK
    tasks 100
    requirements Memory >= 2048
    submit

or one line, `submit ./sim --seed 7`.  `Description.feed` takes whatever text one
write carried and returns the finished `JobSpec` at `submit`; any bad line raises
`DescriptionError` naming the line and what is wrong, and nothing is kept.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass, field
from typing import Any

from . import checks, resources, shellwords
from .ninep.errors import quoted
from .resources import DEFAULT_DISK, DEFAULT_MEMORY, MAX_CPUS, MAX_GPUS, MAX_SIZE, Need
from .shellwords import BLANKS

MAX_TASKS = 10_000_000
MAX_DESCRIPTION = 256 * 1024      # bytes written for one job, and its normal form
MAX_LINE = 128 * 1024             # bytes of one line
MAX_ARGS = 128 * 1024             # bytes of all arguments together
MAX_LIST = 256                    # env, input and output lines of one job, each
KEYS = ("cmd", "args", "tasks", "env", "dir", "input", "output", "requirements", "rank",
        "priority", "retries", "share", "speculate", "max_runtime", "checkpoint_exit", "checkpoint_every",
        "request_cpus", "request_memory", "request_disk", "request_gpus", "after", "submit")
MAX_PARENTS = 256                 # jobs one job waits for
SPECULATE = 3.0                   # a copy of a task running this many times the median
MAX_RUNTIME = 366 * 86400         # seconds: a max_runtime is at most a year
_FACTOR = re.compile(r"[0-9]{1,4}(\.[0-9]{1,2})?\Z")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_QUOTES = ("'", '"')


class DescriptionError(ValueError):
    """A description line is wrong; the message says which and why."""


def _check_text(key: str, value: str) -> None:
    if "\0" in value:
        raise DescriptionError(f"{key}: a NUL byte is not allowed")
    if "\n" in value or "\r" in value:
        raise DescriptionError(f"{key}: a line break is not allowed")


@dataclass(frozen=True)
class JobSpec:
    """A job as submitted: a command run as `tasks` tasks, and how to place them.

    Validated on construction (no NUL or line break in any text, counts and sizes
    within the limits above), so that `lines()` of any JobSpec reads back, through
    `from_lines`, to exactly the same JobSpec."""

    cmd: str
    args: tuple[str, ...] = ()
    tasks: int = 1
    env: tuple[tuple[str, str], ...] = ()
    dir: str = ""
    inputs: tuple[str, ...] = ()
    outputs: tuple[str, ...] = ()
    requirements: str = ""
    rank: str = ""
    priority: int = 0
    retries: int = 0
    share: bool = False                 # every user may read its files, not only its owner
    speculate: float = SPECULATE        # copy a task past this times the median run; 0: off
    max_runtime: int = 0                # seconds a task may run, then it fails; 0: no limit
    checkpoint_exit: int = 0            # this exit: checkpoint saved, run again; 0: none
    checkpoint_every: int = 0           # seconds between asked-for checkpoints; 0: never
    request_cpus: int = 1
    request_memory: int = DEFAULT_MEMORY    # MiB
    request_disk: int = DEFAULT_DISK        # MiB
    request_gpus: int = 0
    after: tuple[tuple[int, bool], ...] = ()    # (parent job, runs even if it failed)

    def __post_init__(self) -> None:
        if not self.cmd:
            raise DescriptionError("cmd: needs a program")
        texts: list[tuple[str, str]] = [("cmd", self.cmd), ("dir", self.dir),
                                        ("requirements", self.requirements),
                                        ("rank", self.rank)]
        texts += [("args", a) for a in self.args]
        texts += [("input", p) for p in self.inputs] + [("output", p) for p in self.outputs]
        texts += [("env", f"{k}={v}") for k, v in self.env]
        for key, value in texts:
            _check_text(key, value)
        if sum(len(a.encode()) + 1 for a in self.args) > MAX_ARGS:
            raise DescriptionError(f"args: more than {MAX_ARGS // 1024} KiB of arguments")
        for key, items in (("env", self.env), ("input", self.inputs), ("output", self.outputs)):
            if len(items) > MAX_LIST:
                raise DescriptionError(f"{key}: more than {MAX_LIST} lines")
        for name, _ in self.env:
            if not _ENV_NAME.match(name):
                raise DescriptionError(f"env: {quoted(name)} is not a variable name")
        for key, number, low, high in (("tasks", self.tasks, 1, MAX_TASKS),
                                       ("priority", self.priority, -1000, 1000),
                                       ("retries", self.retries, 0, 1000),
                                       ("max_runtime", self.max_runtime, 0, MAX_RUNTIME),
                                       ("checkpoint_exit", self.checkpoint_exit, 0, 255),
                                       ("checkpoint_every", self.checkpoint_every, 0,
                                        MAX_RUNTIME),
                                       ("request_cpus", self.request_cpus, 1, MAX_CPUS),
                                       ("request_memory", self.request_memory, 1, MAX_SIZE),
                                       ("request_disk", self.request_disk, 1, MAX_SIZE),
                                       ("request_gpus", self.request_gpus, 0, MAX_GPUS)):
            if type(number) is not int or not low <= number <= high:
                raise DescriptionError(f"{key}: {number} is out of range ({low}..{high})")
        if type(self.speculate) is not float or \
                not (self.speculate == 0 or 1.1 <= self.speculate <= 1000):
            raise DescriptionError(f"speculate: {self.speculate} is out of range (1.1..1000, "
                                   "or off)")
        if len(self.after) > MAX_PARENTS:
            raise DescriptionError(f"after: more than {MAX_PARENTS} parent jobs")
        for parent, anyway in self.after:
            if type(parent) is not int or not 1 <= parent <= checks.MAX_JOB or \
                    type(anyway) is not bool:
                raise DescriptionError(f"after: {parent} is not a job id")
        if len({parent for parent, _ in self.after}) != len(self.after):
            raise DescriptionError("after: a parent job is named twice")
        text = self._normal_form()
        if len(text) > MAX_DESCRIPTION // 4 and len(text.encode()) > MAX_DESCRIPTION:
            raise DescriptionError(f"description longer than {MAX_DESCRIPTION // 1024} KiB")
        object.__setattr__(self, "_lines", text)      # made once: it is sent and stored

    @property
    def need(self) -> Need:
        """What each of its tasks asks of a node."""
        return Need(self.request_cpus, self.request_memory, self.request_disk,
                    self.request_gpus)

    def lines(self) -> str:
        """The normalized description, one `key value` per line (what `desc` shows);
        every value quoted where it must be, so that it reads back exactly."""
        return self._lines  # type: ignore[attr-defined]

    def _normal_form(self) -> str:
        out = [f"cmd {shellwords.quote(self.cmd)}"]
        if self.args:
            out.append("args " + shellwords.join(self.args))
        out.append(f"tasks {self.tasks}")
        out += [f"env {k}={_word(v)}" for k, v in self.env]
        if self.dir:
            out.append(f"dir {_word(self.dir)}")
        out += [f"input {_word(p)}" for p in self.inputs]
        out += [f"output {_word(p)}" for p in self.outputs]
        if self.requirements:
            out.append(f"requirements {self.requirements}")
        if self.rank:
            out.append(f"rank {self.rank}")
        out.append(f"priority {self.priority}")
        out.append(f"retries {self.retries}")
        if self.share:
            out.append("share all")
        if self.speculate != SPECULATE:
            out.append(f"speculate {self.speculate:g}" if self.speculate else "speculate off")
        if self.max_runtime:
            out.append(f"max_runtime {self.max_runtime}")
        if self.checkpoint_exit:
            out.append(f"checkpoint_exit {self.checkpoint_exit}")
        if self.checkpoint_every:
            out.append(f"checkpoint_every {self.checkpoint_every}")
        if self.request_cpus != 1:
            out.append(f"request_cpus {self.request_cpus}")
        if self.request_memory != DEFAULT_MEMORY:
            out.append(f"request_memory {self.request_memory} MiB")
        if self.request_disk != DEFAULT_DISK:
            out.append(f"request_disk {self.request_disk} MiB")
        if self.request_gpus:
            out.append(f"request_gpus {self.request_gpus}")
        if self.after:
            out.append("after " + " ".join(f"{p}:any" if anyway else str(p)
                                           for p, anyway in self.after))
        return "\n".join(out) + "\n"

    @classmethod
    def from_lines(cls, text: str) -> "JobSpec":
        """Read back what `lines()` wrote (the store, a worker's task record)."""
        spec = Description().feed(text + "submit\n")
        if spec is None:
            raise DescriptionError("description without its end")
        return spec


def _word(value: str) -> str:
    """A one-word value as written: as it is, or in shell quotes when it starts
    with a quote or has blanks at either end (which a line would lose)."""
    if value and value == value.strip(BLANKS) and not value.startswith(_QUOTES):
        return value
    return shellwords.quote(value)


def _unword(key: str, value: str) -> str:
    """A one-word value as read: a value that starts with a quote is one shell
    word (quotes removed); any other is taken as it is, without blanks at its ends."""
    value = value.strip(BLANKS)
    if not value.startswith(_QUOTES):
        return value
    words = _split(key, value)
    if len(words) != 1:
        raise DescriptionError(f"{key}: want one quoted word, got {len(words)}")
    return words[0]


def _int(key: str, value: str, low: int, high: int) -> int:
    try:
        return checks.integer(key, value, low, high)
    except ValueError as exc:
        raise DescriptionError(str(exc)) from None


def _expression(key: str, value: str) -> str:
    """A ClassAd expression, checked with HTCondor's own parser."""
    try:
        import classad2
    except ImportError:
        raise DescriptionError(
            f"{key}: this scheduler cannot match ClassAd expressions: its host needs "
            "HTCondor's bindings (pip install 'styxgrid[match]')") from None
    try:
        classad2.ExprTree(value)
    except Exception as exc:  # classad2 raises its own ClassAdException and ValueError
        raise DescriptionError(f"{key}: cannot parse ClassAd expression {quoted(value)} "
                               f"({str(exc)[:200]})") from None
    return value


def _path(key: str, value: str) -> str:
    value = _unword(key, value)
    if not value:
        raise DescriptionError(f"{key}: needs a path")
    if ".." in value.split("/"):
        raise DescriptionError(f"{key}: {quoted(value)} may not contain '..'")
    if key in ("output", "dir") and value.startswith("/"):
        raise DescriptionError(f"{key}: {quoted(value)} must be a path in the task's "
                               "folder, not an absolute one")
    return value


def _split(key: str, value: str) -> list[str]:
    try:
        return shellwords.split(value)
    except shellwords.SplitError as exc:
        raise DescriptionError(f"{key}: {exc}") from None


@dataclass
class Description:
    """The lines written so far to one /new fid (or one CLI submission)."""

    fields: dict[str, Any] = field(default_factory=dict)
    partial: str = ""
    size: int = 0                      # characters taken since the last submit

    def feed(self, text: str) -> JobSpec | None:
        """Take the text of one write; return the JobSpec when `submit` is seen."""
        self.size += len(text)
        if self.size > MAX_DESCRIPTION:
            raise DescriptionError(f"description longer than {MAX_DESCRIPTION // 1024} KiB")
        if "\0" in text:
            raise DescriptionError("a NUL byte is not allowed in a description")
        text = self.partial + text
        lines = text.split("\n")
        self.partial = lines.pop()          # an unfinished last line waits for more
        if len(self.partial) > MAX_LINE:
            raise DescriptionError(f"a line longer than {MAX_LINE // 1024} KiB")
        if self.partial.strip(BLANKS) == "submit":
            lines.append(self.partial)      # `echo -n submit` still submits; a longer
            self.partial = ""               # line may be cut across writes: it waits
        for number, line in enumerate(lines, 1):
            if len(line) > MAX_LINE:
                raise DescriptionError(f"a line longer than {MAX_LINE // 1024} KiB")
            spec = self.line(line.strip(BLANKS))
            if spec is not None:
                if any(rest.strip(BLANKS) for rest in lines[number:]) or self.partial.strip(BLANKS):
                    raise DescriptionError("text after 'submit': one job per submit")
                self.size = 0
                return spec
        return None

    def line(self, line: str) -> JobSpec | None:
        if not line or line.startswith("#"):
            return None
        key, _, value = line.partition(" ")
        value = value.strip(BLANKS)
        f = self.fields
        if key == "submit":
            if value:
                words = _split(key, value)
                f["cmd"], f["args"] = words[0], tuple(words[1:])
            return self.finish()
        if key not in KEYS:
            close = difflib.get_close_matches(key[:64], KEYS, n=1)
            hint = f"did you mean {close[0]}?" if close else \
                "expected a key such as cmd, args, tasks, input, output, requirements, " \
                "request_memory or after"
            raise DescriptionError(f"unknown description line {quoted(key)}: {hint} "
                                   "(every key is in styxgrid(4))")
        if key == "cmd":
            words = _split(key, value)
            if not words:
                raise DescriptionError("cmd: needs a program")
            f["cmd"] = words[0]
            if words[1:]:
                f["args"] = tuple(words[1:])
        elif key == "args":
            f["args"] = tuple(_split(key, value))
        elif key == "tasks":
            f["tasks"] = _int(key, value, 1, MAX_TASKS)
        elif key == "env":
            name, eq, val = value.partition("=")
            if not eq or not _ENV_NAME.match(name):
                raise DescriptionError(f"env: want NAME=VALUE, got {quoted(value)}")
            f["env"] = f.get("env", ()) + ((name, _unword(key, val)),)
        elif key == "dir":
            f["dir"] = _path(key, value)
        elif key in ("input", "output"):
            plural = key + "s"
            f[plural] = f.get(plural, ()) + (_path(key, value),)
        elif key in ("requirements", "rank"):
            f[key] = _expression(key, value) if value else ""
        elif key == "priority":
            f["priority"] = _int(key, value, -1000, 1000)
        elif key == "retries":
            f["retries"] = _int(key, value, 0, 1000)
        elif key == "share":
            if value not in ("all", "none"):
                raise DescriptionError(f"share: want 'all' or 'none', got {quoted(value)}")
            f["share"] = value == "all"
        elif key == "speculate":
            if value == "off":
                f["speculate"] = 0.0
            elif _FACTOR.match(value) and 1.1 <= float(value) <= 1000:
                f["speculate"] = float(value)
            else:
                raise DescriptionError(f"speculate: want F (a number, 1.1..1000) or 'off', "
                                       f"got {quoted(value)}")
        elif key == "max_runtime":
            f["max_runtime"] = _int(key, value, 1, MAX_RUNTIME)
        elif key == "checkpoint_exit":
            f["checkpoint_exit"] = _int(key, value, 1, 255)
        elif key == "checkpoint_every":
            f["checkpoint_every"] = _int(key, value, 1, MAX_RUNTIME)
        elif key == "request_cpus":
            f[key] = _int(key, value, 1, MAX_CPUS)
        elif key == "request_gpus":
            f[key] = _int(key, value, 0, MAX_GPUS)
        elif key in ("request_memory", "request_disk"):
            f[key] = request_size(key, value)
        elif key == "after":
            f["after"] = f.get("after", ()) + tuple(parent(word) for word in value.split())
            if not value.split():
                raise DescriptionError("after: name the jobs to wait for (after 3 4:any)")
        return None

    def finish(self) -> JobSpec:
        fields, self.fields = self.fields, {}
        if "cmd" not in fields:
            raise DescriptionError("submit: no command (give 'cmd PROGRAM' or 'submit PROGRAM ARGS')")
        return JobSpec(**fields)


def request_size(key: str, value: str) -> int:
    """`request_memory` or `request_disk` in MiB: a plain number is MiB for
    memory and KiB for disk, as in HTCondor's submit files."""
    try:
        return resources.size(key, value, bare="k" if key == "request_disk" else "m")
    except ValueError as exc:
        raise DescriptionError(str(exc)) from None


def parent(word: str) -> tuple[int, bool]:
    """`3` (run after job 3 is done) or `3:any` (after it ends, however)."""
    number, colon, how = word.partition(":")
    if colon and how != "any":
        raise DescriptionError(f"after: want JOB or JOB:any, got {quoted(word)}")
    parent_id = checks.index(number)
    if parent_id is None or parent_id == 0:
        raise DescriptionError(f"after: {quoted(number)} is not a job id (1 to {checks.MAX_JOB}, "
                               "no leading zero)")
    return parent_id, bool(colon)


def check_new(spec: JobSpec) -> None:
    """What a new job must meet beyond the grammar (jobs stored before a rule came
    in still load).  Every task's outputs land in one folder, jobs/N/outputs/,
    under their last name: names that two tasks (or two lines) would share are
    refused, rather than leave a task that cannot store its output."""
    seen: dict[str, str] = {}
    tasks = spec.tasks
    for path in spec.outputs:
        name = path.rpartition("/")[2]
        for var in ("STYXGRID_TASK", "STYXGRID_JOB"):      # ${X} and $X are one name
            name = name.replace("${" + var + "}", "$" + var)
        if tasks > 1 and "$STYXGRID_TASK" not in name:
            raise DescriptionError(
                f"output {quoted(path)}: all {tasks} tasks would store it as outputs/{name}; "
                f"put $STYXGRID_TASK in its name (e.g. {_numbered(name)}) to keep one each")
        if name in seen:
            raise DescriptionError(f"output {quoted(path)}: {quoted(seen[name])} is stored "
                                   f"as outputs/{name} too; give them different names")
        seen[name] = path


def _numbered(name: str) -> str:
    stem, dot, ext = name.rpartition(".")
    return f"{stem}.$STYXGRID_TASK.{ext}" if dot and stem else f"{name}.$STYXGRID_TASK"
