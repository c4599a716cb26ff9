"""/new: a job description written line by line, committed by `submit`."""

from __future__ import annotations

import codecs

from ...describe import Description, DescriptionError, check_new
from ...ninep.errors import NinePError
from ...ninep.tree import Handle, Session
from .. import access
from ..grid import Grid


class NewHandle(Handle):
    """Description lines in, `submit` commits the job; a read gives its id.

    The id line starts wherever the first read after the submit starts: through
    a mount, `read id <&3` reads at the descriptor's offset, which the write has
    moved past the description."""

    def __init__(self, grid: Grid, session: Session) -> None:
        self.grid = grid
        self.session = session
        self.description = Description()
        self.decoder = codecs.getincrementaldecoder("utf-8")()   # a write may cut a character
        self.last: int | None = None
        self.base: int | None = None
        self.refused: str | None = None         # the first bad line's message, till submit

    def read_nowait(self, offset: int, count: int) -> bytes:
        if self.last is None:
            raise NinePError("no job submitted on this file yet: write a description ending "
                             "in 'submit'")
        if self.base is None or offset < self.base:
            self.base = offset
        start = offset - self.base
        return f"{self.last}\n".encode()[start:start + count]

    async def write(self, offset: int, data: bytes) -> int:
        if self.refused is not None:
            # a description with a bad line is void up to its `submit`; each write till
            # then fails with the first message, so that a shell writing line by line
            # (printf, a heredoc) reports the line that was wrong, not "no command"
            refused = self.refused
            if _ends_in_submit(data):
                self.refused = None
            raise NinePError(refused)
        try:
            spec = self.description.feed(self.decoder.decode(data))
            if spec is not None:
                check_new(spec)
                self.grid.check_parents(spec, self.session.uname,
                                        access.role(self.session) == access.ADMIN)
        except (DescriptionError, UnicodeDecodeError) as exc:
            self.description = Description()
            self.decoder.reset()
            message = ("not UTF-8 text" if isinstance(exc, UnicodeDecodeError) else str(exc))
            if not _ends_in_submit(data):
                self.refused = message
            raise NinePError(message) from None
        if spec is not None:
            job = await self.grid.submit(spec, self.session.uname)
            self.last, self.base = job.id, None
        return len(data)


def _ends_in_submit(data: bytes) -> bool:
    """Whether the write that failed held the `submit` line (then nothing is left)."""
    return any(line.split(None, 1)[:1] == ["submit"]
               for line in data.decode("utf-8", "replace").split("\n"))
