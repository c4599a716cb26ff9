"""Everything a mount can be told, with its default written once: `styxgrid
mount` and `styxgrid up --mount` only fill in a `MountConfig`."""

from __future__ import annotations

from dataclasses import dataclass

from ..security.identity import Identity


@dataclass(frozen=True)
class MountConfig:
    address: str
    mountpoint: str
    identity: Identity | None = None        # TLS certificate for a TCP address
    dial_timeout: float = 3.0               # seconds to reach the server, at mount and after
    # Concurrent FUSE requests: each parked `cat wait` holds one.  Kept under the 9P
    # server's in-flight limit per connection (4096): past it the server stops
    # reading, and a Tflush for an interrupted read could not get through.
    max_requests: int = 2048
    dir_timeout: float = 1.0                # names and attributes of folders change rarely
    readahead: int = 4                      # 9P reads in flight ahead of a sequential reader
    write_behind: int = 16                  # 9P writes in flight behind a sequential writer
    behind_min: int = 64 * 1024             # smaller writes are verbs: answered in order
