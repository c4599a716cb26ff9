"""Containment: no request ends a server, whatever its handler does or the client sends.

Each case below ended the whole server process before containment: a handler's
unexpected exception, an error text too long for Rerror, a NUL byte in a name,
an offset or length past a signed 64-bit file offset.
"""

from __future__ import annotations

import logging

import trio

from styxgrid.ninep import DMDIR, NOFID, OREAD, ORDWR, Handle, NinePError, Stat, SyntheticNode
from styxgrid.ninep import messages as M
from styxgrid.ninep.client import open_client
from styxgrid.ninep.errors import EINTERNAL, ERRMAX

from .apps import DirNode, TestTree, ValueNode
from .test_server import start

BIG = 1 << 63


class Exploding(Exception):
    """What a buggy handler raises."""


class BrokenHandle(Handle):
    def __init__(self, where: str) -> None:
        self.where = where

    def read_nowait(self, offset: int, count: int) -> bytes:
        if self.where == "read_nowait":
            raise Exploding("read_nowait")
        raise trio.WouldBlock

    async def read(self, offset: int, count: int) -> bytes:
        await trio.sleep(0)
        raise Exploding("read")

    def write_nowait(self, offset: int, data: bytes) -> int:
        raise NinePError("x" * 70_000)          # far past what an Rerror can carry

    def clunk(self) -> None:
        raise Exploding("clunk")


class BrokenNode(SyntheticNode):
    def __init__(self, name: str, path: int, where: str) -> None:
        super().__init__(name, path, 0o666)
        self.where = where

    def open(self, mode, session):
        if self.where == "open":
            raise KeyError("open")
        return BrokenHandle(self.where)

    def stat(self) -> Stat:
        if self.where == "stat":
            raise ZeroDivisionError("stat")
        return super().stat()


class BrokenDir(DirNode):
    def walk(self, name, session):
        if name == "boom":
            raise IndexError("walk")
        return super().walk(name, session)

    def create(self, name, perm, mode, session):
        raise OverflowError("create")


def broken_tree() -> TestTree:
    tree = TestTree()
    for i, where in enumerate(("open", "read_nowait", "read", "stat")):
        tree.root.add(BrokenNode(where, 50 + i, where))
    bad = tree.root.add(BrokenDir("bad", 60))
    bad.add(BrokenNode("stat", 61, "stat"))
    bad.add(ValueNode("fine", 62, b"ok"))
    return tree


async def test_unexpected_handler_failures_are_rerror_and_the_server_goes_on(nursery, caplog):
    connect = await start(nursery, broken_tree())
    c = await (await connect()).session("grid")
    with caplog.at_level(logging.ERROR, logger="styxgrid.ninep"):
        assert (await c.rpc(M.Twalk(1, 0, 2, ("bad", "boom")))).ename == EINTERNAL
        assert (await c.rpc(M.Twalk(1, 0, 2, ("open",)))).wqids
        assert (await c.rpc(M.Topen(1, 2, OREAD))).ename == EINTERNAL
        for n, name in enumerate(("read_nowait", "read"), 3):
            await c.walk_open(n, name)
            assert (await c.rpc(M.Tread(1, n, 0, 10))).ename == EINTERNAL
        assert (await c.rpc(M.Twalk(1, 0, 5, ("stat",)))).wqids
        assert (await c.rpc(M.Tstat(1, 5))).ename == EINTERNAL
        assert (await c.rpc(M.Twalk(1, 0, 6, ("bad",)))).wqids
        assert (await c.rpc(M.Tcreate(1, 6, "new", 0o644, ORDWR))).ename == EINTERNAL
        assert isinstance(await c.rpc(M.Topen(1, 6, OREAD)), M.Ropen)
        listing = await c.rpc(M.Tread(1, 6, 0, 8192))       # the child whose stat fails
        assert [s.name for s in M_stats(listing.data)] == ["fine"]
        assert isinstance(await c.rpc(M.Tclunk(1, 3)), M.Rclunk)   # its clunk raises
    assert sum("failed: Exploding: read" in r.getMessage() for r in caplog.records) == 2
    assert all(r.exc_info for r in caplog.records if "failed:" in r.getMessage())
    await c.walk_open(7, "fast")
    assert (await c.rpc(M.Tread(1, 7, 0, 100))).data == b"fast\n"
    other = await (await connect()).session()
    await other.walk_open(2, "fast")


def M_stats(data: bytes):
    from styxgrid.ninep import decode_stats
    return decode_stats(data)


