"""The scheduler core without sockets: matchmaking, order, loss, verbs, why."""

import pytest

from styxgrid.scheduler.core import Core
from styxgrid.scheduler.model import DONE, FAILED, KILLED, QUEUED, RUNNING, CoreError, split_clauses
from styxgrid.scheduler.why import explain
from styxgrid.describe import JobSpec

LINUX = {"OpSys": "LINUX", "Arch": "X86_64", "Memory": 4096, "Cpus": 2}


def drain(core, worker, most=1):
    """A read of /work by `worker` asking for up to `most` tasks."""
    return core.ask(worker, most)


def test_tasks_go_to_idle_slots_in_priority_then_submission_order():
    core = Core()
    low = core.submit(JobSpec(cmd="a", tasks=2), "u")
    high = core.submit(JobSpec(cmd="b", priority=5), "u")
    core.worker_join("w1", LINUX, slots=4)
    got = drain(core, "w1", 4)
    assert [(a.job, a.index) for a in got] == [(high.id, 0), (low.id, 0), (low.id, 1)]
    assert core.workers["w1"].idle == 0           # answered: not asking
    assert drain(core, "w1", 4) == []             # its next read waits, with room for one
    assert core.workers["w1"].idle == 1
    late = core.submit(JobSpec(cmd="c"), "u")
    assert [(a.worker, a.job) for a in core.dispatch()] == [("w1", late.id)]
    assert core.workers["w1"].idle == 0


def test_requirements_match_and_why_names_the_failing_clause():
    core = Core()
    core.worker_join("small", {**LINUX, "Memory": 1024}, slots=1)
    job = core.submit(JobSpec(cmd="x", requirements='Memory >= 2048 && OpSys == "LINUX"'), "u")
    assert drain(core, "small") == []
    why = explain(core, job.id)
    assert "no node matches" in why
    assert "'Memory >= 2048' fails on 1 of 1 nodes" in why
    assert "'OpSys == \"LINUX\"' fails on 0 of 1 nodes" in why
    core.worker_join("big", LINUX, slots=1)
    assert [(a.worker, a.job) for a in drain(core, "big")] == [("big", job.id)]


def test_a_node_whose_owner_does_not_allow_the_program_gets_none_and_why_says_so():
    """The allow list in a node's ad is matchmaking's too: the job waits for a
    node that allows it instead of failing on one that does not."""
    core = Core()
    strict = {**LINUX, "Allow": "/usr/bin/* /opt/sim/*", "TaskPath": "/usr/bin:/bin",
              "TaskFolders": "/w"}
    core.worker_join("strict", strict, slots=2)
    shell = core.submit(JobSpec(cmd="/usr/bin/../../bin/sh"), "u")
    named = core.submit(JobSpec(cmd="python3"), "u")          # /usr/bin/python3 may be
    shipped = core.submit(JobSpec(cmd="./sim"), "u")           # in /w/task.*/: no
    assert [a.job for a in drain(core, "strict", 2)] == [named.id]
    why = explain(core, shell.id)
    assert "program '/usr/bin/../../bin/sh' is not on the allow list of 1 of 1 nodes" in why
    assert "clause" not in why
    core.worker_join("open", LINUX, slots=2)
    assert sorted(a.job for a in drain(core, "open", 2)) == [shell.id, shipped.id]


def test_a_changed_load_changes_what_the_worker_matches():
    """The heartbeat's LoadAvg reaches the ad that matchmaking reads: a job that
    wants a quiet node does not go to one whose load has since risen."""
    core = Core()
    core.worker_join("w", {**LINUX, "LoadAvg": 0.1}, slots=1)
    other = core.submit(JobSpec(cmd="any"), "u")          # a group that names no load
    assert drain(core, "w")[0].job == other.id
    core.task_done("w", other.id, 0, 0, "")
    assert core.worker_update("w", {"LoadAvg": 9.0}) is False   # in no group naming it
    quiet = core.submit(JobSpec(cmd="x", requirements="LoadAvg < 1"), "u")
    assert drain(core, "w") == []
    assert "'LoadAvg < 1' fails on 1 of 1 nodes" in explain(core, quiet.id)
    assert core.worker_update("w", {"LoadAvg": 0.5}) is True
    assert [(a.worker, a.job) for a in core.dispatch()] == [("w", quiet.id)]
    assert core.worker_update("w", {"LoadAvg": 0.5}) is False   # no change: nothing asked
    assert core.workers["w"].ad["LoadAvg"] == 0.5


def test_rank_picks_the_best_idle_worker():
    core = Core()
    for name, mem in (("a", 1000), ("b", 9000), ("c", 5000)):
        core.worker_join(name, {**LINUX, "Memory": mem}, slots=1)
        drain(core, name)
    core.submit(JobSpec(cmd="x", rank="Memory"), "u")
    assert [a.worker for a in core.dispatch()] == ["b"]


