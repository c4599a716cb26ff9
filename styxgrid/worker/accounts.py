"""Task users: the accounts a worker started as root runs tasks as, like
HTCondor's slot users.  Tasks of two grid users never run as one uid at the same
time, so neither can read the other's folder or signal the other's processes.

Each account serves one grid user at a time.  A task takes the account that
already serves its owner here, else an idle one; an account changes hands only
when no folder of its tasks is left, and then what its last user left behind
(processes that escaped their task, files in the machine's temporary folders,
System V shared memory, semaphores and message queues, POSIX message queues) is
removed first.  Whenever an account has been idle for a moment (SWEEP), its
leftover processes are killed, and a worker starting again does the same for
all of its accounts.

One worker at a time uses a pool: a worker holds a lock on it (in /run, which
only root writes), and so does its keeper, which kills the pool's processes
when the worker is gone.  A worker that replaces another of its name waits, once
joined (which makes the other one stop), until both have let go, and only then
cleans the accounts and runs tasks: otherwise the two would kill each other's.

The accounts are made on the worker's first start (`sg-TAG-N`, TAG from the
worker's name, with no home and no login shell) or named with --task-users.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import hashlib
import logging
import os
import pwd
import signal
import subprocess
import time
from dataclasses import dataclass

import trio

from .credentials import acting_as
from .removal import remove_tree

log = logging.getLogger("styxgrid.worker")
TEMPORARY = ("/tmp", "/var/tmp", "/dev/shm", "/dev/mqueue")   # where a task's files
                                                                # may outlive it
SYSV_IPC = {"shm": "shmid", "sem": "semid", "msg": "msqid"}   # /proc/sysvipc/X: id column
IPC_RMID = 0
LOCKS = "/run/styxgrid"                            # one lock per pool of task users


@dataclass(eq=False)
class Account:
    name: str
    uid: int
    gid: int
    owner: str | None = None                  # the grid user it serves now
    uses: int = 0                             # folders of its tasks not given back
    swept: bool = True                        # none of its processes can be left running

    @property
    def ids(self) -> tuple[int, int]:
        return self.uid, self.gid


def _tag(text: str) -> str:
    return hashlib.blake2b(text.encode(), digest_size=4).hexdigest()


def pool_names(worker: str, count: int) -> list[str]:
    """The accounts made for a worker: the same names at every start, and short
    (a login name has at most 32 characters)."""
    return [f"sg-{_tag(worker)}-{n}" for n in range(count)]


def pool_lock(pool: list[Account]) -> int:
    """The pool's lock file, opened (not yet locked)."""
    os.makedirs(LOCKS, 0o700, exist_ok=True)
    name = f"{LOCKS}/task-users-{_tag(' '.join(sorted(a.name for a in pool)))}.lock"
    return os.open(name, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)


def _useradd(name: str, worker: str) -> None:
    """Make a system account with a group of its own; another worker making
    accounts at the same moment holds the password file's lock for a while."""
    for attempt in range(50):
        done = subprocess.run(
            ["useradd", "--system", "--user-group", "--no-create-home",
             "--home-dir", "/nonexistent", "--shell", "/usr/sbin/nologin",
             "--comment", f"styxgrid tasks of worker {worker}", name],
            capture_output=True, text=True)
        if done.returncode == 0:
            return
        try:
            pwd.getpwnam(name)              # another worker of this name made it
            return
        except KeyError:
            pass
        if "lock" not in done.stderr or attempt == 49:
            raise ValueError(f"cannot make task user {name}: {done.stderr.strip()}")
        time.sleep(0.1)


def accounts(names: list[str], worker: str, make: bool) -> list[Account]:
    """The accounts named (made where missing when `make`), refusing root, a
    name given twice and an account that is not a plain user."""
    found: list[Account] = []
    for name in names:
        try:
            entry = pwd.getpwnam(name)
        except KeyError:
            if not make:
                raise ValueError(f"--task-users: no user {name}") from None
            _useradd(name, worker)
            log.info("node=%s made task user %s", worker, name)
            entry = pwd.getpwnam(name)
        if entry.pw_uid == 0 or entry.pw_gid == 0:
            raise ValueError(f"--task-users: refusing {name}: tasks never run as root "
                             "or root's group")
        if any(a.uid == entry.pw_uid for a in found):
            raise ValueError(f"--task-users: {name} has the uid of another task user")
        found.append(Account(name, entry.pw_uid, entry.pw_gid))
    return found


def kill_leftovers(account: Account) -> None:
    """SIGKILL every process of the account: kill(-1) as the account reaches
    exactly the processes it may signal, and never this one."""
    with acting_as(account.ids):
        try:
            os.kill(-1, signal.SIGKILL)
        except OSError as exc:
            if exc.errno != errno.ESRCH:        # ESRCH: none was left
                raise


