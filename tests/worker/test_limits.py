"""Holding a task to its requests: the pool of what is free, cgroup v1 on this
machine for real (a process allocating past its limit is killed in its cgroup),
cgroup v2's files on a folder laid out as one, rlimits, and the looks at memory
and folder size."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest
import trio

from styxgrid.resources import Need
from styxgrid.worker import cgroup2, limits, places
from styxgrid.worker.pool import Pool
from styxgrid.worker.sandbox import folder_size

HOG = [sys.executable, "-c", "import sys, time; b = [bytearray(1 << 20) for _ in "
       "range(int(sys.argv[1]))]; time.sleep(float(sys.argv[2]))"]


def spawn(place, argv, setsid=False):
    """Start `argv` in the place as the worker does (Process, less the files)."""
    def start():
        pid = None
        try:
            pid = os.posix_spawn(argv[0], argv, dict(os.environ),
                                 setpgroup=None if setsid else 0, setsid=setsid)
            place.limit(pid)
        finally:
            place.after_spawn(pid)
        return pid
    return trio.run(place.spawn, start)


def gone(pid):
    """Whether the process has ended (a zombie no one reaped has ended too)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rpartition(")")[2].split()[0] == "Z"
    except FileNotFoundError:
        return True


def status_of(pid):
    return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])


def test_the_pool_starts_what_fits_and_gives_gpus_by_device():
    pool = Pool(Need(4, 8192, 10_000, 2), ("0", "3"))
    assert pool.take(Need(2, 4096, 100, 1)) == ("0",)
    assert not pool.fits(Need(1, 4097, 1, 0)) and pool.fits(Need(2, 4096, 1, 1))
    assert not pool.ever_fits(Need(1, 1, 1, 3))
    given = pool.take(Need(1, 1024, 1, 1))
    assert given == ("3",) and pool.free == [1, 3072, 9899, 0]
    pool.give_back(Need(1, 1024, 1, 1), given)
    assert pool.gpus == ["3"] and pool.free[3] == 1


@pytest.fixture
def v1():
    chosen = limits.choose("cgroup", f"test-{os.getpid()}", nice=10)
    assert chosen.kind == "cgroup1"        # these machines: v1 writable, v2 without memory
    yield chosen
    chosen.close()
    assert not any(os.path.exists(base) for base in chosen.bases.values())


def test_cgroup_v1_starts_a_task_inside_and_the_kernel_stops_it_past_its_memory(v1):
    place = v1.take()
    place.prepare(Need(1, 64, 1, 0))
    with open(f"{place.dirs['memory']}/memory.limit_in_bytes") as f:
        assert int(f.read()) == 64 << 20
    with open(f"{place.dirs['cpu']}/cpu.cfs_quota_us") as f:
        assert int(f.read()) == places.CPU_PERIOD
    with open(f"{place.dirs['cpu']}/cpu.shares") as f:      # a process at nice 10 weighs 110
        assert int(f.read()) == 110
    with open(f"{v1.bases['cpu']}/cpu.shares") as f:        # and all its tasks, one such
        assert int(f.read()) == 110
    pid = spawn(place, HOG + ["10", "5"])
    with open(f"/proc/{pid}/cgroup") as f:
        text = f.read()
    assert all(p.split("/sys/fs/cgroup/" + c)[1] in text
               for c, p in place.dirs.items()), text
    assert place.pids() == [pid]
    os.kill(pid, signal.SIGKILL)
    status_of(pid)
    assert not place.over_memory()           # killed by us: not over its memory
    pid = spawn(place, HOG + ["200", "5"])
    assert status_of(pid) == -signal.SIGKILL
    assert place.over_memory()
    place.prepare(Need(2, 256, 1, 0))        # raised: memory+swap first, then memory
    assert status_of(spawn(place, HOG + ["100", "0"])) == 0
    assert not place.over_memory()
    v1.give_back(place)


def test_what_leaves_the_task_s_process_group_dies_with_its_place(v1):
    place = v1.take()
    place.prepare(Need())
    pid = spawn(place, ["/bin/sh", "-c", "setsid sleep 61 & sleep 0.2"])
    assert status_of(pid) == 0
    left = [p for p in place.pids()]
    assert left, "the setsid'd sleep should still be in the place"
    v1.give_back(place)                      # SIGKILL to each: gone once reaped by init
    deadline = time.time() + 5
    while place.pids() and time.time() < deadline:
        time.sleep(0.02)
    assert place.pids() == []


