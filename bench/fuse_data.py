"""Data through the FUSE mount, side by side with the local disk and the 9P client.

One invocation:
1. 256 MiB written sequentially into the mount's /data and read back (dd, 1 MiB
   blocks), against `cp` of the same file on the local disk; MiB/s and ratios.
2. 1,000 x `cat jobs/N/status` through the mount (one process per cat, as a shell
   loop does) against 1,000 open+read+clunk of the same file with the 9P client.

    .venv/bin/python bench/fuse_data.py [--mib 256] [--cats 1000]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time

import trio

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from styxgrid.ninep.client import open_client  # noqa: E402

CLI = [sys.executable, "-m", "styxgrid.cli"]


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

        drop_caches()
        local_copy = size / timed(f"cp {src} {tmp}/local.bin && sync {tmp}/local.bin")
        drop_caches()
        local_read = size / timed(f"cat {tmp}/local.bin > /dev/null")
        drop_caches()
        fuse_write = size / timed(f"dd if={src} of={mnt}/data/big.bin bs=1M status=none && "
                                  f"sync {state}/data/big.bin")
        drop_caches()
        fuse_read = size / timed(f"dd if={mnt}/data/big.bin of=/dev/null bs=1M status=none")
        same = subprocess.run(["cmp", src, f"{mnt}/data/big.bin"]).returncode == 0

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

    print(f"sequential data, {size} MiB, page cache dropped before each run:")
    print(f"  {'':34} {'MiB/s':>8} {'ratio':>7}")
    print(f"  {'cp on the local disk (baseline)':34} {local_copy:8.0f}")
    print(f"  {'write into mount /data (dd 1M)':34} {fuse_write:8.0f} "
          f"{fuse_write / local_copy:7.2f}")
    print(f"  {'cat of the local file (baseline)':34} {local_read:8.0f}")
    print(f"  {'read from mount /data (dd 1M)':34} {fuse_read:8.0f} {fuse_read / local_read:7.2f}")
    print(f"  bytes identical after the round trip: {same}   (target: ratios >= 0.5)")
    print(f"{n} x status reads:")
    print(f"  cat jobs/1/status through the mount: {cats:8.0f} /s")
    print(f"  9P client open+read+clunk:           {reads:8.0f} /s")


if __name__ == "__main__":
    main()