def test_lost_worker_requeues_and_third_loss_fails():
    core = Core()
    job = core.submit(JobSpec(cmd="x"), "u")
    for attempt in range(3):
        core.worker_join(f"w{attempt}", LINUX, slots=1)
        assert drain(core, f"w{attempt}")[0].job == job.id
        core.worker_lost(f"w{attempt}")
    assert job.state[0] == FAILED and "lost 3 times" in job.reasons[0]
    assert sum(map(len, core.group_of(job).queues.values())) <= 1, \
        "requeues must not pile up heap entries"


def test_done_retries_and_stale_reports():
    core = Core()
    job = core.submit(JobSpec(cmd="x", tasks=2, retries=1), "u")
    core.worker_join("w", LINUX, slots=2)
    a, b = drain(core, "w", 2)
    assert core.task_done("w", job.id, a.index, 0)
    assert core.task_done("w", job.id, b.index, 1)          # retried once
    assert job.state[b.index] == QUEUED
    assert not core.task_done("w", job.id, b.index, 0)      # stale: no longer leased
    again = drain(core, "w")[0]
    assert core.task_done("w", job.id, again.index, 2)
    assert job.state[b.index] == FAILED and job.state_name == "failed"
    assert core.retry(job.id) == 1 and job.state[b.index] == QUEUED


def test_hold_release_kill_remove_and_priority():
    core = Core()
    job = core.submit(JobSpec(cmd="x", tasks=3), "u")
    core.hold(job.id)
    core.worker_join("w", LINUX, slots=1)
    assert drain(core, "w") == []
    assert "held" in explain(core, job.id)
    core.release(job.id)
    first = core.dispatch()
    assert len(first) == 1 and job.state[first[0].index] == RUNNING
    with pytest.raises(CoreError, match="not finished"):
        core.remove(job.id)
    assert core.kill(job.id) == [("w", first[0].index)]
    assert all(s == KILLED for s in job.state) and job.finished
    core.remove(job.id)
    with pytest.raises(CoreError, match="no job"):
        core.hold(job.id)
    other = core.submit(JobSpec(cmd="y"), "u")
    core.set_priority(other.id, 9)
    assert other.priority == 9


def test_busy_explanation():
    core = Core()
    core.worker_join("w", LINUX, slots=1)
    core.submit(JobSpec(cmd="a"), "u")
    drain(core, "w")
    waiting = core.submit(JobSpec(cmd="b"), "u")
    assert "all 1 matching nodes are busy" in explain(core, waiting.id)


def test_a_million_task_job_is_compact():
    core = Core()
    job = core.submit(JobSpec(cmd="x", tasks=1_000_000), "u")
    core.worker_join("w", LINUX, slots=2)
    assert [a.index for a in drain(core, "w", 2)] == [0, 1]
    assert job.counts[QUEUED] == 999_998 and len(job.state) == 1_000_000


def test_split_clauses():
    assert split_clauses('(A && B) && C == "x && y" && D') == ["(A && B)", 'C == "x && y"', "D"]


def test_finished_job_counts():
    core = Core()
    job = core.submit(JobSpec(cmd="x"), "u")
    core.worker_join("w", LINUX, slots=1)
    a = drain(core, "w")[0]
    core.task_done("w", job.id, a.index, 0)
    assert job.state[0] == DONE and job.finished
    assert job.status_line().startswith(f"{job.id} done tasks=1 queued=0 running=0 done=1")


def test_reclaim_takes_back_a_queued_task_and_unassign_requeues_without_a_loss():
    core = Core()
    job = core.submit(JobSpec(cmd="x", tasks=2), "u")
    core.worker_join("w", LINUX, slots=2)
    assert core.reclaim("w", job.id, 1)
    assert job.state[1] == RUNNING and job.running[1] == "w"
    assert not core.reclaim("w", job.id, 1)          # already running: not twice
    [a] = core.ask("w", 2)
    assert (a.job, a.index) == (job.id, 0)           # task 1 is not handed out again
    core.unassign("w", job.id, 0)
    assert job.state[0] == QUEUED and job.losses == {}
    assert [a.index for a in core.ask("w", 1)] == [0]


def test_draining_worker_gets_nothing_until_resumed():
    core = Core()
    core.worker_join("w", LINUX, slots=1)
    assert core.ask("w", 1) == []                    # waiting, idle
    core.set_draining("w", True)
    core.submit(JobSpec(cmd="x"), "u")
    assert core.dispatch() == []
    core.set_draining("w", False)
    assert [a.worker for a in core.dispatch()] == ["w"]


