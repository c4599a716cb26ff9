"""The grid from Python: connect, submit, status, wait, cat.

The same files a shell user reads, through one 9P connection (the `styxgrid`
command, the tests and the benches use this too):

    async with api.connect("/path/to/scheduler.sock") as grid:
        job = await grid.submit("cmd ./sim\\ntasks 10\\nsubmit\\n")
        final = await grid.wait(job)
        print(final.state, (await grid.cat(f"jobs/{job}/stdout")).decode())

Errors are the scheduler's own words, as `NinePError`.
"""

from __future__ import annotations

from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import AsyncIterator

from .describe import JobSpec
from .ninep.client import Client, open_client
from .ninep.errors import ENOTFOUND, NinePError
from .ninep.messages import ORDWR
from .security.dial import dial
from .security.identity import Identity

__all__ = ["GridClient", "JobStatus", "NinePError", "connect"]


@dataclass(frozen=True)
class JobStatus:
    """A job's status line (`jobs/N/status`, `jobs/N/wait`), read."""

    job: int
    state: str                  # queued, running, held, done, failed, killed
    tasks: int
    queued: int
    running: int
    done: int
    failed: int
    killed: int
    held: int
    owner: str

    @classmethod
    def parse(cls, line: str | bytes) -> "JobStatus":
        text = line.decode() if isinstance(line, bytes) else line
        words = text.split()
        if len(words) < 2 or not words[0].isdigit():
            raise ValueError(f"not a job status line: {text[:80]!r}")
        f = dict(word.split("=", 1) for word in words[2:] if "=" in word)
        try:
            return cls(int(words[0]), words[1], int(f["tasks"]), int(f["queued"]),
                       int(f["running"]), int(f["done"]), int(f["failed"]), int(f["killed"]),
                       int(f["held"]), f["owner"])
        except (KeyError, ValueError):
            raise ValueError(f"not a job status line: {text[:80]!r}") from None

    @property
    def finished(self) -> bool:
        return self.state in ("done", "failed", "killed")


class GridClient:
    """One connection to a scheduler; `client` is the 9P client for anything else."""

    def __init__(self, client: Client) -> None:
        self.client = client

    async def submit(self, job: JobSpec | str) -> int:
        """Submit a description (a JobSpec, or text lines ending in `submit`) and
        return the job's id: the clone idiom, a write to /new and a read of the id
        on the same fid."""
        text = job.lines() + "submit\n" if isinstance(job, JobSpec) else job
        f = await self.client.open("new", ORDWR)
        async with f:
            await f.pwrite(0, text.encode())
            return int((await f.pread(0, 64)).decode())

    async def status(self, job: int) -> JobStatus:
        return JobStatus.parse(await self.job_file(job, "status"))

    async def wait(self, job: int) -> JobStatus:
        """The job's final status, once it is finished."""
        return JobStatus.parse(await self.job_file(job, "wait"))

    async def job_file(self, job: int, name: str) -> bytes:
        try:
            return await self.client.read_file(f"jobs/{job}/{name}")
        except NinePError as exc:
            if exc.ename.startswith(ENOTFOUND):
                raise NinePError(f"no job {job}") from None
            raise

    async def jobs(self) -> list[JobStatus]:
        """Every job's status (a job removed meanwhile is left out)."""
        out = []
        for entry in await self.client.ls("jobs"):
            try:
                out.append(await self.status(int(entry.name)))
            except NinePError:
                continue
        return out

    async def cat(self, path: str) -> bytes:
        """A file's whole contents; a stream (stdout, events) is read to its end,
        so for a running job this returns when the job does."""
        return b"".join([chunk async for chunk in self.client.stream(path)])

    def stream(self, path: str) -> AsyncIterator[bytes]:
        """A file's contents as they come (`tail -f` of a running job's stdout)."""
        return self.client.stream(path)


@asynccontextmanager
async def connect(address: str, *, identity: Identity | None = None,
                  uname: str | None = None) -> AsyncIterator[GridClient]:
    """Connect to the scheduler at `address` (a unix socket path; HOST:PORT with
    the TLS `identity`); closed on exit."""
    stream, name = await dial(address, identity)
    async with open_client(stream, uname=uname or name) as client:
        yield GridClient(client)
