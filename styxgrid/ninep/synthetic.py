"""A kit for served (synthetic) trees: files whose handles an application makes,
directories listed from a table, and the handles most synthetic files need.

The scheduler's tree, the enrolment tree and the framework's tests are all built
from these; an application adds only what its files mean.
"""

from __future__ import annotations

from typing import Any, Awaitable, Callable, ClassVar, Iterable, Iterator

import trio

from .errors import EBADWSTAT, ENOTFOUND, NinePError
from .messages import DMDIR, Stat
from .tree import Handle, Node, Session, Signal, SyntheticNode

Opener = Callable[[Session, int], Handle]       # (session, 9P open mode) -> handle
Permit = Callable[[Session, int], bool]         # may session read (4), write (2), search (1)?
ReadFn = Callable[[], str]
WriteFn = Callable[[str], Awaitable[None]]


def everyone(session: Session, want: int) -> bool:
    return True


class File(SyntheticNode):
    """A synthetic file: `opener(session, mode)` gives its handle; `permit` (if
    given) decides who may do what, else the mode bits do."""

    def __init__(self, name: str, qid_path: int, parent: Node | None, opener: Opener,
                 mode: int = 0o444, permit: Permit | None = None) -> None:
        super().__init__(name, qid_path, mode, parent=parent)
        self.opener = opener
        self.permit = permit

    def permits(self, session: Session, want: int) -> bool:
        if self.permit is None:
            return super().permits(session, want)
        return self.permit(session, want)

    def wstat(self, stat: Stat, session: Session) -> None:
        """Truncation (`echo verb > ctl` opens with O_TRUNC) is accepted and means
        nothing: these files hold no bytes."""
        if stat != Stat.dont_touch(length=stat.length):
            raise NinePError(EBADWSTAT)

    def open(self, mode: int, session: Session) -> Handle:
        return self.opener(session, mode)


Entry = Callable[[Any], "Node | None"]


class Dir(SyntheticNode):
    """A synthetic directory whose entries are made as they are walked to.

    A subclass lists its fixed entries in `ENTRIES` (name -> function of the
    directory that makes the node, or None when it is not there now); one with
    entries that come and go (jobs, tasks, nodes) overrides `names` and `child`.
    """

    ENTRIES: ClassVar[dict[str, Entry]] = {}
    permit: Permit | None = None

    def __init__(self, name: str, qid_path: int, parent: Node | None,
                 mode: int = 0o555) -> None:
        super().__init__(name, qid_path, DMDIR | mode, parent=parent)

    def permits(self, session: Session, want: int) -> bool:
        if self.permit is None:
            return super().permits(session, want)
        return self.permit(session, want)

    def names(self) -> Iterable[str]:
        return self.ENTRIES

    def child(self, name: str) -> Node | None:
        entry = self.ENTRIES.get(name)
        return entry(self) if entry is not None else None

    def walk(self, name: str, session: Session) -> Node:
        node = self.child(name)
        if node is None:
            raise NinePError(ENOTFOUND)
        return node

    def children(self, session: Session) -> Iterator[Node]:
        """Made as the directory is read (a job of 10,000,000 tasks lists lazily)."""
        return (n for n in map(self.child, self.names()) if n is not None)


class StaticDir(Dir):
    """A directory of nodes made once and kept (`add` them)."""

    def __init__(self, name: str, qid_path: int, parent: Node | None = None,
                 mode: int = 0o555, permit: Permit | None = None) -> None:
        super().__init__(name, qid_path, parent, mode)
        self.kids: dict[str, Node] = {}
        if permit is not None:
            self.permit = permit

    def add(self, node: SyntheticNode) -> SyntheticNode:
        node.parent = self
        self.kids[node.name] = node
        return node

    def names(self) -> Iterable[str]:
        return self.kids

    def child(self, name: str) -> Node | None:
        return self.kids.get(name)


class BytesHandle(Handle):
    """A read-only file holding fixed bytes."""

    def __init__(self, data: bytes) -> None:
        self.data = data

    def read_nowait(self, offset: int, count: int) -> bytes:
        return self.data[offset:offset + count]


class TextHandle(Handle):
    """A state or ctl file: a read at offset 0 takes a fresh snapshot from
    `read_fn` and later offsets are served from it, so `cat` sees one consistent
    value; each write is handed whole, as text, to `write_fn`.  `errors` are the
    exception types whose words are the reply (the application's own refusals)."""

    def __init__(self, read_fn: ReadFn | None, write_fn: WriteFn | None,
                 errors: tuple[type[Exception], ...] = ()) -> None:
        self.read_fn = read_fn
        self.write_fn = write_fn
        self.errors = errors
        self.snapshot = b""

    def read_nowait(self, offset: int, count: int) -> bytes:
        if self.read_fn is None:
            return b""
        if offset == 0:
            try:
                self.snapshot = self.read_fn().encode()
            except self.errors as exc:
                raise NinePError(words(exc)) from None
        return self.snapshot[offset:offset + count]

    async def write(self, offset: int, data: bytes) -> int:
        if self.write_fn is None:
            raise NinePError("file is read-only")
        try:
            await self.write_fn(text(data))
        except self.errors as exc:
            raise NinePError(words(exc)) from None
        return len(data)


def text_file(name: str, qid_path: int, parent: Node, read_fn: ReadFn | None,
              write_fn: WriteFn | None = None, permit: Permit | None = None,
              errors: tuple[type[Exception], ...] = ()) -> File:
    """A `TextHandle` file; its mode says which of reading and writing it has."""
    mode = (0o444 if read_fn else 0) | (0o222 if write_fn else 0)
    return File(name, qid_path, parent, lambda s, m: TextHandle(read_fn, write_fn, errors),
                mode, permit)


class PollHandle(Handle):
    """A file whose read may have to wait: `poll` answers now or says None (wait);
    `read_signal` names the next change worth polling again."""

    def poll(self, offset: int, count: int) -> bytes | None:
        raise NotImplementedError

    def read_signal(self) -> Signal:
        raise NotImplementedError

    def read_nowait(self, offset: int, count: int) -> bytes:
        data = self.poll(offset, count)
        if data is None:
            raise trio.WouldBlock
        return data


def words(exc: BaseException) -> str:
    """An exception's message as the reply's text (a KeyError's without quotes)."""
    return str(exc.args[0]) if exc.args else str(exc)


def text(data: bytes) -> str:
    try:
        return data.decode()
    except UnicodeDecodeError:
        raise NinePError("not UTF-8 text") from None
