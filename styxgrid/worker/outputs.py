"""A task's output on its way to the scheduler: its stdout and stderr while it
runs and after, the output files it names, and the small remainder that rides in
its report.  Files are read off the event loop, a piece at a time, except the
remainder, which is at most `inline` bytes (64 KiB) of a file just written."""

from __future__ import annotations

import os

import trio

from ..exchange import STREAMS, Output
from ..ninep.client import Client
from ..ninep.errors import NinePError
from ..ninep.messages import OWRITE
from .sandbox import TaskRun, open_output


async def _pread(fd: int, count: int, offset: int) -> bytes:
    return await trio.to_thread.run_sync(os.pread, fd, count, offset, abandon_on_cancel=True)


async def upload(client: Client, fd: int, remote: str, piece: int) -> None:
    """Copy an open local file to `remote` (made or truncated), a piece at a time."""
    f = await client.open_or_create(remote)
    async with f:
        offset = 0
        while chunk := await _pread(fd, piece, offset):
            offset += await f.pwrite(offset, chunk)


def _size(path: str) -> int:
    try:
        return os.stat(path).st_size
    except FileNotFoundError:
        return 0


async def upload_streams(client: Client, run: TaskRun, piece: int) -> None:
    """Send what the task wrote to stdout and stderr since last time, at the same
    offsets."""
    for stream in STREAMS:
        size = _size(run.local(stream))
        if size <= run.sent[stream]:
            continue
        remote = await client.open(f"jobs/{run.job}/tasks/{run.index}/{stream}", OWRITE)
        async with remote:
            fd = os.open(run.local(stream), os.O_RDONLY | os.O_CLOEXEC)
            try:
                while run.sent[stream] < size:
                    want = min(remote.iounit, piece, size - run.sent[stream])
                    chunk = await _pread(fd, want, run.sent[stream])
                    if not chunk:
                        break
                    run.sent[stream] += await remote.pwrite(run.sent[stream], chunk)
            finally:
                os.close(fd)


async def send_outputs(client: Client, run: TaskRun, piece: int) -> None:
    """Each output the task left, a regular file inside its folder (a task decides
    what its files are); one that is not there is not an error."""
    for path in run.spec.outputs:
        name = os.path.basename(run.expand(path))
        try:
            # inside the task's folder itself: `dir` may be a link the task made
            fd = open_output(run.sandbox, os.path.join(run.spec.dir, run.expand(path)),
                             run.user)
        except FileNotFoundError:
            continue
        except OSError as exc:
            raise OSError(f"output {name} not sent: {exc.strerror or exc}") from None
        try:
            await upload(client, fd, f"jobs/{run.job}/outputs/{name}", piece)
        except NinePError as exc:
            raise NinePError(f"output {name} not stored: {exc.ename}") from None
        except OSError as exc:
            raise OSError(f"output {name} not read: {exc.strerror or exc}") from None
        finally:
            os.close(fd)


def last_output(run: TaskRun, inline: int) -> bytes | None:
    """The ended task's output not sent yet, as `output` records for its report;
    None when there is more than `inline` bytes (then it goes up as files)."""
    records, total = [], 0
    for stream in STREAMS:
        start, path = run.sent[stream], run.local(stream)
        size = _size(path)
        if size <= start:
            continue
        total += size - start
        if total > inline:
            return None
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            chunk = os.pread(fd, size - start, start)
        finally:
            os.close(fd)
        records.append(Output(run.job, run.index, stream, start, chunk).encode())
    return b"".join(records)
