"""Fair share between users on a real grid (issue: many users on one grid):
two users' jobs share the slots, an admin's factor changes the share, and
survives a restart."""

from __future__ import annotations

import signal
import subprocess

import pytest
import trio

from styxgrid.ninep import NinePError
from styxgrid.ninep.client import open_client

from ..helpers import STYXGRID, submit, wait
from ..security.test_security import tgrid  # noqa: F401  (the fixture)

SHORT = "cmd sleep 0.2\ntasks 100\nsubmit\n"


async def starts_in_order(client, jobs: dict[int, str], submitted: trio.Event,
                          into: list[str]) -> None:
    """The job of each `running` line of /events (and `submit J` for each
    job's submission), from before the jobs are submitted until all ended."""
    ended = set()
    events = await client.open("events")              # lines from the moment of open
    submitted.set()
    rest = b""
    while True:
        *lines, rest = (rest + await events.read()).split(b"\n")   # whole lines only
        for line in map(bytes.decode, lines):
            words = line.split()
            if len(words) >= 6 and words[1] == "job" and words[3] == "task" \
                    and words[5] == "running":
                into.append(words[2])
            elif len(words) == 4 and words[1] == "job" and words[3] == "done":
                ended.add(int(words[2]))
            elif len(words) >= 4 and words[1] == "job" and words[3] == "submitted":
                into.append(f"submit {words[2]}")
        if ended >= set(jobs):
            await events.close()
            return


async def test_two_users_share_the_slots_and_the_later_one_starts_at_once(tgrid):  # noqa: F811
    alice, bob = tgrid.identity("alice", "user"), tgrid.identity("bob", "user")
    boss = tgrid.identity("boss", "admin")                 # sees every job's events
    tgrid.worker("four", "--slots", "4")
    async with tgrid.client(alice) as a, tgrid.client(bob) as b, tgrid.client(boss) as ev:
        order: list[str] = []
        jobs: dict[int, str] = {}
        ready = trio.Event()
        with trio.fail_after(120):
            async with trio.open_nursery() as nursery:
                jobs[0] = "none"
                nursery.start_soon(starts_in_order, ev, jobs, ready, order)
                await ready.wait()
                jobs[await submit(a, SHORT)] = "alice"
                jobs[await submit(b, SHORT)] = "bob"
                del jobs[0]
    names = {str(j): user for j, user in jobs.items()}
    order = [names.get(o, o) if not o.startswith("submit ") else
             "submit " + names.get(o.split()[1], "?") for o in order]
    assert order.count("alice") == order.count("bob") == 100, order[:30]
    since_bob = order[order.index("submit bob") + 1:]
    assert since_bob[0] == "bob", order[:20]             # the first slot that frees
    started = {"alice": order[:order.index("submit bob")].count("alice"), "bob": 0}
    window = {"alice": 0, "bob": 0}                      # while both have tasks queued
    for user in since_bob:
        if max(started.values()) == 100:
            break
        started[user] += 1
        window[user] += 1
    total = sum(window.values())
    assert abs(window["alice"] - window["bob"]) <= 0.1 * total, window


async def test_an_admin_sets_a_factor_that_users_see_and_cannot_change(tgrid):  # noqa: F811
    alice, boss = tgrid.identity("alice", "user"), tgrid.identity("boss", "admin")
    async with tgrid.client(alice) as a, tgrid.client(boss) as root:
        await submit(a, "cmd true\nsubmit\n")
        with pytest.raises(NinePError, match="permission denied"):
            await a.write_file("users/alice/ctl", b"factor 1\n")
        for bad in (b"factor 0.5\n", b"factor nan\n", b"factor 1e9\n", b"factor\n"):
            with pytest.raises(NinePError, match="want 'factor F' with F a number in "
                                                 "1..1e"):
                await root.write_file("users/alice/ctl", bad)
        await root.write_file("users/alice/ctl", b"factor 2.5\n")
        index = (await a.read_file("users/index")).decode()
        assert index.startswith("alice usage=0.0 factor=2.5 priority=1.2 running=0 "), index
        assert "queued=1" in index
        assert await a.read_file("users/alice/status") == index.encode()


async def test_factors_and_usage_survive_a_restart_of_the_scheduler(grid):
    grid.start_worker("w1", 1)
    async with open_client(grid.sock) as c:
        job = await submit(c, "cmd sleep 0.5\nsubmit\n")
        assert " done " in await wait(c, job)
        cli = [*STYXGRID, "--scheduler", grid.sock, "users"]
        done = await trio.to_thread.run_sync(subprocess.run, [*cli, "carol", "3"])
        assert done.returncode == 0
        shown = await trio.to_thread.run_sync(
            lambda: subprocess.run(cli, capture_output=True, text=True))
        assert shown.stdout.split("\n")[0].split() == ["USER", "PRIORITY", "USAGE", "FACTOR",
                                                       "RUN", "QUEUED"], shown
        assert shown.stdout.split("\n")[2].split()[0] == "carol", shown   # worst last
        before = (await c.read_file("users/index")).decode()
    grid.scheduler.popen.send_signal(signal.SIGTERM)
    grid.scheduler.popen.wait()
    grid.start_scheduler()
    async with open_client(grid.sock) as c:
        after = (await c.read_file("users/index")).decode()
    assert "carol usage=0.0 factor=3 " in after
    root_before = next(line for line in before.splitlines() if line.startswith("root "))
    root_after = next(line for line in after.splitlines() if line.startswith("root "))
    assert float(root_after.split()[1].split("=")[1]) >= 0.4, (root_before, root_after)