def test_reclaim_of_a_task_the_job_does_not_have_is_refused():
    core = Core()
    job = core.submit(JobSpec(cmd="x", tasks=2), "u")
    core.worker_join("w", LINUX, slots=1)
    assert not core.reclaim("w", job.id, 2)
    assert not core.reclaim("w", job.id, -1)
    assert list(job.state) == [QUEUED, QUEUED]


def test_beyond_its_slots_a_worker_leases_only_the_job_it_last_reported():
    core = Core()
    job = core.submit(JobSpec(cmd="x", tasks=20), "u")
    core.worker_join("w", LINUX, slots=2, lease=5)
    assert [a.index for a in core.ask("w", 100)] == [0, 1]      # a job it has not seen yet
    assert core.ask("w", 100) == [] and core.workers["w"].idle == 0   # asks; slots full
    core.task_done("w", job.id, 0, 0)
    assert [a.index for a in core.fill("w")] == [2, 3, 4, 5]    # its slot, then 3 ahead
    core.set_lease("w", 7)
    assert [a.index for a in core.fill("w")] == [6, 7]
    later = core.submit(JobSpec(cmd="y"), "u")
    assert core.dispatch() == []                                # a new job: free slots only
    core.task_done("w", job.id, 1, 0)
    assert [a.index for a in core.fill("w")] == [8]             # the older job still first
    urgent = core.submit(JobSpec(cmd="z", priority=9), "u")
    for index in (2, 3, 4, 5, 6):                               # no more leasing ahead
        core.task_done("w", job.id, index, 0)
        assert core.fill("w") == []
    core.task_done("w", job.id, 7, 0)                           # a slot comes free
    assert [(a.job, a.index) for a in core.fill("w")] == \
        [(urgent.id, 0)] + [(job.id, i) for i in range(9, 14)]  # then ahead again
    core.set_asking("w", False)
    core.task_done("w", job.id, 8, 0)
    assert core.fill("w") == [] and core.workers["w"].idle == 0      # not asking
    assert later.queued == 1


def test_a_job_is_shared_by_rank_one_task_per_free_slot():
    core = Core()
    core.worker_join("a", {**LINUX, "Memory": 1}, slots=1, lease=4)
    core.worker_join("b", {**LINUX, "Memory": 2}, slots=2, lease=8)
    assert core.ask("a", 10) == [] and core.ask("b", 10) == []
    core.submit(JobSpec(cmd="x", tasks=6, rank="Memory"), "u")
    assert [a.worker for a in core.dispatch()] == ["b", "b", "a"]


def test_kill_of_a_million_tasks_is_one_pass_and_keeps_what_finished():
    core = Core()
    job = core.submit(JobSpec(cmd="x", tasks=1_000_000, retries=1), "u")
    core.worker_join("w", LINUX, slots=3)
    a, b, c = core.ask("w", 3)
    core.task_done("w", job.id, a.index, 0)
    core.task_done("w", job.id, b.index, 5)                # retried: queued, exit still -1
    assert job.state[b.index] == QUEUED and job.exit[b.index] == -1
    core.hold(job.id)
    assert core.kill(job.id) == [("w", c.index)]
    assert job.state[a.index] == DONE and job.exit[a.index] == 0
    assert job.counts == [0, 0, 1, 0, 999_999, 0] and job.state.count(KILLED) == 999_999
    assert job.exit[b.index] == -1 and job.exit[c.index] == -1
    assert job.reasons == {} and job.state_name == "killed" and job.finished


class Clock:
    """The core's clock, moved by hand."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def slow_job(speculate: str = "", tasks: int = 5):
    """A job of `tasks` on two workers: four on fast `a`, the last on `b`; the
    four finish after a second, so the job's median run is 1 s."""
    clock = Clock()
    core = Core(clock=clock)
    spec = JobSpec.from_lines(f"cmd x\ntasks {tasks}\n{speculate}\n")
    job = core.submit(spec, "u")
    core.worker_join("a", LINUX, slots=4)
    core.worker_join("b", LINUX, slots=1)
    fast = drain(core, "a", 4)
    (slow,) = drain(core, "b", 1)
    clock.now = 1.0
    for a in fast:
        assert core.task_done("a", job.id, a.index, 0)
    return core, clock, job, slow.index


def test_a_slow_task_gets_a_copy_and_the_first_run_to_finish_decides():
    core, clock, job, slow = slow_job()
    clock.now = 2.9                          # under 3 x the median: not slow yet
    assert drain(core, "a", 1) == []
    clock.now = 3.1
    (copy,) = drain(core, "a", 1)
    assert (copy.worker, copy.index, copy.copy) == ("a", slow, True)
    assert core.runners(job, slow) == ["b", "a"] and job.state[slow] == RUNNING
    assert drain(core, "a", 1) == []         # two runs at most
    assert core.task_done("a", job.id, slow, 0)
    assert job.state[slow] == DONE and job.finished
    assert (job.id, slow) not in core.workers["b"].running
    assert not core.task_done("b", job.id, slow, 0)   # the slow run's report is stale


