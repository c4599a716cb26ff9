"""Task throughput and latency of a local grid, side by side with the spawn floor.

One invocation:
1. 2,000 x /bin/true as one job of 2,000 tasks through `styxgrid up --workers 2`,
   against `xargs -P2`, GNU `parallel -j2` and a plain Python loop of
   subprocess.run in 2 threads (the spawn floor); tasks/s and every ratio.
   For scale, also the worker's own way of starting a task with no grid around it:
   two trio loops of posix_spawn + pidfd, each task with its stdout/stderr files,
   its folder and its nice value, as the worker does.
2. The same through a scheduler on TCP+TLS (grid CA, worker certificate) against
   the unix socket of (1).
3. 200 single-task jobs one after another on the idle grid: submit -> finished
   latency p50 / p99 (submit is a write to /new, finished is the read of `wait`).

Both grids stay up (idle) while the other runners run, and each round runs every
runner once, so that every ratio compares runs made in the same spell of the
machine's mood; the figures are the medians over the rounds.

    .venv/bin/python bench/throughput.py [--tasks 2000] [--jobs 200]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time

import trio

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from styxgrid import api  # noqa: E402
from styxgrid.security.ca import CA  # noqa: E402
from styxgrid.security.identity import Identity  # noqa: E402
from styxgrid.worker.config import WorkerConfig  # noqa: E402

TRUE = shutil.which("true") or "/bin/true"
NICE = WorkerConfig.nice                    # the worker's default


def python_floor(n: int) -> float:
    """subprocess.run of /bin/true, n times, in 2 threads."""
    todo = list(range(n))
    lock = threading.Lock()

    def loop() -> None:
        while True:
            with lock:
                if not todo:
                    return
                todo.pop()
            subprocess.run([TRUE])
    start = time.perf_counter()
    threads = [threading.Thread(target=loop) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return n / (time.perf_counter() - start)


async def worker_spawn_loop(n: int) -> float:
    """Two loops of what the worker does per task, minus the grid: posix_spawn in
    the task's folder with stdout/stderr to files, nice, wait on a pidfd."""
    left = [n]
    folder = tempfile.mkdtemp(prefix="sgspawn-", dir="/tmp")
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC

    async def loop(i: int) -> None:
        sandbox = os.path.join(folder, str(i))
        os.mkdir(sandbox)
        while left[0] > 0:
            left[0] -= 1
            out = os.open(sandbox + ".stdout", flags, 0o644)
            err = os.open(sandbox + ".stderr", flags, 0o644)
            actions = [(os.POSIX_SPAWN_OPEN, 0, "/dev/null", os.O_RDONLY, 0),
                       (os.POSIX_SPAWN_DUP2, out, 1), (os.POSIX_SPAWN_DUP2, err, 2)]
            os.chdir(sandbox)
            pid = os.posix_spawn(TRUE, [TRUE], {"STYXGRID_TASK": str(left[0])},
                                 file_actions=actions, setpgroup=0)
            os.chdir("/")
            os.close(out)
            os.close(err)
            os.setpriority(os.PRIO_PGRP, pid, NICE)
            pidfd = os.pidfd_open(pid)
            await trio.lowlevel.wait_readable(pidfd)
            os.waitpid(pid, 0)
            os.close(pidfd)
    start = time.perf_counter()
    try:
        async with trio.open_nursery() as nursery:
            for i in range(2):
                nursery.start_soon(loop, i)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return n / (time.perf_counter() - start)


