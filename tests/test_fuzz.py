"""The fuzzer against a live scheduler (as a user and as a worker, on its unix
socket, and unauthenticated on its TLS port) and a live exportfs, while an honest
user submits and reads.  Asserted: no server exits, every honest request is
answered correctly.  Seeded; about a minute in all."""

from __future__ import annotations

import functools
import os
import pwd
import subprocess

import trio

from styxgrid.ninep.client import open_client
from styxgrid.ninep.transport import connect, parse_address, transport_for
from styxgrid.security import tls

from .fuzzing import Honest, Tally, fuzz, honest_user
from .helpers import STYXGRID

MESSAGES = 100_000         # per fuzzer


async def dial(address: str):
    return transport_for(await connect(parse_address(address)))


async def dial_tls(host: str, port: int):
    return await tls.connect(host, port, tls.pinning_context())


async def test_fuzzers_never_end_a_server_and_honest_requests_are_answered(grid, proc,
                                                                           tmp_path):
    export = tmp_path / "export"
    export.mkdir()
    (export / "f").write_text("data\n")
    exportfs = proc(["exportfs", str(export), "--listen", "127.0.0.1:0", "--insecure"],
                    r"serving \S+ on (\S+)")
    subprocess.run(STYXGRID + ["ca", "init", "--dir", str(tmp_path / "ca")], check=True,
                   capture_output=True)
    secure = proc(["scheduler", "--ca", str(tmp_path / "ca"), "--state",
                   str(tmp_path / "tls-state"), "--listen", "127.0.0.1:0", "--insecure"],
                  r"serving \S+ on (\S+)")
    host, port = secure.match.group(1).rsplit(":", 1)
    targets = [
        (functools.partial(dial, grid.sock), "root", ""),
        (functools.partial(dial, grid.sock), "root", "worker"),
        (functools.partial(dial, exportfs.match.group(1)), "root", ""),
        (functools.partial(dial_tls, host, int(port)), "anyone", "join"),
    ]
    tallies = [Tally() for _ in targets]
    honest, stop = Honest(), trio.Event()
    me = pwd.getpwuid(os.getuid()).pw_name
    async with open_client(grid.sock) as client:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(honest_user, client, me, honest, stop)
            async with trio.open_nursery() as fuzzers:
                for seed, ((dialer, uname, aname), tally) in enumerate(zip(targets, tallies)):
                    fuzzers.start_soon(fuzz, dialer, MESSAGES, seed, uname, aname, tally)
            stop.set()
    for server in (grid.scheduler, exportfs, secure):
        assert server.popen.poll() is None, "".join(server.lines[-20:])
    assert all(t.sent >= MESSAGES and t.answered > MESSAGES // 10 for t in tallies), tallies
    internal = [line for server in (grid.scheduler, exportfs, secure) for line in server.lines
                if "internal error" in line or " failed: " in line]
    assert not internal, "".join(internal[:20])
    assert honest.ops > 0
    async with open_client(grid.sock) as client:        # and it still serves afresh
        assert b"jobs=" in await client.read_file("stats")
    async with open_client(exportfs.match.group(1), uname="root") as c:
        assert await c.read_file("f") == b"data\n"
