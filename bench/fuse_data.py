"""Data through the FUSE mount, side by side with the local disk and the 9P client.

One invocation:
1. A 256 MiB file copied with `cp` into the mount's /data and back out to the local
   disk, against `cp` of the same file from the local disk to the local disk (each
   followed by sync, the page cache dropped before each); MiB/s and ratios.
2. 1,000 x `cat jobs/N/status` through the mount (one process per cat, as a shell
   loop does) against 1,000 open+read+clunk of the same file with the 9P client.

    .venv/bin/python bench/fuse_data.py [--mib 256] [--cats 1000]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

import trio

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from styxgrid.ninep.client import open_client  # noqa: E402

CLI = [sys.executable, "-m", "styxgrid"]


def timed(cmd: str) -> float:
    start = time.perf_counter()
    subprocess.run(["bash", "-c", cmd], check=True)
    return time.perf_counter() - start


def drop_caches() -> None:
    subprocess.run(["bash", "-c", "sync; echo 3 > /proc/sys/vm/drop_caches"],
                   stderr=subprocess.DEVNULL)


def wait_line(process: subprocess.Popen, word: str) -> None:
    assert process.stderr is not None
    for line in process.stderr:
        if word in line:
            return
    raise SystemExit(f"{process.args} ended before {word!r}")


async def client_reads(sock: str, path: str, n: int) -> float:
    async with open_client(sock) as c:
        start = time.perf_counter()
        for _ in range(n):
            await c.read_file(path)
        return n / (time.perf_counter() - start)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--mib", type=int, default=256)
    ap.add_argument("--cats", type=int, default=1000)
    ap.add_argument("--rounds", type=int, default=3, help="medians of this many copies")
    args = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="sgfuse-", dir="/tmp")
    state, mnt = os.path.join(tmp, "state"), os.path.join(tmp, "mnt")
    os.mkdir(mnt)
    sock = os.path.join(state, "scheduler.sock")
    sched = subprocess.Popen([*CLI, "scheduler", "--state", state], stderr=subprocess.PIPE,
                             text=True)
    wait_line(sched, "serving")
    mount = subprocess.Popen([*CLI, "mount", "--foreground", sock, mnt],
                             stderr=subprocess.PIPE, text=True)
    wait_line(mount, "mounted on")
    try:
        src = os.path.join(tmp, "src.bin")
        with open(src, "wb") as f:
            for _ in range(args.mib):
                f.write(os.urandom(1 << 20))
        size = args.mib

        def rate(cmd: str, made: str) -> float:
            """MiB/s of `cmd` (page cache dropped first, `made` removed after)."""
            drop_caches()
            speed = size / timed(cmd)
            if made != f"{tmp}/back.bin":
                os.unlink(made)
            return speed
        rounds: dict[str, list[float]] = {"local": [], "cat": [], "write": [], "read": []}
        for _ in range(args.rounds):               # interleaved: the disk's mood is shared
            rounds["local"].append(rate(f"cp {src} {tmp}/local.bin && sync {tmp}/local.bin",
                                        f"{tmp}/local.bin"))
            rounds["cat"].append(rate(f"cat {src} > {tmp}/local.bin && sync {tmp}/local.bin",
                                      f"{tmp}/local.bin"))
            rounds["write"].append(rate(f"cp {src} {mnt}/data/big.bin && "
                                        f"sync {state}/data/big.bin", f"{mnt}/data/big.bin"))
        subprocess.run(["cp", src, f"{mnt}/data/big.bin"], check=True)
        for _ in range(args.rounds):
            rounds["read"].append(rate(f"cp {mnt}/data/big.bin {tmp}/back.bin && "
                                       f"sync {tmp}/back.bin", f"{tmp}/back.bin"))
        local_copy, local_cat, fuse_write, fuse_read = (
            statistics.median(rounds[k]) for k in ("local", "cat", "write", "read"))
        same = subprocess.run(["cmp", src, f"{tmp}/back.bin"]).returncode == 0

        subprocess.run(["bash", "-c", f"echo 'submit true' > {mnt}/new"], check=True)
        n = args.cats
        status = f"{mnt}/jobs/1/status"
        cats = n / timed(f"for i in $(seq {n}); do cat {status}; done > /dev/null")
        reads = trio.run(client_reads, sock, "jobs/1/status", n)
    finally:
        mount.terminate()
        mount.wait()
        sched.terminate()
        sched.wait()
        shutil.rmtree(tmp, ignore_errors=True)

    print(f"sequential data, {size} MiB, page cache dropped before each copy, sync after, "
          f"medians of {args.rounds}:")
    print(f"  {'':38} {'MiB/s':>8} {'ratio':>7}")
    print(f"  {'cp local disk -> local disk (baseline)':38} {local_copy:8.0f}")
    print(f"  {'cat local > local (no copy_file_range)':38} {local_cat:8.0f}")
    print(f"  {'cp local disk -> mount /data':38} {fuse_write:8.0f} "
          f"{fuse_write / local_copy:7.2f}")
    print(f"  {'cp mount /data -> local disk':38} {fuse_read:8.0f} "
          f"{fuse_read / local_copy:7.2f}")
    print(f"  bytes identical after the round trip: {same}   (target: ratios >= 0.5)")
    print(f"{n} x status reads:")
    print(f"  cat jobs/1/status through the mount: {cats:8.0f} /s")
    print(f"  9P client open+read+clunk:           {reads:8.0f} /s")


if __name__ == "__main__":
    main()
