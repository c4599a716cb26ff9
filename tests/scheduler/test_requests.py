"""Requests, partitionable workers, held tasks and jobs that wait for jobs, in
the core alone (the grid tests run them with real workers)."""

import pytest

from styxgrid.describe import Description, DescriptionError, JobSpec
from styxgrid.resources import Need, mib, size
from styxgrid.scheduler import dependencies
from styxgrid.scheduler.core import Core
from styxgrid.scheduler.model import HELD, QUEUED, CoreError
from styxgrid.scheduler.why import explain

LINUX = {"OpSys": "LINUX"}
GiB = 1024


def node(core, name, cpus=2, memory=4 * GiB, disk=100 * GiB, gpus=0):
    return core.worker_join(name, LINUX, cpus, None, Need(cpus, memory, disk, gpus))


def started(assignments):
    return [(a.job, a.index) for a in assignments]


@pytest.mark.parametrize("text, bare, mib_", [
    ("512", "m", 512), ("512M", "m", 512), ("512 MB", "m", 512), ("1GB", "m", 1024),
    ("1.5GiB", "m", 1536), ("2 g", "m", 2048), ("1T", "m", 1 << 20),
    ("1048576", "k", 1024), ("1", "k", 1), ("1500K", "k", 2),
])
def test_sizes_read_with_their_units(text, bare, mib_):
    assert size("x", text, bare) == mib_


@pytest.mark.parametrize("text", ["", "-1", "1 XB", "1.2345G", "0", "lots", "2GiB extra",
                                  "9" * 13, "2000000T"])
def test_bad_sizes_are_refused(text):
    with pytest.raises(ValueError):
        size("request_memory", text)


def test_mib_is_written_for_people():
    assert [mib(v) for v in (512, 1024, 1536, 4096, 1 << 20)] == \
        ["512 MiB", "1 GiB", "1.5 GiB", "4 GiB", "1 TiB"]


@pytest.mark.parametrize("line, error", [
    ("request_cpus 0", "request_cpus: 0 is out of range"),
    ("request_cpus 5000", r"out of range \(1\.\.4096\)"),
    ("request_gpus 65", r"out of range \(0\.\.64\)"),
    ("request_memory lots", "want a size such as"),
    ("request_disk 0", "out of range"),
    ("after", "name the jobs to wait for"),
    ("after 3:all", "want JOB or JOB:any"),
    ("after x", "'x' is not a job id"),
    ("after 0", "'0' is not a job id"),
    ("after 01", "no leading zero"),
    ("after 3 3:any", "a parent job is named twice"),
    ("reqest_memory 1G", "did you mean request_memory?"),
])
def test_bad_request_and_after_lines_say_what_is_wrong(line, error):
    with pytest.raises(DescriptionError, match=error):
        Description().feed(f"{line}\nsubmit x\n")


def test_requests_and_parents_read_back_from_their_normal_form():
    spec = Description().feed("cmd x\nrequest_cpus 2\nrequest_memory 1.5 GB\n"
                              "request_disk 2097152\nrequest_gpus 1\nafter 3 4:any\n"
                              "after 9\nsubmit\n")
    assert spec.need == Need(2, 1536, 2048, 1)
    assert spec.after == ((3, False), (4, True), (9, False))
    assert "request_memory 1536 MiB\n" in spec.lines()
    assert "after 3 4:any 9\n" in spec.lines()
    assert JobSpec.from_lines(spec.lines()) == spec
    assert "request" not in JobSpec(cmd="x").lines()        # defaults are not written


def test_a_two_cpu_task_leaves_no_room_for_a_one_cpu_task_on_a_two_cpu_node():
    core = Core()
    node(core, "w", cpus=2)
    wide = core.submit(JobSpec(cmd="x", request_cpus=2), "u")
    narrow = core.submit(JobSpec(cmd="y"), "u")
    assert started(core.ask("w", 4)) == [(wide.id, 0)]
    assert core.workers["w"].idle == 0 and core.ask("w", 4) == []
    assert "all 1 matching nodes are busy" in explain(core, narrow.id)
    core.task_done("w", wide.id, 0, 0)
    assert started(core.fill("w")) == [(narrow.id, 0)]


def test_smaller_tasks_fill_what_a_bigger_one_leaves():
    core = Core()
    node(core, "w", cpus=4, memory=8 * GiB)
    big = core.submit(JobSpec(cmd="x", tasks=3, request_memory=3 * GiB), "u")
    small = core.submit(JobSpec(cmd="y", tasks=4, request_memory=1 * GiB), "u")
    got = started(core.ask("w", 8))
    assert got == [(big.id, 0), (big.id, 1), (small.id, 0), (small.id, 1)]   # 8 GiB used
    assert core.workers["w"].free() == Need(0, 0, 100 * GiB - 4 * 1024, 0)


def test_a_job_bigger_than_every_node_waits_and_why_says_what_it_needs():
    core = Core()
    node(core, "a", memory=4 * GiB)
    node(core, "b", memory=2 * GiB, gpus=1)
    job = core.submit(JobSpec(cmd="x", request_memory=8 * GiB, request_gpus=2), "u")
    assert core.ask("a", 1) == [] and core.ask("b", 1) == []
    why = explain(core, job.id)
    assert "needs 8 GiB memory; the largest node offers 4 GiB" in why
    assert "needs 2 GPUs; the largest node offers 1" in why
    node(core, "huge", memory=16 * GiB, gpus=2)
    assert started(core.ask("huge", 1)) == [(job.id, 0)]


def test_a_worker_that_says_no_offer_has_its_slots_and_no_memory_limit():
    core = Core()
    core.worker_join("old", LINUX, slots=2)
    core.submit(JobSpec(cmd="x", tasks=3, request_memory=64 * GiB), "u")
    assert len(core.ask("old", 3)) == 2


