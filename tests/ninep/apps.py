"""A tiny served tree for framework tests, built from the kit in ninep/synthetic.py:
a fast file, a parked file, a file whose reads wait on a signal, a directory."""

from __future__ import annotations

import trio

from styxgrid.ninep import Handle, Session, SyntheticNode
from styxgrid.ninep.synthetic import File, StaticDir
from styxgrid.ninep.tree import Signal


class ParkedHandle(Handle):
    """Reads wait until the tree's `release` event; records when it is cancelled."""

    def __init__(self, tree: "TestTree") -> None:
        self.tree = tree

    async def read(self, offset: int, count: int) -> bytes:
        self.tree.parked += 1
        try:
            await self.tree.release.wait()
        except trio.Cancelled:
            self.tree.cancelled += 1
            raise
        finally:
            self.tree.parked -= 1
        return b"late\n"[offset:]


class SignalledHandle(Handle):
    """Reads wait on the tree's `signal` until `tree.ready` holds a value (or an
    exception to raise); records each read it is told was cancelled."""

    def __init__(self, tree: "TestTree") -> None:
        self.tree = tree

    def read_nowait(self, offset: int, count: int) -> bytes:
        ready = self.tree.ready
        if isinstance(ready, Exception):
            raise ready
        if ready is None:
            raise trio.WouldBlock
        return ready[offset:offset + count]

    def read_signal(self) -> Signal:
        return self.tree.signal

    def read_cancelled(self) -> None:
        self.tree.signal_cancelled += 1


class ValueHandle(Handle):
    def __init__(self, node: "ValueNode") -> None:
        self.node = node

    def read_nowait(self, offset: int, count: int) -> bytes:
        return self.node.value[offset:offset + count]

    def write_nowait(self, offset: int, data: bytes) -> int:
        self.node.value = self.node.value[:offset] + data
        self.node.touch()
        return len(data)


class ValueNode(SyntheticNode):
    def __init__(self, name, path, value=b"", mode=0o664, parent=None):
        super().__init__(name, path, mode, parent=parent)
        self.value = value

    def open(self, mode, session):
        return ValueHandle(self)


class DirNode(StaticDir):
    def __init__(self, name, path, parent=None):
        super().__init__(name, path, parent, mode=0o775)


class TestTree:
    """root/{fast, parked, signalled, ro, many/f00..f39}"""

    __test__ = False

    def __init__(self) -> None:
        self.release = trio.Event()
        self.parked = 0
        self.cancelled = 0
        self.signal = Signal()
        self.ready: bytes | Exception | None = None
        self.signal_cancelled = 0
        self.root = DirNode("/", 1)
        self.root.add(ValueNode("fast", 2, b"fast\n"))
        self.root.add(File("parked", 3, None, lambda s, m: ParkedHandle(self)))
        self.root.add(File("signalled", 6, None, lambda s, m: SignalledHandle(self)))
        self.root.add(ValueNode("ro", 4, b"read only\n", mode=0o444))
        many = self.root.add(DirNode("many", 5))
        for i in range(40):
            many.add(ValueNode(f"f{i:02d}", 100 + i, b"x"))

    def attach(self, session: Session):
        return self.root
