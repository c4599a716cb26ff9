"""What a worker tells the scheduler about its machine: a ClassAd of attributes."""

from __future__ import annotations

import os
import platform
import socket
from typing import Any

from ..adtext import parse_literal


def memory_mb() -> int:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1]) // 1024
    except OSError:
        pass
    return 0


def machine_ad(name: str, slots: int, extra: dict[str, Any]) -> dict[str, Any]:
    """Name, Cpus, Memory (MiB), OpSys, Arch, LoadAvg, Slots, then the owner's own."""
    ad: dict[str, Any] = {
        "Name": name, "Machine": socket.gethostname(), "Cpus": os.cpu_count() or 1,
        "Memory": memory_mb(), "OpSys": platform.system().upper(),
        "Arch": platform.machine().upper(), "LoadAvg": round(os.getloadavg()[0], 2),
        "Slots": slots,
    }
    ad.update(extra)
    return ad


def parse_attr(text: str) -> tuple[str, Any]:
    """`--attr Key=value`: integers and reals as numbers, true/false, else a string."""
    key, eq, value = text.partition("=")
    key = key.strip()
    if not eq or not key.isidentifier():
        raise ValueError(f"bad attribute {text!r}: want Key=value")
    return key, parse_literal(value)
