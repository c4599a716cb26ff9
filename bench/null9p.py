#!/usr/bin/env python3
"""A 9P2000 responder with nothing behind it: the ceiling row of ninep_ops.py.

It answers the bench loop of probe9p.py (version, attach, walk, open, read, clunk) with
fixed replies, using styxgrid's codec and no file system, no fid table and no
checks.  So it shows how fast any Python 9P server could answer the same client on
this machine: on trio (one task per connection, as styxgrid's server) or on
blocking sockets with a thread per connection (as diod, in C).

    .venv/bin/python bench/null9p.py trio|threads PORT
"""

from __future__ import annotations

import os
import socket
import sys
import threading
from pathlib import Path

import trio

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from styxgrid.ninep import NEED_DATA, Decoder, encode  # noqa: E402
from styxgrid.ninep import messages as M  # noqa: E402

QID = M.Qid(0, 0, 1)
CONTENT = b"hello world\n"


def answer(msg: M.Message) -> bytes:
    kind = type(msg)
    if kind is M.Tversion:
        return encode(M.Rversion(msg.tag, msg.msize, "9P2000"))
    if kind is M.Tattach:
        return encode(M.Rattach(msg.tag, QID))
    if kind is M.Twalk:
        return encode(M.Rwalk(msg.tag, (QID,) * len(msg.wnames)))
    if kind is M.Topen:
        return encode(M.Ropen(msg.tag, QID, 8168))
    if kind is M.Tread:
        return encode(M.Rread(msg.tag, CONTENT[msg.offset:msg.offset + msg.count]))
    if kind is M.Tclunk:
        return encode(M.Rclunk(msg.tag))
    return encode(M.Rerror(msg.tag, "not in the bench loop"))


def replies(decoder: Decoder, data: bytes) -> list[bytes]:
    decoder.feed(data)
    out = []
    while (msg := decoder.next_message()) is not NEED_DATA:
        out.append(answer(msg))
    return out


async def serve_trio(port: int) -> None:
    async def connection(stream: trio.SocketStream) -> None:
        fd, decoder = stream.socket.fileno(), Decoder(1 << 20)
        while True:
            await trio.lowlevel.wait_readable(fd)
            data = os.read(fd, 65536)
            if not data:
                return
            os.writev(fd, replies(decoder, data))
    listeners = await trio.open_tcp_listeners(port, host="127.0.0.1")
    await trio.serve_listeners(connection, listeners)


def serve_threads(port: int) -> None:
    def connection(conn: socket.socket) -> None:
        fd, decoder = conn.fileno(), Decoder(1 << 20)
        while data := os.read(fd, 65536):
            os.writev(fd, replies(decoder, data))
        conn.close()
    listener = socket.create_server(("127.0.0.1", port))
    while True:
        conn, _ = listener.accept()
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        threading.Thread(target=connection, args=(conn,), daemon=True).start()


if __name__ == "__main__":
    mode, port = sys.argv[1], int(sys.argv[2])
    if mode == "trio":
        trio.run(serve_trio, port)
    else:
        serve_threads(port)
