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

import shlex
from dataclasses import dataclass, field

MAX_TASKS = 10_000_000
KEYS = ("cmd", "args", "tasks", "env", "dir", "input", "output", "requirements", "rank",
        "priority", "retries", "submit")


class DescriptionError(ValueError):
    """A description line is wrong; the message says which and why."""


@dataclass(frozen=True)
class JobSpec:
    """A job as submitted: a command run as `tasks` tasks, and how to place them."""

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

    def lines(self) -> str:
        """The normalized description, one `key value` per line (what `desc` shows)."""
        out = [f"cmd {self.cmd}"]
        if self.args:
            out.append("args " + shlex.join(self.args))
        out.append(f"tasks {self.tasks}")
        out += [f"env {k}={v}" for k, v in self.env]
        if self.dir:
            out.append(f"dir {self.dir}")
        out += [f"input {p}" for p in self.inputs]
        out += [f"output {p}" for p in self.outputs]
        if self.requirements:
            out.append(f"requirements {self.requirements}")
        if self.rank:
            out.append(f"rank {self.rank}")
        out.append(f"priority {self.priority}")
        out.append(f"retries {self.retries}")
        return "\n".join(out) + "\n"

    @classmethod
    def from_lines(cls, text: str) -> "JobSpec":
        """Read back what `lines()` wrote (used when the store is loaded)."""
        spec = Description().feed(text + "submit\n")
        assert spec is not None
        return spec


def _int(key: str, value: str, low: int, high: int) -> int:
    try:
        n = int(value)
    except ValueError:
        raise DescriptionError(f"{key}: {value!r} is not a whole number") from None
    if not low <= n <= high:
        raise DescriptionError(f"{key}: {n} is out of range ({low}..{high})")
    return n


def _expression(key: str, value: str) -> str:
    """A ClassAd expression, checked with HTCondor's own parser."""
    import classad2
    try:
        classad2.ExprTree(value)
    except Exception as exc:  # classad2 raises its own ClassAdException and ValueError
        raise DescriptionError(f"{key}: cannot parse ClassAd expression {value!r} ({exc})") \
            from None
    return value


def _path(key: str, value: str) -> str:
    if not value or "\0" in value:
        raise DescriptionError(f"{key}: needs a path")
    if key in ("input", "output") and ".." in value.split("/"):
        raise DescriptionError(f"{key}: {value!r} may not contain '..'")
    return value


def _split(key: str, value: str) -> list[str]:
    try:
        return shlex.split(value)
    except ValueError as exc:
        raise DescriptionError(f"{key}: {exc}") from None


@dataclass
class Description:
    """The lines written so far to one /new fid (or one CLI submission)."""

    fields: dict = field(default_factory=dict)
    partial: str = ""

    def feed(self, text: str) -> JobSpec | None:
        """Take the text of one write; return the JobSpec when `submit` is seen."""
        text = self.partial + text
        lines = text.split("\n")
        self.partial = lines.pop()          # an unfinished last line waits for more
        if self.partial.strip().split(" ", 1)[0] == "submit":
            lines.append(self.partial)      # `echo -n submit` still submits
            self.partial = ""
        for number, line in enumerate(lines, 1):
            spec = self.line(line.strip())
            if spec is not None:
                if any(rest.strip() for rest in lines[number:]) or self.partial.strip():
                    raise DescriptionError("text after 'submit': one job per submit")
                return spec
        return None

    def line(self, line: str) -> JobSpec | None:
        if not line or line.startswith("#"):
            return None
        key, _, value = line.partition(" ")
        value = value.strip()
        f = self.fields
        if key == "submit":
            if value:
                words = _split(key, value)
                f["cmd"], f["args"] = words[0], tuple(words[1:])
            return self.finish()
        if key not in KEYS:
            raise DescriptionError(
                f"unknown description line {key!r}: expected one of {', '.join(KEYS)}")
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
            if not eq or not name or not name.replace("_", "a").isalnum():
                raise DescriptionError(f"env: want NAME=VALUE, got {value!r}")
            f["env"] = f.get("env", ()) + ((name, val),)
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
        return None

    def finish(self) -> JobSpec:
        if "cmd" not in self.fields:
            raise DescriptionError("submit: no command (give 'cmd PROGRAM' or 'submit PROGRAM ARGS')")
        spec = JobSpec(**self.fields)
        self.fields = {}
        return spec

