"""Checks of the fields that enter the scheduler from paths, verbs, joins and
reports: numbers in ASCII digits and in range, node names, ClassAd values.

Each raises `ValueError` whose text names the field and quotes at most a short
prefix of what was sent; the tree turns it into Rerror.  The limits are listed
in styxgrid(4) and styxgrid-scheduler(8).
"""

from __future__ import annotations

import math
import re
from typing import Any

from .adtext import parse_literal
from .ninep.errors import quoted

_NUMBER = re.compile(r"-?[0-9]{1,19}\Z")
_INDEX = re.compile(r"(?:0|[1-9][0-9]{0,9})\Z")
_NODE = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9_.-]{0,63}\Z")
_ATTR = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}\Z")

MAX_ATTRS = 256            # attributes in one worker's ad
MAX_ATTR_TEXT = 4096       # characters of one string attribute
INT64 = (-(1 << 63), (1 << 63) - 1)
MAX_JOB = (1 << 32) - 1    # job ids and task indices fit in 32 bits
MIN_STATUS, MAX_STATUS = -255, 255   # exit status, or minus the signal that ended it


def index(name: str, high: int = MAX_JOB) -> int | None:
    """A job id or task index as a path element: ASCII digits, no leading zero,
    at most `high`; None when `name` is not one (the file does not exist)."""
    if not _INDEX.match(name):
        return None
    n = int(name)
    return n if n <= high else None


def integer(what: str, text: str, low: int, high: int) -> int:
    """A whole number in ASCII digits (an optional leading minus), low..high."""
    if not _NUMBER.match(text):
        raise ValueError(f"{what}: {quoted(text)} is not a whole number")
    n = int(text)
    if not low <= n <= high:
        raise ValueError(f"{what}: {n} is out of range ({low}..{high})")
    return n


def node_name(name: str) -> str:
    """A worker's name: 1 to 64 letters, digits, '-', '_' and '.', not starting
    with '.'; it names a folder in /nodes."""
    if not _NODE.match(name) or name == "index":
        raise ValueError(f"join: bad worker name {quoted(name)}: use 1 to 64 letters, digits, "
                         "'-', '_' and '.' (not 'index', not starting with '.')")
    return name


def user_name(name: str) -> str:
    """A user's name as the grid knows it (a job's owner, a /data folder): 1 to
    64 ASCII letters, digits, '-', '_' and '.', not starting with '.'."""
    if not _NODE.match(name):
        raise ValueError(f"bad user name {quoted(name)}: use 1 to 64 letters, digits, "
                         "'-', '_' and '.' (not starting with '.')")
    return name


def attribute(name: str, text: str) -> Any:
    """A ClassAd attribute of a worker's ad: an identifier, and a literal that
    ClassAds can hold (a 64-bit integer, a finite real, a bool, a short string)."""
    if not _ATTR.match(name):
        raise ValueError(f"bad attribute name {quoted(name)}: want an identifier of at most "
                         "64 characters")
    value = parse_literal(text)
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and not INT64[0] <= value <= INT64[1]:
        raise ValueError(f"attribute {name}: {quoted(text.strip())} does not fit 64 bits")
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"attribute {name}: {quoted(text.strip())} is not a finite number")
    if isinstance(value, str) and (len(value) > MAX_ATTR_TEXT or "\0" in value):
        raise ValueError(f"attribute {name}: a string of at most {MAX_ATTR_TEXT} characters, "
                         "no NUL")
    return value


def shown(text: str) -> str:
    """Text a peer chose, made safe for a log line: what is not printable (control
    characters, escape sequences, line and paragraph separators) is written as
    its Python escape, so no one forges a line, a key or a terminal command."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)
