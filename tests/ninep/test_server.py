"""The server framework over real sockets, driven message by message."""

from __future__ import annotations

import functools
import select
import struct

import pytest
import trio
import trio.testing

from styxgrid.ninep import (NEED_DATA, NOFID, NOTAG, OREAD, ORDWR, OTRUNC, OWRITE, Decoder,
                            Limits, Stat, decode_stats, encode, serve_listeners)
from styxgrid.ninep import messages as M
from styxgrid.ninep.transport import open_listeners, parse_address

from .apps import TestTree


class Raw:
    """A bare 9P connection: send messages, receive replies in arrival order."""

    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self.dec = Decoder(1 << 21)

    async def send(self, *msgs: M.Message) -> None:
        await self.stream.send_all(b"".join(encode(m) for m in msgs))

    async def recv(self) -> M.Message:
        while (msg := self.dec.next_message()) is NEED_DATA:
            data = await self.stream.receive_some(65536)
            if not data:
                raise EOFError
            self.dec.feed(data)
        return msg

    async def rpc(self, msg: M.Message) -> M.Message:
        await self.send(msg)
        reply = await self.recv()
        assert reply.tag == msg.tag
        return reply

    async def session(self, uname: str = "glenda") -> "Raw":
        assert (await self.rpc(M.Tversion(NOTAG, 65536, "9P2000"))).version == "9P2000"
        assert isinstance(await self.rpc(M.Tattach(1, 0, NOFID, uname, "")), M.Rattach)
        return self

    async def walk_open(self, fid: int, name: str, mode: int = OREAD) -> None:
        assert isinstance(await self.rpc(M.Twalk(1, 0, fid, (name,))), M.Rwalk)
        assert isinstance(await self.rpc(M.Topen(1, fid, mode)), M.Ropen)


async def start(nursery, tree, limits=Limits()):
    listeners = await open_listeners(parse_address("127.0.0.1:0"))
    await nursery.start(functools.partial(serve_listeners, tree, listeners, limits=limits))
    port = listeners[0].socket.getsockname()[1]

    async def connect() -> Raw:
        return Raw(await trio.open_tcp_stream("127.0.0.1", port))
    return connect


async def test_parked_read_does_not_delay_stat_and_flush_cancels_it(nursery):
    tree = TestTree()
    c = await (await start(nursery, tree))()
    await c.session()
    await c.walk_open(2, "parked")
    await c.send(M.Tread(10, 2, 0, 100), M.Twalk(11, 0, 3, ("fast",)), M.Tstat(12, 3))
    assert isinstance(await c.recv(), M.Rwalk)
    stat_reply = await c.recv()
    assert isinstance(stat_reply, M.Rstat) and stat_reply.tag == 12
    await trio.testing.wait_all_tasks_blocked()
    assert tree.parked == 1
    await c.send(M.Tflush(13, 10))
    flushed = await c.recv()
    assert isinstance(flushed, M.Rflush) and flushed.tag == 13
    assert tree.cancelled == 1
    tree.release.set()          # too late: the flushed read must never be answered
    after = await c.rpc(M.Tclunk(14, 3))
    assert isinstance(after, M.Rclunk)


async def test_flush_of_unknown_tag_answers_at_once(nursery):
    c = await (await start(nursery, TestTree()))()
    await c.session()
    assert isinstance(await c.rpc(M.Tflush(5, 77)), M.Rflush)


async def test_garbage_on_one_connection_others_go_on(nursery):
    connect = await start(nursery, TestTree())
    bad, good = await connect(), await connect()
    await good.session()
    await bad.stream.send_all(struct.pack("<IBH", 5, 100, 0) + b"\xff" * 64)
    with pytest.raises((EOFError, trio.BrokenResourceError)):
        await bad.recv()
    other = await connect()
    await other.stream.send_all(struct.pack("<IBH", 10, 120, 1) + b"\x01\x00\x00")
    with pytest.raises((EOFError, trio.BrokenResourceError)):
        await other.recv()
    await good.walk_open(2, "fast")
    assert (await good.rpc(M.Tread(3, 2, 0, 100))).data == b"fast\n"


async def test_version_negotiation(nursery):
    connect = await start(nursery, TestTree(), Limits(max_msize=16384))
    c = await connect()
    r = await c.rpc(M.Tversion(NOTAG, 1 << 30, "9P2000.L"))
    assert (r.version, r.msize) == ("9P2000", 16384)
    assert (await c.rpc(M.Tversion(NOTAG, 8192, "XX-bogus"))).version == "unknown"
    assert isinstance(await c.rpc(M.Tattach(1, 0, NOFID, "u", "")), M.Rerror)
    d = await connect()
    assert isinstance(await d.rpc(M.Tstat(1, 0)), M.Rerror)    # before Tversion


