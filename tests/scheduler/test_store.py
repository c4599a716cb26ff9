"""The SQLite store: group commit, and a core rebuilt from the file."""

import pytest
import trio

from styxgrid.scheduler.core import Core
from styxgrid.scheduler.model import DONE, FAILED, KILLED, QUEUED, RUNNING, CoreError
from styxgrid.describe import JobSpec
from styxgrid.scheduler.store import (Store, forget_failed, forget_job, job_row, killed_row,
                                      new_job_row,
                                      result_row)

LINUX = {"OpSys": "LINUX", "Memory": 4096}


def new(job):
    return new_job_row(job.id, job.owner, job.spec)


async def test_state_survives_reopen_and_batches_commit_together(tmp_path, nursery):
    store = Store(tmp_path / "state.db")
    await nursery.start(store.writer)
    core = Core()
    a = core.submit(JobSpec(cmd="/bin/echo", args=("hi",), tasks=3), "alice")
    b = core.submit(JobSpec(cmd="/bin/true", priority=4), "bob")
    await store.write([new(a), new(b)])
    core.worker_join("w", LINUX, slots=3)
    ran = core.ask("w", 3)
    for assignment, status in zip(ran, (0, 0, 7)):
        core.task_done("w", assignment.job, assignment.index, status)
    finished = [(core.jobs[x.job], x.index) for x in ran]
    before = store.statistics()
    async with trio.open_nursery() as burst:            # many writers, few commits
        for job, task in finished:
            burst.start_soon(store.write, [result_row(job, task)])
    after = store.statistics()
    assert after["writes"] - before["writes"] == 3
    assert after["commits"] - before["commits"] == 1
    core.hold(a.id)
    await store.write([job_row(a)])
    store.close()

    reopened = Store(tmp_path / "state.db")
    again = Core()
    reopened.load(again)
    states = {jid: bytes(job.state) for jid, job in again.jobs.items()}
    original = {jid: bytes(job.state) for jid, job in core.jobs.items()}
    assert states == original
    assert again.jobs[b.id].priority == 4 and again.jobs[a.id].held
    failed = [t for j, t in finished if j.state[t] == FAILED]
    assert all(again.jobs[j.id].exit[t] == j.exit[t] for j, t in finished)
    assert all(again.jobs[j.id].state[t] in (DONE, FAILED) for j, t in finished)
    assert len(failed) == 1
    assert again.next_job == b.id + 1
    reopened.close()


async def test_forget_job(tmp_path, nursery):
    store = Store(tmp_path / "s.db")
    await nursery.start(store.writer)
    core = Core()
    job = core.submit(JobSpec(cmd="x"), "u")
    await store.write([new(job)])
    await store.write(forget_job(job.id, job.spec.tasks))
    fresh = Core()
    store.load(fresh)
    assert fresh.jobs == {}


async def test_a_remove_stopped_half_way_is_finished_at_load_and_its_id_not_reused(
        tmp_path, nursery):
    store = Store(tmp_path / "s.db")
    await nursery.start(store.writer)
    core = Core()
    job = core.submit(JobSpec(cmd="x", tasks=200_000), "u")
    core.worker_join("w", LINUX, slots=1)
    ran = core.ask("w", 1)[0]
    core.task_done("w", job.id, ran.index, 0)
    await store.write([new(job), result_row(job, ran.index)])
    statements = forget_job(job.id, job.spec.tasks)
    assert len(statements) == 1 + 4           # the job's row, then four slices of results
    await store.write(statements[:1])         # stopped after the first statement
    fresh = Core()
    store.load(fresh)
    assert fresh.jobs == {} and fresh.next_job == job.id + 1
    assert store.reader.execute("SELECT count(*) FROM results").fetchone() == (0,)


async def test_a_job_that_finished_while_held_loads(tmp_path, nursery):
    store = Store(tmp_path / "s.db")
    await nursery.start(store.writer)
    core = Core()
    job = core.submit(JobSpec(cmd="x"), "u")
    core.worker_join("w", LINUX, slots=1)
    [running] = core.ask("w", 1)
    core.hold(job.id)                       # held while its only task runs
    core.task_done("w", job.id, running.index, 0)
    await store.write([new(job), job_row(job), result_row(job, running.index)])
    fresh = Core()
    store.load(fresh)
    assert fresh.jobs[job.id].state_name == "done"


