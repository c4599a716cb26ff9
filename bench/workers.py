"""Many workers on one scheduler: memory with them parked, and the dispatch rate.

DESIGN's target: 10,000 workers connected, each parked on /work, in <= 1 GiB of
scheduler RSS, and the dispatch rate with 10,000 connected within 0.8 x the rate
with 10 (no per-dispatch scan of all workers or all tasks).

The workers here are minimal 9P clients in this one process (each its own
connection): join with one slot, keep one read of /work waiting, and report each
task done as soon as it arrives.  The rate is tasks of one job handed out and
reported per second, from the write that submits it to the end of its `wait`; it
includes this one process serving every worker connection, so the scheduler's own
CPU time per task is printed beside it (that is what a per-dispatch scan of the
workers would make grow).

    .venv/bin/python bench/workers.py [--many 10000] [--few 10] [--tasks 20000]
"""

from __future__ import annotations

import argparse
import gc
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time

import trio

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from styxgrid.scheduler.config import SchedulerConfig  # noqa: E402
from styxgrid.ninep.client import Client, open_client  # noqa: E402
from styxgrid.ninep.messages import OREAD, ORDWR  # noqa: E402
from styxgrid.api import GridClient  # noqa: E402
from styxgrid.exchange import Done, Join, parse_tasks  # noqa: E402


WORKER_MSIZE = 8192      # these workers read task records and write `done` lines only


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


async def worker(sock: str, name: str, dialling: trio.Semaphore,
                 joined: trio.Semaphore) -> None:
    """Join, then take tasks and report them done at once, forever.  `dialling`
    keeps the connects in flight within the listen backlog (a unix socket connect
    that finds the backlog full fails)."""
    await dialling.acquire()
    async with open_client(sock, aname="worker", msize=WORKER_MSIZE) as client:
        ctl = await client.open("work", ORDWR)
        await ctl.pwrite(0, Join(name, 1).encode())
        lease = await client.open("work", OREAD)
        dialling.release()
        joined.release()
        while True:
            data = await lease.pread(0, lease.iounit)
            await ctl.pwrite(0, b"".join(Done(t.job, t.task, 0).encode()
                                         for t in parse_tasks(data)))


async def dispatch_rate(client: Client, tasks: int, pid: int) -> tuple[float, float]:
    """(tasks/s, scheduler CPU microseconds per task) for one job of `tasks`."""
    start, cpu = time.perf_counter(), cpu_seconds(pid)
    grid = GridClient(client)
    job = await grid.submit(f"cmd true\ntasks {tasks}\nsubmit\n")
    status = await grid.wait(job)
    assert status.done == tasks, status
    return tasks / (time.perf_counter() - start), (cpu_seconds(pid) - cpu) * 1e6 / tasks


async def measure(sock: str, pid: int, count: int, tasks: int,
                  rounds: int) -> tuple[float, float, float]:
    """(scheduler RSS with `count` workers parked, median tasks/s, median scheduler
    CPU microseconds per task)."""
    joined, dialling = trio.Semaphore(0), trio.Semaphore(1000)
    async with trio.open_nursery() as nursery:
        start = time.perf_counter()
        for i in range(count):
            nursery.start_soon(worker, sock, f"b{count}-{i}", dialling, joined)
        for _ in range(count):
            await joined.acquire()
        took = time.perf_counter() - start
        await trio.sleep(0.5)
        parked = rss_mib(pid)
        print(f"  {count} workers joined in {took:.1f} s")
        async with open_client(sock) as client:
            await dispatch_rate(client, min(tasks, 1000), pid)       # warm up
            runs = [await dispatch_rate(client, tasks, pid) for _ in range(rounds)]
        nursery.cancel_scope.cancel()
    middle = len(runs) // 2
    return (parked, sorted(r for r, _ in runs)[middle], sorted(c for _, c in runs)[middle])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--many", type=int, default=10000)
    ap.add_argument("--few", type=int, default=10)
    ap.add_argument("--tasks", type=int, default=20000)
    ap.add_argument("--rounds", type=int, default=3, help="medians of this many runs")
    args = ap.parse_args()
    gc.set_threshold(*SchedulerConfig.gc_thresholds)   # this process holds every worker, too
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    if hard < args.many + 100:
        raise SystemExit(f"open files limit {hard} is below {args.many} connections")
    tmp = tempfile.mkdtemp(prefix="sgworkers-", dir="/tmp")
    sock = os.path.join(tmp, "s.sock")
    # a heartbeat timeout long enough that 10,000 workers that send none are not lost
    sched = subprocess.Popen([sys.executable, "-m", "styxgrid", "scheduler", "--state",
                              os.path.join(tmp, "state"), "--listen", sock,
                              "--heartbeat-timeout", "3600"], stderr=subprocess.PIPE, text=True)
    try:
        assert sched.stderr is not None
        next(line for line in sched.stderr if "serving" in line)
        results = {}
        for count in (args.few, args.many):
            results[count] = trio.run(measure, sock, sched.pid, count, args.tasks, args.rounds)
    finally:
        sched.terminate()
        sched.wait()
        shutil.rmtree(tmp, ignore_errors=True)
    few_rss, few_rate, few_cpu = results[args.few]
    many_rss = results[args.many][0]
    print(f"one job of {args.tasks} tasks, workers reporting at once (medians of "
          f"{args.rounds}):")
    print(f"  {'workers connected':>18} {'scheduler RSS MiB':>18} {'tasks/s':>9} "
          f"{'rate / with ' + str(args.few):>15} {'scheduler CPU us/task':>22}")
    for count, (rss, rate, cpu) in results.items():
        print(f"  {count:18} {rss:18.0f} {rate:9.0f} {rate / few_rate:15.2f} {cpu:22.0f}")
    print(f"  each worker beyond the first {args.few}: "
          f"{(many_rss - few_rss) * 1024 / (args.many - args.few):.1f} KiB of scheduler RSS")
    print(f"  targets: {args.many} workers in <= 1024 MiB; rate with {args.many} >= 0.8 x "
          f"with {args.few}")


if __name__ == "__main__":
    main()
