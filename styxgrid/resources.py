"""What a task asks for and a node offers: cpus, memory, disk and GPUs.

One record, `Need`, serves both: a job's requests (`request_cpus` ...) and a
node's offer (what it has for tasks); `fits` is the one comparison. Sizes are
kept in MiB; they are written with a unit (`512 MiB`, `1GB`, `2 G`) and read by
`size`, which both the description and the worker's options use.
"""

from __future__ import annotations

import re
from typing import NamedTuple

from .ninep.errors import quoted

MAX_CPUS = 4096                     # cpus of one request or one node
MAX_GPUS = 64
MAX_SIZE = 1 << 30                  # MiB: a request or offer is at most 1 PiB
UNLIMITED = MAX_SIZE                # an offer that was not said: no limit known
DEFAULT_MEMORY = 512                # MiB a task asks for when its job does not say
DEFAULT_DISK = 1024                 # MiB
_UNITS = {"": 0, "k": -1, "m": 0, "g": 1, "t": 2}
_SIZE = re.compile(r"([0-9]{1,12})(?:\.([0-9]{1,3}))?\s*([kmgt]?)(i?b)?\Z", re.IGNORECASE)


class Need(NamedTuple):
    """Cpus, memory (MiB), disk (MiB), GPUs: asked for by a task, or offered."""

    cpus: int = 1
    memory: int = DEFAULT_MEMORY
    disk: int = DEFAULT_DISK
    gpus: int = 0

    def fits(self, free: "Need | list[int]") -> bool:
        return (self[0] <= free[0] and self[1] <= free[1] and self[2] <= free[2]
                and self[3] <= free[3])

    def words(self) -> str:
        """As people read it: `2 cpus, 4 GiB memory, 1 GiB disk, 1 GPU`."""
        parts = [f"{self.cpus} cpu" + ("s" if self.cpus != 1 else ""),
                 f"{mib(self.memory)} memory", f"{mib(self.disk)} disk"]
        if self.gpus:
            parts.append(f"{self.gpus} GPU" + ("s" if self.gpus != 1 else ""))
        return ", ".join(parts)


def size(what: str, text: str, bare: str = "m") -> int:
    """A size with an optional unit (K, M, G, T; KB, KiB ...: all powers of 1024,
    as HTCondor reads them), in MiB, rounded up; `bare`: the unit of a plain
    number ("m" for memory, "k" for disk, as in HTCondor's submit files)."""
    found = _SIZE.match(text.strip())
    if not found:
        raise ValueError(f"{what}: want a size such as 512M, 2 GB or 1.5GiB, "
                         f"got {quoted(text)}")
    whole, part, unit = found.group(1), found.group(2) or "", found.group(3).lower()
    if not unit:
        unit = bare
    thousandths = int(whole) * 1000 + int(part.ljust(3, "0"))
    shift = _UNITS[unit]
    if shift >= 0:
        value = -(-thousandths * (1024 ** shift) // 1000)
    else:
        value = -(-thousandths // (1000 * 1024))
    if not 1 <= value <= MAX_SIZE:
        raise ValueError(f"{what}: {text.strip()} is out of range (1 MiB..1 PiB)")
    return value


def mib(value: int) -> str:
    """A size in MiB as people read it: `512 MiB`, `4 GiB`, `1.5 GiB`."""
    if value >= UNLIMITED:
        return "no limit"
    for unit, scale in (("TiB", 1 << 20), ("GiB", 1 << 10)):
        if value >= scale:
            return f"{value / scale:.4g} {unit}"
    return f"{value} MiB"