async def test_auth_not_required_and_fid_rules(nursery):
    c = await (await start(nursery, TestTree(), Limits(max_fids=3)))()
    await c.session()
    assert (await c.rpc(M.Tauth(1, 5, "u", ""))).ename == "authentication not required"
    assert (await c.rpc(M.Tattach(1, 0, NOFID, "u", ""))).ename == "fid already in use"
    assert (await c.rpc(M.Tstat(1, 99))).ename == "unknown fid"
    await c.walk_open(1, "fast")
    assert (await c.rpc(M.Twalk(1, 1, 2, ()))).ename == "cannot walk an open fid"
    assert isinstance(await c.rpc(M.Twalk(1, 0, 2, ())), M.Rwalk)
    assert (await c.rpc(M.Twalk(1, 0, 3, ()))).ename == "too many fids"
    assert (await c.rpc(M.Twalk(1, 0, 2, ()))).ename == "fid already in use"


async def test_walk_partial_and_dotdot(nursery):
    c = await (await start(nursery, TestTree()))()
    await c.session()
    r = await c.rpc(M.Twalk(1, 0, 2, ("many", "nope")))
    assert isinstance(r, M.Rwalk) and len(r.wqids) == 1
    assert (await c.rpc(M.Tclunk(1, 2))).ename == "unknown fid"
    r = await c.rpc(M.Twalk(1, 0, 2, ("..", "many", "..", "fast")))
    assert [q.path for q in r.wqids] == [1, 5, 1, 2]
    assert (await c.rpc(M.Twalk(1, 2, 3, ("x",)))).ename == "not a directory"


async def test_directory_reads_whole_entries_and_offsets(nursery):
    c = await (await start(nursery, TestTree()))()
    await c.session()
    await c.walk_open(2, "many")
    names, offset = [], 0
    while True:
        r = await c.rpc(M.Tread(1, 2, offset, 200))
        if not r.data:
            break
        assert len(r.data) <= 200
        names += [s.name for s in decode_stats(r.data)]
        offset += len(r.data)
    assert names == [f"f{i:02d}" for i in range(40)]
    assert (await c.rpc(M.Tread(1, 2, 17, 200))).ename == "bad offset in directory read"
    again = await c.rpc(M.Tread(1, 2, 0, 65536))
    assert len(decode_stats(again.data)) == 40
    assert isinstance(await c.rpc(M.Twalk(1, 0, 3, ("many",))), M.Rwalk)
    assert (await c.rpc(M.Topen(1, 3, OWRITE))).ename == "is a directory"


async def test_permissions_against_attach_name(nursery):
    c = await (await start(nursery, TestTree()))()
    await c.session(uname="bob")
    assert isinstance(await c.rpc(M.Twalk(1, 0, 2, ("ro",))), M.Rwalk)
    assert (await c.rpc(M.Topen(1, 2, ORDWR))).ename == "permission denied"
    assert (await c.rpc(M.Topen(1, 2, OREAD | OTRUNC))).ename == "permission denied"
    assert isinstance(await c.rpc(M.Topen(1, 2, OREAD)), M.Ropen)
    assert (await c.rpc(M.Twrite(1, 2, 0, b"x"))).ename == "permission denied"
    assert (await c.rpc(M.Tremove(1, 2))).ename == "permission denied"
    assert (await c.rpc(M.Tstat(1, 2))).ename == "unknown fid"    # remove clunks anyway
    wst = Stat.dont_touch(mode=0o666)
    assert isinstance(await c.rpc(M.Twalk(1, 0, 3, ("fast",))), M.Rwalk)
    assert (await c.rpc(M.Twstat(1, 3, wst))).ename == "permission denied"


async def test_qid_version_bumps_on_write(nursery):
    c = await (await start(nursery, TestTree()))()
    await c.session(uname="grid")
    await c.walk_open(2, "fast", ORDWR)
    before = (await c.rpc(M.Tstat(1, 2))).stat.qid.vers
    assert (await c.rpc(M.Twrite(1, 2, 0, b"new"))).count == 3
    assert (await c.rpc(M.Tstat(1, 2))).stat.qid.vers == before + 1


async def test_inflight_limit_is_back_pressure(nursery):
    tree = TestTree()
    c = await (await start(nursery, tree, Limits(max_inflight=2)))()
    await c.session()
    await c.walk_open(2, "parked")
    await c.send(M.Tread(10, 2, 0, 10), M.Tread(11, 2, 0, 10), M.Tstat(12, 0))
    await trio.testing.wait_all_tasks_blocked()
    assert tree.parked == 2
    readable, _, _ = select.select([c.stream.socket.fileno()], [], [], 0)
    assert not readable, "a request past the limit was answered"
    tree.release.set()
    tags = {(await c.recv()).tag for _ in range(3)}
    assert tags == {10, 11, 12}
