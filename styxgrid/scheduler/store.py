"""The scheduler's durable state: SQLite in WAL mode, written by group commit.

Callers `await store.write(...)`; one writer task gathers every change waiting at
that moment into a single transaction and wakes all of their callers once it is
committed.  So a submit returns only when its job is committed, yet a burst of task
results costs one commit, not one per message.

Where the time goes: a commit under synchronous=NORMAL only appends to the WAL file
(no fsync), some tens of microseconds, so it runs on the loop; handing it to a
thread and back cost more than the commit itself and capped task throughput.  A
round holding a `bulk` write (a job verb: killing a million-task job writes a
million rows) is committed in a thread instead, so the loop never stalls.  The
part that can wait on the disk, the checkpoint (fsync, then copying the WAL into the
database), never runs on the loop: automatic checkpoints are off, and the writer
starts a PASSIVE one in a thread, on its own connection, once CHECKPOINT_ROWS rows
have changed.  Commits go on meanwhile (WAL lets a writer run beside a checkpoint).

What is kept: each job's description, owner, priority, held and killed flags; each
finished task's state, exit status, reason and the node it ran on, and each task
held for breaking its requests, with the reason.  Other tasks are
implied: on restart every task without a result is queued again, or killed if its
job was killed (so killing a job of ten million tasks writes one row, not ten
million, and other writers never wait behind it).

Durability: WAL with synchronous=NORMAL.  A commit is in the WAL file when `write`
returns, so a scheduler killed at any moment loses nothing; only a crash of the
whole machine may lose the last few commits (FULL would fsync every commit, which
caps the grid at the disk's fsync rate).
"""

from __future__ import annotations

import logging
import re
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import trio

from .core import Core
from .model import FAILED, FINISHED, HELD, KILLED, Job
from .shares import Share
from ..describe import MAX_TASKS, JobSpec

log = logging.getLogger("styxgrid.scheduler")
_TASKS_LINE = re.compile(r"^tasks ([0-9]{1,8})$", re.MULTILINE)

SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id INTEGER PRIMARY KEY, owner TEXT NOT NULL, spec TEXT NOT NULL,
    priority INTEGER NOT NULL, held INTEGER NOT NULL DEFAULT 0,
    killed INTEGER NOT NULL DEFAULT 0, waited INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS results (
    job INTEGER NOT NULL, task INTEGER NOT NULL, state INTEGER NOT NULL,
    exit INTEGER NOT NULL, reason TEXT NOT NULL DEFAULT '', node TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (job, task)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS users (
    name TEXT PRIMARY KEY, factor REAL NOT NULL, usage REAL NOT NULL,
    at REAL NOT NULL) WITHOUT ROWID;
"""

Statement = tuple[str, tuple]
CHECKPOINT_TRIES = 5            # passive checkpoints in a row that found the log busy
CHECKPOINT_AGAIN = 0.05         # seconds between them
CHECKPOINT_ROWS = 1000          # a row changes about a page; SQLite's own automatic
                                # checkpoint comes after 1000 pages of log


@dataclass
class _Batch:
    statements: list[Statement]
    done: trio.Event
    bulk: bool = False
    error: BaseException | None = None


class Store:
    """One SQLite file; open it, `load` it into a Core, run `writer` in a nursery."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.execute("PRAGMA wal_autocheckpoint=0")
        self.db.executescript(SCHEMA)
        columns = {row[1] for row in self.db.execute("PRAGMA table_info(jobs)")}
        for column in ("killed", "waited"):         # a file of an earlier version
            if column not in columns:
                self.db.execute(f"ALTER TABLE jobs ADD COLUMN {column} INTEGER NOT NULL "
                                "DEFAULT 0")
        self.reader = sqlite3.connect(path, check_same_thread=False)
        self.checkpointer = sqlite3.connect(path, check_same_thread=False,
                                            isolation_level=None)
        self.checkpointer.execute("PRAGMA synchronous=NORMAL")
        self.rows_since_checkpoint = 0
        self.checkpointing = False
        self.checkpointed = trio.Event()    # set when the latest checkpoint has ended
        self.waiting: list[_Batch] = []
        self.wake = trio.Event()
        self.commits = 0
        self.writes = 0

    def statistics(self) -> dict[str, int]:
        """How many writes were asked for and how many commits served them."""
        return {"writes": self.writes, "commits": self.commits}

    def write_now(self, statements: list[Statement]) -> None:
        """Commit at once, on this thread: only once the writer has stopped."""
        self.db.execute("BEGIN IMMEDIATE")
        for sql, values in statements:
            self.db.execute(sql, values)
        self.db.execute("COMMIT")

    def close(self) -> None:
        self.reader.close()
        self.checkpointer.close()
        self.db.close()

    def task_node(self, jid: int, task: int) -> str:
        """The node a finished task ran on (a quick indexed read on its own connection)."""
        row = self.reader.execute("SELECT node FROM results WHERE job=? AND task=?",
                                  (jid, task)).fetchone()
        return row[0] if row else ""

    def load(self, core: Core) -> None:
        """Rebuild `core`'s jobs from the file (finished tasks stay finished).  A job
        this code cannot load (a description it cannot read, requirements with no
        ClassAd package) is loaded failed, with the reason; the rest load."""
        orphans = self.db.execute("SELECT max(job) FROM results WHERE job NOT IN "
                                  "(SELECT id FROM jobs)").fetchone()[0]
        if orphans is not None:         # a remove stopped half-way: finish it
            core.next_job = max(core.next_job, orphans + 1)     # never reuse its id
            self.db.execute("DELETE FROM results WHERE job NOT IN (SELECT id FROM jobs)")
        for jid, owner, spec, priority, held, killed, waited in self.db.execute(
                "SELECT id, owner, spec, priority, held, killed, waited FROM jobs ORDER BY id"):
            try:
                job = core.submit(JobSpec.from_lines(spec), owner, job_id=jid,
                                  parents=not waited)
            except Exception as exc:    # whatever it is, the other jobs still load
                why = f"cannot load this job: {type(exc).__name__}: {str(exc)[:300]}"
                log.error("job=%s not loaded: %s", jid, why)
                found = _TASKS_LINE.search(spec)
                tasks = min(max(int(found.group(1)), 1), MAX_TASKS) if found else 1
                job = core.submit_failed(jid, owner, tasks, why)
            job.priority = priority
            for task, state, status, reason in self.reader.execute(
                    "SELECT task, state, exit, reason FROM results WHERE job=?", (jid,)):
                if not 0 <= task < job.spec.tasks or (state not in FINISHED and state != HELD):
                    continue
                job.set_state(task, state)
                job.exit[task] = status
                if reason and state != KILLED:      # a kill's reason goes without saying
                    job.reasons[task] = reason
            if killed:
                core.kill(jid)
            elif held and not job.finished:
                core.hold(jid)
        for name, factor, usage, at in self.db.execute("SELECT name, factor, usage, at "
                                                       "FROM users"):
            core.shares.restore(name, factor, usage, at)

    async def write(self, statements: Iterable[Statement], *, bulk: bool = False) -> None:
        """Return once `statements` are committed (together with whatever else waits);
        `bulk`: they may be many, commit them off the loop."""
        batch = _Batch(list(statements), trio.Event(), bulk)
        self.writes += 1
        self.waiting.append(batch)
        self.wake.set()
        await batch.done.wait()
        if batch.error is not None:
            raise batch.error

    async def writer(self, *, task_status: trio.TaskStatus = trio.TASK_STATUS_IGNORED) -> None:
        """Commit waiting batches, one transaction per round, until cancelled; start
        a checkpoint beside it whenever enough of the WAL has gathered."""
        async with trio.open_nursery() as nursery:
            task_status.started()
            while True:
                await self.wake.wait()
                self.wake = trio.Event()
                batches, self.waiting = self.waiting, []
                error: BaseException | None = None
                try:
                    if any(batch.bulk for batch in batches):
                        await trio.to_thread.run_sync(self._commit, batches)
                    else:
                        self._commit(batches)
                    self.commits += 1
                except sqlite3.Error as exc:
                    error = exc
                for batch in batches:
                    batch.error = error
                    batch.done.set()
                if self.rows_since_checkpoint >= CHECKPOINT_ROWS and not self.checkpointing:
                    self.checkpointing = True
                    self.checkpointed = trio.Event()
                    self.rows_since_checkpoint = 0
                    nursery.start_soon(self.checkpoint)

    async def checkpoint(self) -> None:
        """Move the WAL into the database file, in a thread (it fsyncs).  A passive
        checkpoint that meets a commit at the wrong moment moves nothing (busy):
        it tries again a moment later, a few times."""
        try:
            for _ in range(CHECKPOINT_TRIES):
                busy, frames, moved = await trio.to_thread.run_sync(self.checkpoint_once)
                if not busy and (moved > 0 or frames <= 0):
                    return
                await trio.sleep(CHECKPOINT_AGAIN)
            log.info("the store's checkpoint found the log busy %d times; the next "
                     "one tries again", CHECKPOINT_TRIES)
        finally:
            self.checkpointing = False
            self.checkpointed.set()

    def checkpoint_once(self) -> tuple[int, int, int]:
        """(busy, frames in the log, frames moved into the database file)."""
        busy, frames, moved = self.checkpointer.execute(
            "PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        return busy, frames, moved

    def _commit(self, batches: list[_Batch]) -> None:
        db = self.db
        before = db.total_changes
        db.execute("BEGIN IMMEDIATE")
        try:
            for batch in batches:
                for sql, params in batch.statements:
                    db.execute(sql, params)
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")
        self.rows_since_checkpoint += db.total_changes - before


# Statements for the changes the scheduler makes, named once.

def job_row(job: Job) -> Statement:
    """A job's priority and held flag, and whether the jobs it waited for have
    ended (from then on its held flag alone says whether it may run: a child
    its owner released after its parent failed stays released)."""
    return ("UPDATE jobs SET priority=?, held=?, waited=? WHERE id=?",
            (job.priority, int(job.held), int(bool(job.spec.after) and not job.waiting),
             job.id))


def new_job_row(jid: int, owner: str, spec: JobSpec) -> Statement:
    return ("INSERT INTO jobs (id, owner, spec, priority, held) VALUES (?,?,?,?,0)",
            (jid, owner, spec.lines(), spec.priority))


def result_row(job: Job, task: int, node: str = "") -> Statement:
    """A finished task's result, or a task held for breaking its requests."""
    assert job.state[task] in FINISHED or job.state[task] == HELD
    return ("INSERT OR REPLACE INTO results (job, task, state, exit, reason, node) "
            "VALUES (?,?,?,?,?,?)",
            (job.id, task, job.state[task], job.exit_of(task), job.reasons.get(task, ""), node))


def forget_held(job: Job) -> Statement:
    """A released job's tasks held one by one are queued again: their rows go."""
    return ("DELETE FROM results WHERE job=? AND state=?", (job.id, HELD))


def spec_row(job: Job) -> Statement:
    """A job whose requests were changed: its description as it is now."""
    return ("UPDATE jobs SET spec=? WHERE id=?", (job.spec.lines(), job.id))


def user_row(share: Share) -> Statement:
    """A user's factor and usage (settled: as at `share.at`, wall time)."""
    return ("INSERT OR REPLACE INTO users (name, factor, usage, at) VALUES (?,?,?,?)",
            (share.name, share.factor, share.usage, share.at))


def killed_row(job: Job) -> Statement:
    """Every task of a killed job that has no result is killed: one row, however
    many tasks (the results of tasks that finished first are kept)."""
    return ("UPDATE jobs SET killed=1 WHERE id=?", (job.id,))


SLICE = 65536       # tasks whose rows one statement of a retry or remove may delete


def forget_failed(job: Job) -> list[Statement]:
    """A retried job's failed tasks are queued again: their results go, a slice of
    tasks a statement, each committed on its own (`Grid.job_verb`) so that other
    writers wait for one slice, not for millions of rows."""
    return [("DELETE FROM results WHERE job=? AND state=? AND task >= ? AND task < ?",
             (job.id, FAILED, start, start + SLICE))
            for start in range(0, job.spec.tasks, SLICE)]


def forget_job(jid: int, tasks: int) -> list[Statement]:
    """A removed job: its row first, then its results a slice at a time (results
    left by a scheduler stopped half-way are deleted at the next start)."""
    return [("DELETE FROM jobs WHERE id=?", (jid,))] + [
        ("DELETE FROM results WHERE job=? AND task >= ? AND task < ?", (jid, start, start + SLICE))
        for start in range(0, tasks, SLICE)]