HOPPER = [sys.executable, "-c", "import os\nos.setsid()\nwhile True:\n    if os.fork():\n"
          "        os._exit(0)"]


def test_a_leftover_that_forks_and_exits_in_a_loop_dies_with_its_place(v1):
    """One pass of SIGKILL over the place's list misses the child forked meanwhile."""
    for _ in range(5):
        place = v1.take()
        place.prepare(Need())
        pid = spawn(place, ["/bin/sh", "-c", " ".join(HOPPER[:2]) + " '" + HOPPER[2] +
                            "' & sleep 0.3"])
        assert status_of(pid) == 0
        assert place.pids(), "the hopper should still be in the place"
        v1.give_back(place)                  # nothing listed once forks were barred:
        assert place.pids() == [], "a hopper outlived its place's end"    # none left to fork


def test_a_place_left_holding_memory_is_not_given_to_the_next_task(v1):
    """A file in a tmpfs outlives its task and stays charged to the task's
    cgroup: the next task there would start with it counted against its
    request, and one asking for less could not have its limit set at all."""
    shm = f"/dev/shm/sg-test-{os.getpid()}"
    try:
        for give_back in (v1.give_back, v1.free.append):   # the worker's way; and a place
            place = v1.take_for(Need(1, 512, 1, 0))          # found so with its limit
            pid = spawn(place, ["/bin/sh", "-c", f"head -c 100M /dev/zero > {shm}"])
            assert status_of(pid) == 0 and place.holds_memory()
            give_back(place)
            fresh = v1.take_for(Need(1, 64, 1, 0))           # below what the old one holds
            assert fresh is not place and place not in v1.made and not fresh.holds_memory()
            assert status_of(spawn(fresh, HOG + ["32", "0"])) == 0
            v1.give_back(fresh)
            os.unlink(shm)
    finally:
        if os.path.exists(shm):
            os.unlink(shm)


