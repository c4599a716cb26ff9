"""The fuzzer of tests/fuzzing.py at length: N messages (default 1,000,000) against
a live scheduler (as a user and as a worker on its unix socket, and unauthenticated
on its TLS port) and a live exportfs, while an honest user submits and reads.

Prints messages sent and answered per target, crashes (servers that exited: must
be 0), internal errors the servers logged, the honest operations and their
p50/p99 against the same operations on an idle grid in the same run (the
baseline), and the scheduler's RSS before and after.

    .venv/bin/python bench/fuzz.py [--messages 1000000] [--seed 1]
"""

from __future__ import annotations

import argparse
import functools
import os
import pwd
import re
import statistics
import subprocess
import sys
import tempfile
import threading

import trio

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from styxgrid.ninep.client import open_client  # noqa: E402
from styxgrid.ninep.transport import connect, parse_address, transport_for  # noqa: E402
from styxgrid.security import tls  # noqa: E402
from tests.fuzzing import Honest, Tally, fuzz, honest_user  # noqa: E402

STYXGRID = [sys.executable, "-m", "styxgrid"]


class Server:
    """A styxgrid process; its stderr is kept (and read to the end, never blocking)."""

    def __init__(self, args: list[str]) -> None:
        self.popen = subprocess.Popen(STYXGRID + args, stderr=subprocess.PIPE, text=True,
                                      stdout=subprocess.DEVNULL)
        self.lines: list[str] = []
        assert self.popen.stderr is not None
        for line in self.popen.stderr:
            self.lines.append(line)
            m = re.search(r"serving \S+ on (\S+)", line)
            if m:
                self.address = m.group(1)
                break
        else:
            raise SystemExit(f"{args} did not start: {''.join(self.lines)}")
        threading.Thread(target=self.read_rest, daemon=True).start()

    def read_rest(self) -> None:
        assert self.popen.stderr is not None
        for line in self.popen.stderr:
            self.lines.append(line)

    def rss_mb(self) -> float:
        with open(f"/proc/{self.popen.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS"):
                    return int(line.split()[1]) / 1024
        return 0.0

    def stop(self) -> None:
        self.popen.terminate()
        self.popen.wait(10)


async def dial(address: str):
    return transport_for(await connect(parse_address(address)))


async def dial_tls(address: str):
    host, port = address.rsplit(":", 1)
    return await tls.connect(host, int(port), tls.pinning_context())


def percentiles(xs: list[float]) -> str:
    if len(xs) < 2:
        return "n/a"
    q = statistics.quantiles(xs, n=100)
    return f"p50 {q[49] * 1e3:6.2f} ms  p99 {q[98] * 1e3:6.2f} ms"


async def honest_for(sock: str, seconds: float | None, stop: trio.Event) -> Honest:
    honest = Honest()
    me = pwd.getpwuid(os.getuid()).pw_name
    async with open_client(sock) as client:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(honest_user, client, me, honest, stop)
            if seconds is not None:
                await trio.sleep(seconds)
                stop.set()
    return honest


async def main(args: argparse.Namespace, sched: Server, secure: Server, export: Server) -> None:
    baseline = await honest_for(sched.address, 5.0, trio.Event())
    targets = [("scheduler as a user", functools.partial(dial, sched.address), "root", ""),
               ("scheduler as a worker", functools.partial(dial, sched.address), "root",
                "worker"),
               ("scheduler TLS, no certificate", functools.partial(dial_tls, secure.address),
                "anyone", "join"),
               ("exportfs", functools.partial(dial, export.address), "root", "")]
    share = args.messages // len(targets)
    tallies = [Tally() for _ in targets]
    stop = trio.Event()
    rss_before = sched.rss_mb()
    async with trio.open_nursery() as nursery:
        honest_task: list[Honest] = []

        async def honest() -> None:
            honest_task.append(await honest_for(sched.address, None, stop))
        nursery.start_soon(honest)
        async with trio.open_nursery() as fuzzers:
            for seed, ((_, dialer, uname, aname), tally) in enumerate(zip(targets, tallies)):
                fuzzers.start_soon(fuzz, dialer, share, args.seed + seed, uname, aname, tally)
        stop.set()
    await trio.sleep(1.0)
    rss_after = sched.rss_mb()
    servers = (sched, secure, export)
    crashes = sum(s.popen.poll() is not None for s in servers)
    internal = sum(" failed: " in line or "internal error" in line
                   for s in servers for line in s.lines)
    print(f"{args.messages:,} messages, seed {args.seed}")
    for (name, *_), tally in zip(targets, tallies):
        print(f"  {name:32} sent {tally.sent:>9,}  answered {tally.answered:>9,}  "
              f"connections closed by the server {tally.closed:,}")
    print(f"  crashes (servers that exited): {crashes}   internal errors logged: {internal}")
    honest_ops = honest_task[0] if honest_task else Honest()
    print(f"  honest user under fuzzing: {honest_ops.ops:>6} ops  "
          f"{percentiles(honest_ops.latencies)}")
    print(f"  honest user, idle grid:    {baseline.ops:>6} ops  "
          f"{percentiles(baseline.latencies)}   (baseline, same run)")
    print(f"  scheduler RSS: {rss_before:.1f} MB before, {rss_after:.1f} MB after")


def run() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--messages", type=int, default=1_000_000)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="sg-fuzz-") as d:
        export_dir = os.path.join(d, "export")
        os.makedirs(export_dir)
        subprocess.run(STYXGRID + ["ca", "init", "--dir", os.path.join(d, "ca")], check=True,
                       capture_output=True)
        sched = Server(["scheduler", "--state", os.path.join(d, "state"),
                        "--listen", os.path.join(d, "s.sock")])
        secure = Server(["scheduler", "--ca", os.path.join(d, "ca"), "--state",
                         os.path.join(d, "tls-state"), "--listen", "127.0.0.1:0", "--insecure"])
        export = Server(["exportfs", export_dir, "--listen", "127.0.0.1:0", "--insecure"])
        try:
            trio.run(main, args, sched, secure, export)
        finally:
            for s in (sched, secure, export):
                if s.popen.poll() is None:
                    s.stop()


if __name__ == "__main__":
    run()
