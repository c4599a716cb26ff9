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
    assert len(core.groups[""].jobs) <= 1, "requeues must not pile up heap entries"


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
