"""What a worker tells the scheduler about its machine: a ClassAd of attributes."""

from __future__ import annotations

import os
import platform
import socket
from typing import Any


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


def literal(value: Any) -> str:
    """A ClassAd literal for a Python value."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    text = str(value).replace("\\", "\\\\").replace('"', '\\"')
    return f'"{text}"'


def parse_attr(text: str) -> tuple[str, Any]:
    """`--attr Key=value`: integers and reals as numbers, true/false, else a string."""
    key, eq, value = text.partition("=")
    key = key.strip()
    if not eq or not key.isidentifier():
        raise ValueError(f"bad attribute {text!r}: want Key=value")
    value = value.strip()
    for kind in (int, float):
        try:
            return key, kind(value)
        except ValueError:
            pass
    if value.lower() in ("true", "false"):
        return key, value.lower() == "true"
    return key, value.strip('"')
