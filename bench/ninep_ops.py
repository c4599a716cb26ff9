#!/usr/bin/env python3
"""9P small-file and bulk figures: styxgrid exportfs against diod, side by side.

Starts `styxgrid exportfs` (9P2000) and diod (9P2000.L) on loopback over the same
folder, runs an independent client (probe9p.py, p9fs's py9p) against both (--bench N
and --bulk of a 64 MiB file, alternating, median of R rounds), prints iterations/s, MiB/s and the
ratios styxgrid/diod; then holds 1,000 idle attached connections to exportfs and
prints the server's RSS per connection.

For scale, the small-file rounds also run against null9p.py, a Python responder
with no file system behind it (on trio, and on a thread per connection): the most
any Python 9P server could do for this client here.

    .venv/bin/python bench/ninep_ops.py [--n 2000] [--rounds 3] [--conns 1000]
"""

from __future__ import annotations

import argparse
import os
import re
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
from styxgrid.ninep import NOFID, NOTAG, Decoder, NEED_DATA, encode  # noqa: E402
from styxgrid.ninep import messages as M  # noqa: E402

PROBE = REPO / "bench" / "probe9p.py"
NULL9P = REPO / "bench" / "null9p.py"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int) -> None:
    for _ in range(200):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"nothing listens on {port}")


def probe(*args: str) -> str:
    out = subprocess.run([sys.executable, str(PROBE), *args], capture_output=True, text=True,
                         timeout=600)
    if out.returncode:
        raise SystemExit(f"probe9p {args} failed:\n{out.stdout}{out.stderr}")
    return out.stdout


def figure(pattern: str, text: str) -> float:
    return float(re.search(pattern, text).group(1))


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def idle_connections(port: int, n: int) -> list[socket.socket]:
    conns = []
    for i in range(n):
        s = socket.create_connection(("127.0.0.1", port))
        s.sendall(encode(M.Tversion(NOTAG, 65560, "9P2000")) +
                  encode(M.Tattach(1, 1, NOFID, "bench", "")))
        dec, got = Decoder(1 << 20), 0
        while got < 2:
            dec.feed(s.recv(4096))
            while dec.next_message() is not NEED_DATA:
                got += 1
        conns.append(s)
    return conns


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=2000, help="probe9p --bench iterations")
    ap.add_argument("--rounds", type=int, default=3, help="alternating rounds (median)")
    ap.add_argument("--conns", type=int, default=1000, help="idle connections for RSS")
    a = ap.parse_args()
    if not shutil.which("diod"):
        raise SystemExit("diod is not installed: run scripts/setup")
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))

    folder = Path(tempfile.mkdtemp(prefix="sg-bench-"))
    procs = []
    try:
        (folder / "hello.txt").write_text("hello world\n")
        with open(folder / "big.bin", "wb") as f:
            f.write(os.urandom(64 << 20))
        sport, dport = free_port(), free_port()
        procs.append(subprocess.Popen(
            [sys.executable, "-m", "styxgrid", "exportfs", str(folder), "--listen",
             f"127.0.0.1:{sport}", "--insecure"], stderr=subprocess.DEVNULL, cwd=REPO))
        procs.append(subprocess.Popen(
            ["diod", "-f", "-n", "-l", f"127.0.0.1:{dport}", "-e", str(folder)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        nulls = {}
        for mode in ("trio", "threads"):
            nulls[mode] = free_port()
            procs.append(subprocess.Popen([sys.executable, str(NULL9P), mode,
                                           str(nulls[mode])], cwd=REPO))
        for port in (sport, dport, *nulls.values()):
            wait_port(port)
        styx = ["127.0.0.1:%d" % sport]
        diod = ["127.0.0.1:%d" % dport, "-V", "9P2000.L", "--aname", str(folder)]
        small: dict[str, list[float]] = {"styxgrid": [], "diod": [], "trio": [], "threads": []}
        bulk: dict[str, list[float]] = {"styxgrid": [], "diod": []}
        for _ in range(a.rounds):
            for name, target in (("diod", diod), ("styxgrid", styx)):
                small[name].append(figure(r"([\d.]+) iterations/s",
                                          probe(*target, "--bench", str(a.n))))
                bulk[name].append(figure(r"= ([\d.]+) MiB/s",
                                         probe(*target, "--bulk", "big.bin", "--msize",
                                               "1048576")))
            for mode, port in nulls.items():
                small[mode].append(figure(r"([\d.]+) iterations/s",
                                          probe(f"127.0.0.1:{port}", "--bench", str(a.n))))
        s_small, d_small = statistics.median(small["styxgrid"]), statistics.median(small["diod"])
        s_bulk, d_bulk = statistics.median(bulk["styxgrid"]), statistics.median(bulk["diod"])
        print(f"probe9p --bench {a.n} (walk+open+read+clunk), median of {a.rounds}:")
        print(f"  styxgrid exportfs {s_small:9.1f} iterations/s")
        print(f"  diod              {d_small:9.1f} iterations/s")
        print(f"  ratio styxgrid/diod {s_small / d_small:.2f}  (target >= 1.0)")
        for mode, label in (("trio", "on trio"), ("threads", "thread per connection")):
            rate = statistics.median(small[mode])
            print(f"  for scale: null9p.py {label:22} {rate:9.1f} iterations/s = "
                  f"{rate / d_small:.2f} x diod; styxgrid = {s_small / rate:.2f} x it")
        print("probe9p --bulk 64 MiB, msize asked 1 MiB (diod caps at 64 KiB):")
        print(f"  styxgrid exportfs {s_bulk:9.1f} MiB/s")
        print(f"  diod              {d_bulk:9.1f} MiB/s")
        print(f"  ratio styxgrid/diod {s_bulk / d_bulk:.2f}  (target >= 0.8)")

        before = rss_kib(procs[0].pid)
        conns = idle_connections(sport, a.conns)
        time.sleep(0.5)
        after = rss_kib(procs[0].pid)
        per = (after - before) / a.conns
        print(f"{a.conns} idle attached connections: server RSS {before} -> {after} KiB, "
              f"{per:.1f} KiB per connection (target <= 50)")
        for s in conns:
            s.close()
    finally:
        for p in procs:
            p.terminate()
            p.wait()
        shutil.rmtree(folder, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
