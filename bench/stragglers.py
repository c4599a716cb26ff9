"""Makespan of a job on a grid with one slow node, with and without copies of
slow tasks (`speculate`), side by side in one invocation.

One scheduler and three single-slot workers (fast1, fast2, slow) on this
machine; a job of --tasks tasks, each of which takes --work seconds, except on
`slow`, where it takes --slow seconds (a desktop whose owner's work starves the
task, or a machine that is simply slow).  Each round submits the job twice, with
the default `speculate` and with `speculate off`; the figures are the medians
of the rounds' makespans (submit to `wait`), and their ratio.

    .venv/bin/python bench/stragglers.py [--tasks 20] [--work 0.3] [--slow 20] [--rounds 3]
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

from styxgrid import api  # noqa: E402

NODES = ("fast1", "fast2", "slow")


def start(args: list[str], ready: str) -> subprocess.Popen:
    """A styxgrid process, once its stderr says `ready`."""
    proc = subprocess.Popen([sys.executable, "-m", "styxgrid", *args],
                            stderr=subprocess.PIPE, text=True)
    assert proc.stderr is not None
    for line in proc.stderr:
        if ready in line:
            return proc
    raise SystemExit(f"styxgrid {args[0]} did not start: {proc.wait()}")


def description(tasks: int, work: float, slow: float, speculate: str) -> str:
    script = (f'if [ "$STYXGRID_NODE" = slow ]; then sleep {slow}; else sleep {work}; fi; '
              'echo $STYXGRID_TASK')
    return (f"cmd sh\nargs -c '{script}'\ntasks {tasks}\n"
            + (f"speculate {speculate}\n" if speculate else "") + "submit\n")


async def makespan(sock: str, text: str) -> float:
    async with api.connect(sock) as grid:
        began = time.perf_counter()
        job = await grid.submit(text)
        status = await grid.wait(job)
        took = time.perf_counter() - began
        if status.state != "done":
            raise SystemExit(f"job {job} ended {status.state}")
        return took


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", type=int, default=20)
    parser.add_argument("--work", type=float, default=0.3)
    parser.add_argument("--slow", type=float, default=20.0)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    tmp = tempfile.mkdtemp(prefix="sg-bench-", dir="/tmp")
    os.chmod(tmp, 0o755)                       # task users pass through to their folders
    sock = os.path.join(tmp, "s.sock")
    procs: list[subprocess.Popen] = []
    try:
        procs.append(start(["scheduler", "--state", os.path.join(tmp, "state"), "--listen",
                            sock], "serving"))
        for name in NODES:
            procs.append(start(["worker", "--scheduler", sock, "--name", name, "--slots", "1",
                                "--workdir", os.path.join(tmp, name)], "joined"))
        runs: dict[str, list[float]] = {"speculate 3 (default)": [], "speculate off": []}
        for _ in range(args.rounds):
            for label, word in (("speculate 3 (default)", ""), ("speculate off", "off")):
                took = trio.run(makespan, sock, description(args.tasks, args.work, args.slow,
                                                            word))
                runs[label].append(took)
        print(f"{args.tasks} tasks of {args.work:g}s on 3 single-slot nodes, one of which "
              f"takes {args.slow:g}s a task (medians of {args.rounds} rounds)")
        print(f"  {'runner':28} {'makespan s':>10}   rounds")
        medians = {}
        for label, times in runs.items():
            medians[label] = statistics.median(times)
            print(f"  {label:28} {medians[label]:10.2f}   "
                  + " ".join(f"{t:.2f}" for t in times))
        ratio = medians["speculate off"] / medians["speculate 3 (default)"]
        ideal = args.tasks * args.work / 2
        print(f"  without / with copies = {ratio:.1f}x (target >= 3x); the two fast nodes "
              f"alone would take {ideal:.2f}s")
    finally:
        for proc in reversed(procs):
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