def shell_rate(command: str, n: int) -> float | None:
    tool = command.split("|")[1].split()[0]
    if not shutil.which(tool):
        return None
    start = time.perf_counter()
    subprocess.run(["bash", "-c", command.format(n=n, true=TRUE)], check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return n / (time.perf_counter() - start)


async def grid_rate(sock: str, n: int, identity: Identity | None = None) -> float:
    async with api.connect(sock, identity=identity) as grid:
        start = time.perf_counter()
        job = await grid.submit(f"cmd {TRUE}\ntasks {n}\nsubmit\n")
        status = await grid.wait(job)
        elapsed = time.perf_counter() - start
        assert status.state == "done", status
    return n / elapsed


async def grid_latency(sock: str, jobs: int) -> list[float]:
    out = []
    async with api.connect(sock) as grid:
        for _ in range(jobs):
            start = time.perf_counter()
            job = await grid.submit(f"submit {TRUE}\n")
            await grid.wait(job)
            out.append(time.perf_counter() - start)
    return out


def start_tls_grid(tmp: str, slots: int) -> tuple[list[subprocess.Popen], str, Identity]:
    """A scheduler on 127.0.0.1 with TLS and one worker with a certificate."""
    ca = CA.init(os.path.join(tmp, "ca"))
    admin = Identity(ca.issue("bench", "admin", os.path.join(tmp, "admin")))
    worker_id = ca.issue("tlsworker", "worker", os.path.join(tmp, "worker"))
    sched = subprocess.Popen([sys.executable, "-m", "styxgrid", "scheduler", "--ca",
                              str(ca.dir), "--state", os.path.join(tmp, "tls-state"),
                              "--listen", "127.0.0.1:0"], stderr=subprocess.PIPE, text=True)
    assert sched.stderr is not None
    addr = next(line for line in sched.stderr if "serving" in line).split()[-1]
    worker = subprocess.Popen([sys.executable, "-m", "styxgrid", "worker", "--scheduler",
                               addr, "--identity", str(worker_id), "--name", "tlsworker",
                               "--slots", str(slots)], stderr=subprocess.PIPE, text=True)
    assert worker.stderr is not None
    next(line for line in worker.stderr if "joined" in line)
    return [worker, sched], addr, admin


def start_grid(state: str, slots: int) -> subprocess.Popen:
    up = subprocess.Popen([sys.executable, "-m", "styxgrid", "up", "--state", state,
                           "--workers", str(slots)], stderr=subprocess.PIPE, text=True)
    assert up.stderr is not None
    for line in up.stderr:
        if "up: scheduler on" in line:
            return up
    raise SystemExit(f"styxgrid up did not start: {up.wait()}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tasks", type=int, default=2000)
    ap.add_argument("--jobs", type=int, default=200)
    ap.add_argument("--rounds", type=int, default=5,
                    help="rounds of every runner; figures are medians over them")
    args = ap.parse_args()
    n = args.tasks

    tmp = tempfile.mkdtemp(prefix="sgbench-", dir="/tmp")
    os.chmod(tmp, 0o755)
    up = start_grid(os.path.join(tmp, "state"), 2)
    tls_procs: list[subprocess.Popen] = []
    try:
        sock = os.path.join(tmp, "state", "scheduler.sock")
        tls_procs, addr, admin = start_tls_grid(tmp, 2)
        trio.run(grid_rate, sock, 200)                      # warm up
        trio.run(grid_rate, addr, 200, admin)
        runners = {
            "grid": lambda: trio.run(grid_rate, sock, n),
            "tls": lambda: trio.run(grid_rate, addr, n, admin),
            "floor": lambda: python_floor(n),
            "spawn_loop": lambda: trio.run(worker_spawn_loop, n),
            "xargs": lambda: shell_rate("seq {n} | xargs -P2 -n1 {true}", n),
            "parallel": lambda: shell_rate("seq {n} | parallel -j2 {true} >/dev/null", n),
        }
        runs: dict[str, list[float]] = {name: [] for name in runners}
        for _ in range(args.rounds):
            for name, run in runners.items():
                rate = run()
                if rate is not None:
                    runs[name].append(rate)
        latencies = trio.run(grid_latency, sock, args.jobs)
    finally:
        for p in [up, *tls_procs]:
            p.terminate()
            p.wait()
        shutil.rmtree(tmp, ignore_errors=True)
    rates = {name: statistics.median(v) if v else None for name, v in runs.items()}
    grid, tls_rate, floor, spawn_loop = (rates[k] for k in ("grid", "tls", "floor",
                                                              "spawn_loop"))
    xargs, parallel = rates["xargs"], rates["parallel"]

    print(f"{n} x {TRUE}, 2 slots (medians of {args.rounds} rounds, each runner once a round)")
    print(f"  {'runner':34} {'tasks/s':>9} {'grid / runner':>14}")
    rows = [("styxgrid up --workers 2", grid),
            ("python subprocess.run x2 threads", floor),
            ("xargs -P2", xargs), ("GNU parallel -j2", parallel)]
    for name, rate in rows:
        if rate is None:
            print(f"  {name:34} {'(not installed)':>9}")
            continue
        print(f"  {name:34} {rate:9.0f} {grid / rate:14.2f}")
    ratios = [g / f for g, f in zip(runs["grid"], runs["floor"])]
    print(f"  target: grid >= 0.6 x spawn floor -> {statistics.median(ratios):.2f} "
          f"(median of the rounds' own: {', '.join(f'{r:.2f}' for r in ratios)})")
    print(f"  for scale: {'the worker spawn loop, no grid':34} {spawn_loop:9.0f} "
          f"{grid / spawn_loop:14.2f}   (= {spawn_loop / floor:.2f} x spawn floor)")
    print(f"  {'styxgrid, worker over TCP+TLS':34} {tls_rate:9.0f}   "
          f"TLS / unix socket = {tls_rate / grid:.2f} (target >= 0.9)")
    lat = sorted(latencies)
    p50 = lat[len(lat) // 2] * 1000
    p99 = lat[min(len(lat) - 1, int(len(lat) * 0.99))] * 1000
    print(f"submit -> finished, {len(lat)} single-task jobs one after another:")
    print(f"  p50 {p50:.2f} ms   p99 {p99:.2f} ms   (targets: p50 <= 3 ms, p99 <= 10 ms)")


if __name__ == "__main__":
    main()
