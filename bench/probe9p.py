#!/usr/bin/env python3
"""An independent 9P client's loops for bench/ninep_ops.py: p9fs's py9p (a
pure-Python codec that shares nothing with styxgrid) against any server.

    probe9p.py ADDR [-V 9P2000.L --aname DIR] --bench N      walk+open+read+clunk, N times
    probe9p.py ADDR [-V 9P2000.L --aname DIR] --bulk FILE    read FILE in msize pieces

Prints `N iterations/s` or `= X MiB/s` for the caller to pick up.
"""

from __future__ import annotations

import argparse
import getpass
import socket
import sys
import time

from py9p import py9p as P

ROOT, FILE = 100, 101


class Quiet(P.Client):
    """py9p's Client without its own login: each step is ours."""

    def login(self, authsrv, credentials, aname=""):  # noqa: D102 - replaced on purpose
        pass


def session(args: argparse.Namespace) -> tuple[Quiet, bool]:
    host, port = args.addr.rsplit(":", 1)
    sock = socket.create_connection((host, int(port)))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    dot_l = args.version == "9P2000.L"
    version = P.Version.from_str(args.version)
    c = Quiet(sock, P.Credentials(user=args.uname), ver=version, msize=args.msize)
    reply = c._version(args.msize, version.to_bytes())
    c.msize = reply.msize
    c._attach(ROOT, P.NOFID, args.uname.encode(), args.aname.encode())
    return c, dot_l


def open_read(c: Quiet, dot_l: bool, fid: int) -> None:
    if dot_l:
        c._lopen(fid, 0)
    else:
        c._open(fid, P.OREAD)


def bench(args: argparse.Namespace) -> None:
    c, dot_l = session(args)
    start = time.perf_counter()
    for _ in range(args.bench):
        c._walk(ROOT, FILE, [args.path])
        open_read(c, dot_l, FILE)
        c._read(FILE, 0, 4096)
        c._clunk(FILE)
    elapsed = time.perf_counter() - start
    print(f"bench {args.addr} {args.version}: {args.bench / elapsed:.1f} iterations/s")


def bulk(args: argparse.Namespace) -> None:
    c, dot_l = session(args)
    c._walk(ROOT, FILE, [args.bulk])
    open_read(c, dot_l, FILE)
    count, offset = c.msize - P.IOHDRSZ, 0
    start = time.perf_counter()
    while data := c._read(FILE, offset, count).data:
        offset += len(data)
    elapsed = time.perf_counter() - start
    print(f"bulk {args.addr} {args.bulk}: {offset} bytes, msize {c.msize} "
          f"= {offset / elapsed / 2**20:.1f} MiB/s")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("addr", help="HOST:PORT")
    ap.add_argument("-V", "--version", default="9P2000", help="9P2000 or 9P2000.L")
    ap.add_argument("--aname", default="", help="attach name (diod: the exported folder)")
    ap.add_argument("--uname", default=getpass.getuser(), help="user to attach as "
                    "(default: this one; diod maps it to a uid)")
    ap.add_argument("--msize", type=int, default=65560, help="message size to ask for")
    ap.add_argument("--path", default="hello.txt", help="the small file of --bench")
    ap.add_argument("--bench", type=int, metavar="N", help="iterations of the small-file loop")
    ap.add_argument("--bulk", metavar="FILE", help="a big file to read")
    args = ap.parse_args()
    bench(args) if args.bench else bulk(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
