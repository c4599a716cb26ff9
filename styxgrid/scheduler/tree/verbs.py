"""Ctl files' verbs, declared once: the table parses a line and writes the help
that a refused line is answered with."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Callable

from ...ninep.errors import NinePError, quoted
from ...shellwords import BLANKS

_BLANK_RUN = re.compile(f"[{re.escape(BLANKS)}]+")    # words: ASCII blanks only, as a shell


@dataclass(frozen=True)
class Verb:
    """A verb; `arg` names its one argument (`[NODE]`: it may be left out) and
    `value` checks it (ValueError: refused, with `rule` as the reason)."""

    name: str
    arg: str = ""
    value: Callable[[str], Any] = str
    rule: str = ""

    @property
    def usage(self) -> str:
        return f"{self.name} {self.arg}" if self.arg else self.name

    def bad(self, line: str) -> NinePError:
        rule = f" with {self.rule}" if self.rule else ""
        return NinePError(f"bad verb {quoted(line)}: want {quoted(self.usage)}{rule}")


class Verbs:
    def __init__(self, *verbs: Verb) -> None:
        self.table = {verb.name: verb for verb in verbs}
        usages = [verb.usage for verb in verbs]
        self.help = ", ".join(usages[:-1]) + " or " + usages[-1] if len(usages) > 1 \
            else usages[0]

    def parse(self, line: str) -> tuple[str, Any]:
        """(verb, its argument's value or None) of one line."""
        line = line.strip(BLANKS)
        words = _BLANK_RUN.split(line) if line else []
        verb = self.table.get(words[0]) if words else None
        if verb is None or (not verb.arg and len(words) > 1):
            raise NinePError(f"unknown verb {quoted(line)}: expected {self.help}")
        if not verb.arg or (len(words) == 1 and verb.arg.startswith("[")):
            return verb.name, None
        if len(words) != 2:
            raise verb.bad(line)
        try:
            return verb.name, verb.value(words[1])
        except ValueError:
            raise verb.bad(line) from None

    def lines(self, text: str) -> list[tuple[str, Any]]:
        """Every verb of a write, all checked before any is carried out."""
        return [self.parse(line) for line in text.split("\n") if line.strip(BLANKS)]