async def test_the_log_is_checkpointed_into_the_database_file_beside_the_commits(
        tmp_path, nursery):
    path = tmp_path / "s.db"
    store = Store(path)
    await nursery.start(store.writer)
    empty = path.stat().st_size
    core = Core()
    job = core.submit(JobSpec(cmd="x", tasks=1200), "u")
    await store.write([new(job)])
    core.worker_join("w", LINUX, slots=1200)
    for _ in range(1200):
        [a] = core.ask("w", 1)
        core.task_done("w", a.job, a.index, 0)
        await store.write([result_row(job, a.index)])     # a commit each
    with trio.fail_after(10):
        await store.checkpointed.wait()
    assert path.stat().st_size > empty               # rows reached grid.db, not only the log
    fresh = Core()
    store.load(fresh)
    assert fresh.jobs[job.id].state_name == "done"


async def run_three(store, core, tasks):
    """A job of which one task is done, one failed and one still running."""
    job = core.submit(JobSpec(cmd="x", tasks=tasks), "u")
    await store.write([new(job)])
    core.worker_join(f"w{job.id}", LINUX, slots=3)
    ran = core.ask(f"w{job.id}", 3)
    core.task_done(f"w{job.id}", job.id, ran[0].index, 0)
    core.task_done(f"w{job.id}", job.id, ran[1].index, 1)     # failed, no retries left
    await store.write([result_row(job, ran[0].index), result_row(job, ran[1].index)])
    return job, ran


async def test_kill_is_one_row_and_retry_a_slice_a_statement_and_both_reload_the_same(
        tmp_path, nursery):
    store = Store(tmp_path / "s.db")
    await nursery.start(store.writer)
    core = Core()

    def reloaded(job) -> bytes:
        fresh = Core()
        store.load(fresh)
        return bytes(fresh.jobs[job.id].state)

    job, ran = await run_three(store, core, 100_000)
    core.kill(job.id)                                    # the third was still running
    await store.write([killed_row(job)])
    assert reloaded(job) == bytes(job.state)
    assert job.state.count(KILLED) == 100_000 - 2
    assert store.reader.execute("SELECT count(*) FROM results").fetchone() == (2,)
    fresh = Core()
    store.load(fresh)
    assert fresh.jobs[job.id].exit_of(ran[2].index) == -1
    with pytest.raises(CoreError, match="was killed"):
        fresh.retry(job.id)

    job, ran = await run_three(store, core, 100_000)
    core.retry(job.id)                                   # the failed one is queued again
    statements = forget_failed(job)
    assert len(statements) == 2
    for statement in statements:
        await store.write([statement], bulk=True)
    running_again = bytes(job.state).replace(bytes([RUNNING]), bytes([QUEUED]))
    assert reloaded(job) == running_again              # the running one is queued again too
    assert job.state[ran[1].index] == QUEUED and job.state[ran[0].index] == DONE


async def test_a_job_this_code_cannot_load_is_failed_and_the_rest_load(tmp_path, nursery):
    store = Store(tmp_path / "s.db")
    await nursery.start(store.writer)
    core = Core()
    good = core.submit(JobSpec(cmd="ok"), "u")
    await store.write([new(good),
                       ("INSERT INTO jobs (id, owner, spec, priority, held) VALUES (?,?,?,?,0)",
                        (7, "u", "cmd 'unclosed\ntasks 5\n", 0))])
    fresh = Core()
    store.load(fresh)
    assert fresh.jobs[good.id].state_name == "queued"
    broken = fresh.jobs[7]
    assert broken.state_name == "failed" and broken.counts[FAILED] == 5
    assert "cannot load this job" in broken.note and "no closing quotation" in broken.note
    assert fresh.next_job == 8


async def test_a_state_file_from_before_the_killed_flag_loads_and_kills(tmp_path, nursery):
    import sqlite3
    old = sqlite3.connect(tmp_path / "old.db")
    old.executescript("""
        CREATE TABLE jobs (id INTEGER PRIMARY KEY, owner TEXT NOT NULL, spec TEXT NOT NULL,
                           priority INTEGER NOT NULL, held INTEGER NOT NULL DEFAULT 0);
        INSERT INTO jobs VALUES (4, 'alice', 'cmd /bin/true\ntasks 3\n', 0, 1);""")
    old.commit()
    old.close()
    store = Store(tmp_path / "old.db")
    await nursery.start(store.writer)
    core = Core()
    store.load(core)
    job = core.jobs[4]
    assert job.held and job.spec.tasks == 3
    core.kill(4)
    await store.write([killed_row(job)])
    fresh = Core()
    store.load(fresh)
    assert bytes(fresh.jobs[4].state) == bytes([KILLED]) * 3