def test_usage_counts_cpus():
    core = Core()
    node(core, "w", cpus=4)
    core.submit(JobSpec(cmd="x", request_cpus=3), "alice")
    core.ask("w", 1)
    assert core.shares.of("alice").running == 3


def test_a_held_task_waits_for_its_owner_to_raise_the_request_and_release_it():
    core = Core()
    node(core, "w", cpus=2)
    job = core.submit(JobSpec(cmd="x", tasks=2), "u")
    core.ask("w", 2)
    assert core.task_held("w", job.id, 0, "used 900 MiB of its 512 MiB memory request") == ["w"]
    assert job.state[0] == HELD and job.state_name == "running"
    core.task_done("w", job.id, 1, 0)
    assert job.state_name == "held" and not job.finished
    assert "task 0: used 900 MiB of its 512 MiB" in explain(core, job.id)
    assert core.task_held("w", job.id, 0, "again") == []            # stale: no change
    core.set_request(job.id, "request_memory", 1024)
    core.release(job.id)
    assert job.state[0] == QUEUED and 0 not in job.reasons
    assert started(core.fill("w") or core.ask("w", 1)) == [(job.id, 0)]
    assert core.workers["w"].running[(job.id, 0)].memory == 1024


def test_a_request_change_keeps_what_running_tasks_were_given():
    core = Core()
    node(core, "w", cpus=2, memory=2 * GiB)
    job = core.submit(JobSpec(cmd="x", tasks=3), "u")
    core.ask("w", 1)
    core.set_request(job.id, "request_memory", 1536)
    assert started(core.ask("w", 2)) == [(job.id, 1)]     # 512 MiB + 1.5 GiB: full
    assert core.workers["w"].used[:2] == [2, 2048]
    with pytest.raises(CoreError):
        core.set_request(99, "request_memory", 1)
    core.task_done("w", job.id, 0, 0)                # gives back what it was given
    assert core.workers["w"].used == [1, 1536, 1024, 0]


def finish(core, worker, job, status=0):
    for a in core.ask(worker, job.spec.tasks):
        core.task_done(worker, a.job, a.index, status)
    return dependencies.parent_ended(core, job.id) if job.finished else []


def test_a_chain_and_a_diamond_run_in_order():
    core = Core()
    node(core, "w", cpus=8)
    a = core.submit(JobSpec(cmd="a"), "u")
    b = core.submit(JobSpec(cmd="b", after=((a.id, False),)), "u")
    c = core.submit(JobSpec(cmd="c", after=((b.id, False),)), "u")
    d = core.submit(JobSpec(cmd="d", after=((b.id, False), (c.id, False))), "u")
    assert b.state_name == c.state_name == "waiting"
    assert "waiting for job 1 to end" in explain(core, b.id)
    assert started(core.ask("w", 8)) == [(a.id, 0)]
    core.task_done("w", a.id, 0, 0)
    assert dependencies.parent_ended(core, a.id) == [(b, False)]
    assert started(core.fill("w") or core.ask("w", 8)) == [(b.id, 0)]
    core.task_done("w", b.id, 0, 0)
    dependencies.parent_ended(core, b.id)
    assert "waiting for job 3 to end" in explain(core, d.id)
    assert started(core.ask("w", 8)) == [(c.id, 0)]
    core.task_done("w", c.id, 0, 0)
    dependencies.parent_ended(core, c.id)
    assert started(core.ask("w", 8)) == [(d.id, 0)]


def test_a_failed_parent_holds_its_child_and_any_runs_it_anyway():
    core = Core()
    node(core, "w", cpus=8)
    a = core.submit(JobSpec(cmd="a"), "u")
    b = core.submit(JobSpec(cmd="b", after=((a.id, False),)), "u")
    c = core.submit(JobSpec(cmd="c", after=((a.id, True),)), "u")
    core.ask("w", 1)
    core.task_done("w", a.id, 0, 3)
    assert dependencies.parent_ended(core, a.id) == [(b, True), (c, False)]
    assert b.state_name == "held" and b.counts[HELD] == 1
    assert "its parent job 1 failed" in explain(core, b.id)
    assert started(core.ask("w", 8)) == [(c.id, 0)]
    late = core.submit(JobSpec(cmd="d", after=((a.id, False),)), "u")   # a ended already
    assert late.state_name == "held"
    core.retry(a.id)                          # the chain again: b waits for a again
    assert dependencies.wait_again(core, a.id) == [b, late]
    core.release(b.id)
    assert b.state_name == "waiting"
    assert started(core.ask("w", 8)) == [(a.id, 0)]          # a alone: b waits
    core.task_done("w", a.id, 0, 0)
    assert dependencies.parent_ended(core, a.id) == [(b, False), (late, False)]
    assert b.state_name == "queued" and late.state_name == "held"
    core.release(late.id)                     # run it anyway: nothing to wait for
    assert late.state_name == "queued"


def test_a_waiting_job_can_be_held_and_killed_and_its_own_children_hear_of_it():
    core = Core()
    node(core, "w", cpus=8)
    a = core.submit(JobSpec(cmd="a"), "u")
    b = core.submit(JobSpec(cmd="b", after=((a.id, False),)), "u")
    c = core.submit(JobSpec(cmd="c", after=((b.id, True),)), "u")
    core.hold(b.id)
    core.ask("w", 1)
    core.task_done("w", a.id, 0, 0)
    dependencies.parent_ended(core, a.id)
    assert b.state_name == "held" and core.ask("w", 8) == []
    core.kill(b.id)
    assert dependencies.parent_ended(core, b.id) == [(c, False)]
    assert started(core.ask("w", 8)) == [(c.id, 0)]