async def test_an_error_text_of_any_length_is_cut_to_fit(nursery):
    connect = await start(nursery, broken_tree())
    c = await (await connect()).session()
    await c.walk_open(2, "read", ORDWR)
    reply = await c.rpc(M.Twrite(1, 2, 0, b"x"))
    assert len(reply.ename.encode()) <= ERRMAX and reply.ename.endswith("...")
    assert NinePError("é" * 5000).ename.encode("utf-8")  # cut on a character boundary


async def test_names_with_nul_or_too_long_are_refused(nursery):
    tree = TestTree()
    connect = await start(nursery, tree)
    c = await (await connect()).session()
    assert (await c.rpc(M.Twalk(1, 0, 2, ("fa\0st",)))).ename.startswith("bad file name")
    assert (await c.rpc(M.Twalk(1, 0, 2, ("x" * 256,)))).ename == "file name too long"
    r = await c.rpc(M.Twalk(1, 0, 2, ("many", "f\0")))
    assert isinstance(r, M.Rwalk) and len(r.wqids) == 1
    assert (await c.rpc(M.Tattach(2, 9, NOFID, "glen\0da", ""))).ename.startswith("bad file")
    assert (await c.rpc(M.Tattach(2, 9, NOFID, "u" * 300, ""))).ename == "file name too long"
    wst = Stat.dont_touch(name="a\0b")
    assert isinstance(await c.rpc(M.Twalk(1, 0, 3, ("fast",))), M.Rwalk)
    assert (await c.rpc(M.Twstat(1, 3, wst))).ename.startswith("bad file name")


async def test_offsets_and_lengths_past_a_signed_64_bit_offset_are_refused(nursery):
    c = await (await (await start(nursery, TestTree()))()).session("grid")
    await c.walk_open(2, "fast", ORDWR)
    assert (await c.rpc(M.Tread(1, 2, BIG, 10))).ename.startswith("offset out of range")
    assert (await c.rpc(M.Tread(1, 2, (1 << 64) - 1, 10))).ename.startswith("offset out of")
    assert (await c.rpc(M.Twrite(1, 2, BIG - 1, b"xy"))).ename.startswith("offset out of")
    assert isinstance(await c.rpc(M.Twalk(1, 0, 3, ("fast",))), M.Rwalk)
    wst = Stat.dont_touch(length=BIG)
    assert (await c.rpc(M.Twstat(1, 3, wst))).ename.startswith("length out of range")
    assert (await c.rpc(M.Tread(1, 2, 0, 10))).data == b"fast\n"


async def test_a_huge_directory_is_listed_as_it_is_read(nursery):
    """Entries are made per read: a directory of 1,000,000 children costs a small
    read a few entries, not the whole listing (it never builds all of them)."""
    made = 0

    class Child(SyntheticNode):
        pass

    class Huge(SyntheticNode):
        def children(self, session):
            nonlocal made
            for i in range(1_000_000):
                made += 1
                yield Child(str(i), 1000 + i, 0o444)

    root = DirNode("/", 1)
    root.add(Huge("huge", 2, DMDIR | 0o555))

    class FS:
        def attach(self, session):
            return root
    c = await (await (await start(nursery, FS()))()).session()
    await c.walk_open(2, "huge")
    first = await c.rpc(M.Tread(1, 2, 0, 500))
    names = [s.name for s in M_stats(first.data)]
    assert names[:3] == ["0", "1", "2"] and made <= len(names) + 1
    second = await c.rpc(M.Tread(1, 2, len(first.data), 500))
    assert M_stats(second.data)[0].name == str(len(names))


async def test_exportfs_survives_nul_names_and_huge_offsets(proc, tmp_path):
    root = tmp_path / "export"
    root.mkdir()
    (root / "f").write_text("data\n")
    server = proc(["exportfs", str(root), "--listen", "127.0.0.1:0", "--insecure"], r"serving \S+ on (\S+)")
    addr = server.match.group(1)
    async with open_client(addr, uname="root") as c:
        for bad in ("a\0b", "x" * 300):
            try:
                await c.create(bad, 0o644, ORDWR)
            except NinePError as exc:
                assert "name" in str(exc)
            else:
                raise AssertionError(f"created {bad!r}")
        f = await c.open("f", ORDWR)
        async with f:
            for offset in (BIG, (1 << 64) - 1):
                try:
                    await f.pread(offset, 10)
                except NinePError as exc:
                    assert "offset out of range" in str(exc)
                else:
                    raise AssertionError("read past 2^63 answered")
            try:
                await c.wstat("f", Stat.dont_touch(length=BIG))
            except NinePError as exc:
                assert "length out of range" in str(exc)
    async with open_client(addr, uname="root") as c:
        assert await c.read_file("f") == b"data\n"
    assert server.popen.poll() is None