def remove_temporary(account: Account) -> None:
    """Remove what the account left in the machine's temporary folders."""
    for folder in TEMPORARY:
        try:
            entries = list(os.scandir(folder))
        except OSError:
            continue
        for entry in entries:
            try:
                if entry.stat(follow_symlinks=False).st_uid != account.uid:
                    continue
                if entry.is_dir(follow_symlinks=False):
                    remove_tree(entry.path)
                else:
                    os.unlink(entry.path)
            except OSError:
                continue


def owned_ipc(kind: str, uid: int) -> list[int]:
    """The ids of the System V IPC objects of `kind` (shm, sem, msg) that `uid`
    owns or made: another user given the account could attach to them."""
    try:
        with open(f"/proc/sysvipc/{kind}") as f:
            header, *rows = f.read().splitlines()
    except OSError:
        return []
    names = header.split()
    ident, owner, maker = (names.index(n) for n in (SYSV_IPC[kind], "uid", "cuid"))
    found = []
    for row in rows:
        words = row.split()
        if len(words) == len(names) and uid in (int(words[owner]), int(words[maker])):
            found.append(int(words[ident]))
    return found


def remove_ipc(account: Account) -> None:
    """Remove the System V shared memory, semaphores and message queues the
    account left (a segment outlives every process that used it)."""
    libc = ctypes.CDLL(None)
    for ident in owned_ipc("shm", account.uid):
        libc.shmctl(ident, IPC_RMID, None)
    for ident in owned_ipc("sem", account.uid):
        libc.semctl(ident, 0, IPC_RMID)
    for ident in owned_ipc("msg", account.uid):
        libc.msgctl(ident, IPC_RMID, None)


SWEEP = 0.5        # seconds between sweeps for the leftovers of idle accounts


def clean(account: Account) -> None:
    kill_leftovers(account)
    remove_temporary(account)
    remove_ipc(account)


def task_users(names: tuple[str, ...], worker: str, slots: int) -> "TaskUsers | None":
    """The pool of a worker started as root: the accounts named, else one per
    slot, made on first start.  None for any other worker: its tasks run as its
    own user, the only one it can run them as."""
    if os.geteuid() != 0:
        if names:
            raise ValueError("--task-users needs the worker to be started as root")
        return None
    made = accounts(list(names) or pool_names(worker, max(1, slots)), worker, make=not names)
    return TaskUsers(made)


class TaskUsers:
    """The pool.  `take` waits while every account serves another user."""

    def __init__(self, pool: list[Account]) -> None:
        self.pool = pool
        self.freed = trio.Event()
        self.lock = pool_lock(pool)           # the keeper inherits it

    async def sweep(self, every: float = SWEEP) -> None:
        """Kill what tasks left running (setsid and the like) in accounts no task
        uses now, a moment after their last task: not after each tiny task of a
        user whose next task takes the account again at once."""
        while True:
            await trio.sleep(every)
            for account in self.pool:
                if account.uses == 0 and not account.swept:
                    account.swept = True
                    kill_leftovers(account)

    async def claim(self, worker: str) -> None:
        """Hold the pool, once an earlier worker using it (and its keeper) let go,
        and clean what its tasks left."""
        try:
            fcntl.flock(self.lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log.warning("node=%s waits for an earlier worker of its task users to end",
                        worker)
            await trio.to_thread.run_sync(fcntl.flock, self.lock, fcntl.LOCK_EX,
                                          abandon_on_cancel=True)
        for account in self.pool:
            await trio.to_thread.run_sync(clean, account)

    async def take(self, owner: str) -> Account:
        while True:
            for account in self.pool:
                if account.owner == owner:
                    account.uses += 1
                    return account
            idle = [a for a in self.pool if a.uses == 0]
            if not idle:
                if self.freed.is_set():
                    self.freed = trio.Event()
                await self.freed.wait()
                continue
            fresh = [a for a in idle if a.owner is None]
            if fresh:
                fresh[0].owner, fresh[0].uses = owner, 1
                return fresh[0]
            account = idle[0]                 # another user's: clean it first
            account.owner, account.uses = None, 1
            try:
                await trio.to_thread.run_sync(clean, account)
            finally:
                account.uses = 0
            # and look again: the owner may have got an account meanwhile

    def give_back(self, account: Account) -> None:
        """A folder of its tasks is given back; with none left, its leftover
        processes are killed by the next sweep (its files go when it changes
        hands; till the sweep, only the same user's next task could meet them)."""
        account.uses -= 1
        if account.uses == 0:
            account.swept = False
            self.freed.set()
