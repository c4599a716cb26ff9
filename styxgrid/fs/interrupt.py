"""Noticing that the process blocked in a FUSE read got a signal.

pyfuse3 registers no FUSE interrupt callback, and once a request is in the daemon
the kernel waits for the answer uninterruptibly: a `cat` of a parked file would
ignore Ctrl-C.  So while a read is parked, its caller's /proc/PID/status is read
every POLL seconds; a pending signal that is not blocked ends the read with EINTR
(and the 9P read is flushed).
"""

from __future__ import annotations

import trio

POLL = 0.1


def signal_pending(pid: int) -> bool:
    """Does `pid` have a pending, unblocked signal (or is it gone)?"""
    try:
        with open(f"/proc/{pid}/status", "rb") as f:
            text = f.read()
    except OSError:
        return True                       # the process is gone: nobody waits
    fields = {}
    for line in text.splitlines():
        key, _, value = line.partition(b":")
        if key in (b"SigPnd", b"ShdPnd", b"SigBlk"):
            fields[key] = int(value.strip(), 16)
    pending = fields.get(b"SigPnd", 0) | fields.get(b"ShdPnd", 0)
    return bool(pending & ~fields.get(b"SigBlk", 0))


async def wait_signal(pid: int) -> None:
    """Return once `pid` has a signal waiting for it (looked at every POLL seconds,
    first after POLL: a read answered at once never touches /proc)."""
    while True:
        await trio.sleep(POLL)
        if signal_pending(pid):
            return