def test_strange_names_beside_the_places_are_left_and_two_workers_clear_at_once():
    with open("/proc/self/cgroup") as f:
        folder = "/sys/fs/cgroup/pids" + places.own_cgroups(f.read())["pids"].rstrip("/")
    strange = [f"{folder}/styxgrid-x-99999999999999999999", f"{folder}/styxgrid-x-\u00b2",
               f"{folder}/styxgrid-0123456789ab-99999999"]
    stale = [f"{folder}/styxgrid-{os.getpid() % 4096:012x}-{dead_pid()}/p{i}" for i in range(20)]
    try:
        for path in strange + stale:
            os.makedirs(path)
        code = ("import sys; from styxgrid.worker import limits; "
                "c = limits.choose('cgroup', sys.argv[1]); print(c.kind); c.close()")
        both = [subprocess.Popen([sys.executable, "-c", code, f"race{i}-{os.getpid()}"],
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                for i in range(2)]
        for p in both:
            out, err = p.communicate()
            assert out == "cgroup1\n", err
        assert all(os.path.isdir(p) for p in strange)
        assert not any(os.path.exists(p) for p in stale)
    finally:
        for path in strange + stale + [os.path.dirname(stale[0])]:
            if os.path.isdir(path):
                os.rmdir(path)


def dead_pid():
    """A pid no process has (one that has just ended)."""
    p = subprocess.Popen(["true"])
    p.wait()
    return p.pid


def test_a_killed_worker_s_cgroups_are_cleared_by_the_next_worker_and_a_live_one_s_kept():
    name = f"stale-{os.getpid()}"
    code = ("import os, signal, sys, trio; from styxgrid.worker import limits; "
            "from styxgrid.resources import Need; "
            f"l = limits.choose('cgroup', {name!r}); p = l.take(); p.prepare(Need()); "
            "pid = trio.run(p.spawn, lambda: os.posix_spawn('/bin/sleep', ['sleep', '61'], {}, "
            "file_actions=[(os.POSIX_SPAWN_OPEN, 1, '/dev/null', os.O_WRONLY, 0), "
            "(os.POSIX_SPAWN_DUP2, 1, 2)])); "
            "print(pid, flush=True); os.kill(os.getpid(), signal.SIGKILL)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    sleeper = int(out.stdout)
    assert gone(sleeper) is False
    live = limits.choose("cgroup", f"live-{os.getpid()}")      # a worker that goes on
    chosen = limits.choose("cgroup", f"other-{os.getpid()}")   # finds the dead one's
    deadline = time.time() + 5
    while not gone(sleeper) and time.time() < deadline:
        time.sleep(0.02)
    assert gone(sleeper)
    folder = os.path.dirname(chosen.bases["pids"])
    assert not [n for n in os.listdir(folder)
                if n.startswith(places.tag_of(name).rpartition("-")[0])]
    assert os.path.isdir(live.bases["pids"] + "/p0")
    chosen.close()
    live.close()


def test_cgroup_v2_writes_its_limits_and_reads_its_kills(tmp_path):
    """The kernel's v2 hierarchy is empty here: its files, laid out in a folder."""
    own = tmp_path / "own"
    own.mkdir()
    (own / "cgroup.controllers").write_text("cpu memory pids\n")
    (own / "cgroup.subtree_control").write_text("")

    real_makedirs = os.makedirs

    def makedirs(path, *args, **kwargs):      # a new cgroup comes with its files
        real_makedirs(path, *args, **kwargs)
        for name in ("cgroup.procs", "memory.events", "cpu.max", "cpu.weight",
                     "memory.swap.max", "cgroup.subtree_control", "memory.current",
                     "memory.stat"):
            if not os.path.exists(os.path.join(path, name)):
                open(os.path.join(path, name), "w").close()
    cgroup2.os.makedirs = makedirs
    try:
        chosen = cgroup2.CgroupV2("w", str(own), 10)
        place = chosen.take()
    finally:
        cgroup2.os.makedirs = real_makedirs
    assert (own / "worker" / "cgroup.procs").read_text() == str(os.getpid())
    folder = own / places.tag_of("w") / "p0"
    place.prepare(Need(2, 100, 1, 0))
    assert (folder / "memory.max").read_text() == str(100 << 20)
    assert (folder / "memory.swap.max").read_text() == "0"
    assert (folder / "cpu.max").read_text() == f"{2 * places.CPU_PERIOD} {places.CPU_PERIOD}"
    # weighed as niced processes: 110 of v1's 1024 a cpu at nice 10, v2's 100 a cpu at 0
    assert (folder / "cpu.weight").read_text() == "21"
    assert (own / places.tag_of("w") / "cpu.weight").read_text() == "11"
    assert (folder / "pids.max").read_text() == str(places.PIDS_MAX)
    place.after_spawn(4242)
    assert (folder / "cgroup.procs").read_text() == "4242"
    assert not place.over_memory()
    (folder / "memory.events").write_text("low 0\nhigh 0\nmax 3\noom 1\noom_kill 1\n")
    assert place.over_memory() and not place.over_memory()


@pytest.mark.parametrize("nice, shares", [(0, 1024), (10, 110), (19, 15), (-5, 3125)])
def test_a_task_cgroup_weighs_what_a_process_of_the_worker_s_nice_value_does(nice, shares):
    assert places.cpu_shares(nice, 1) == shares
    assert places.cpu_shares(nice, 3) == 3 * shares
    assert places.cpu_weight(0, 1) == 100 and places.cpu_weight(19, 1) == 1


def test_without_cgroups_rlimits_and_a_look_at_the_process_group():
    chosen = limits.choose("rlimit", "r")
    assert chosen.kind == "rlimit"
    place = chosen.take()
    place.prepare(Need(1, 50, 1, 0))
    pid = spawn(place, HOG + ["80", "3"])
    with open(f"/proc/{pid}/limits") as f:
        line = next(li for li in f if li.startswith("Max data size"))
    assert line.split()[3] == str(100 << 20)          # twice the request
    deadline = time.time() + 10
    while places.group_memory(pid) < 80 << 20 and time.time() < deadline:
        time.sleep(0.05)
    assert places.group_memory(pid) >= 80 << 20
    os.kill(pid, signal.SIGKILL)
    status_of(pid)
    assert status_of(spawn(place, HOG + ["150", "0"])) != 0     # past twice: refused
    assert places.over_memory_reason(Need(1, 1024), 1229) == (
        "used 1.2 GiB of its 1 GiB memory request and was stopped: raise request_memory "
        "and release it")


def test_folder_size_counts_blocks_and_stops_past_its_bound(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "f").write_bytes(os.urandom(300_000))
    (tmp_path / "link").symlink_to("/usr")                   # never followed
    assert 300_000 <= folder_size(str(tmp_path), 10 << 20) < 400_000
    (tmp_path / "g").write_bytes(os.urandom(300_000))
    assert folder_size(str(tmp_path), 100_000) > 100_000      # stops once past