def test_a_failed_or_lost_run_of_a_copied_task_leaves_the_other_running():
    core, clock, job, slow = slow_job()
    clock.now = 3.5
    drain(core, "a", 1)
    assert core.task_done("a", job.id, slow, 1)        # the copy failed: b goes on
    assert job.state[slow] == RUNNING and core.runners(job, slow) == ["b"]
    assert drain(core, "a", 1)[0].copy              # and may be copied again
    core.worker_lost("b")                            # the first run's node is lost
    assert core.runners(job, slow) == ["a"] and job.losses == {}
    assert core.task_done("a", job.id, slow, 0) and job.finished


def test_speculate_off_makes_no_copy_and_why_counts_copies():
    core, clock, job, slow = slow_job("speculate off")
    clock.now = 100.0
    assert drain(core, "a", 1) == []
    core, clock, job, slow = slow_job("speculate 10")
    clock.now = 9.0
    assert drain(core, "a", 1) == []
    clock.now = 10.5
    assert drain(core, "a", 1)[0].copy
    assert "1 of them copied to another node" in explain(core, job.id)


def test_a_task_past_max_runtime_is_found_oldest_first():
    from styxgrid.scheduler.runs import overdue
    clock = Clock()
    core = Core(clock=clock)
    job = core.submit(JobSpec.from_lines("cmd x\ntasks 3\nmax_runtime 10\n"), "u")
    core.worker_join("w", LINUX, slots=2)
    drain(core, "w", 1)
    clock.now = 5.0
    drain(core, "w", 1)
    clock.now = 12.0
    assert [(j.id, i) for j, i in overdue(core)] == [(job.id, 0)]
    core.end_task(job, 0, "ran past its max_runtime of 10s (killed)")
    assert job.state[0] == FAILED and (job.id, 0) not in core.workers["w"].running
    assert overdue(core) == []


def test_a_task_failed_or_vacated_on_a_node_goes_to_another_idle_node_first():
    core = Core()
    job = core.submit(JobSpec(cmd="x", retries=2), "u")
    core.worker_join("a", LINUX, slots=1)
    core.worker_join("b", LINUX, slots=1)
    first = drain(core, "a")[0]
    assert core.task_done("a", job.id, first.index, 1)      # failed on a: retried
    core.set_asking("b", True)                              # b waits for work
    assert drain(core, "a") == []                           # a asks: it goes to b
    handed, core.handed = core.handed, []
    assert [(h.worker, h.index) for h in handed] == [("b", first.index)]
    assert core.task_vacated("b", job.id, first.index)      # b's owner came back
    core.set_asking("a", True)
    assert [(a.worker, a.index) for a in core.dispatch()] == [("a", first.index)]
    core.worker_lost("a")                                   # lost on a, b asks alone:
    assert drain(core, "b")[0].index == first.index         # it runs where it can
    assert job.evictions == {first.index: 1} and job.failures == {first.index: 1}


def share_of_slots(factor_bob: float = 1.0, steps: int = 40) -> tuple[int, int, list]:
    """Alice's 100 tasks, then Bob's 100, on one 4-slot worker; each task takes a
    step of 0.2 s: how many of each ran while both had tasks queued, and who
    had the slots in order."""
    from styxgrid.scheduler.shares import Shares
    clock = Clock()
    core = Core(shares=Shares(clock))
    core.shares.set_factor("bob", factor_bob)
    core.worker_join("w", LINUX, slots=4)
    alice = core.submit(JobSpec(cmd="x", tasks=100), "alice")
    running = [(a.job, a.index) for a in core.ask("w", 4)]
    bob = core.submit(JobSpec(cmd="x", tasks=100), "bob")
    owners = {alice.id: "alice", bob.id: "bob"}
    order, ran = [], {"alice": 0, "bob": 0}
    for _ in range(steps):
        clock.now += 0.2
        for jid, index in running:
            ran[owners[jid]] += 1
            core.task_done("w", jid, index, 0)
        running = [(a.job, a.index) for a in core.fill("w") or core.ask("w", 4)]
        order += [owners[jid] for jid, _ in running]
    return ran["alice"], ran["bob"], order


def test_two_users_share_the_slots_half_and_half_and_a_newcomer_starts_at_once():
    alice, bob, order = share_of_slots()
    assert "bob" in order[:4]                      # the first free slot after his submit
    assert abs(alice - bob) <= 0.1 * (alice + bob), (alice, bob)


def test_a_user_with_factor_2_gets_a_third():
    alice, bob, _ = share_of_slots(factor_bob=2.0)
    assert abs(bob / (alice + bob) - 1 / 3) <= 0.05, (alice, bob)
