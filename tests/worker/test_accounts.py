"""The pool of task users (worker/accounts.py), in process: who gets which
account, who waits, and what is removed when an account changes hands.  Real
uids (no passwd entry is needed to run as one), real processes, real files."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile

import trio
import trio.testing

from styxgrid.worker.accounts import Account, TaskUsers, owned_ipc

IPC_LEFT = """
import ctypes
libc = ctypes.CDLL(None)
shm = libc.shmget(0, 4096, 0o1600)               # IPC_PRIVATE, IPC_CREAT | 0600
libc.shmat.restype = ctypes.c_void_p
ctypes.memmove(libc.shmat(shm, None, 0), b"alice's secret", 14)
assert libc.semget(0, 1, 0o1600) >= 0 and libc.msgget(0, 0o1600) >= 0
"""


def pool() -> list[Account]:
    return [Account("sg-test-0", 61001, 61001), Account("sg-test-1", 61002, 61002)]


async def test_two_users_never_share_an_account_and_a_third_waits_for_one():
    users = TaskUsers(pool())
    alice, bob = await users.take("alice"), await users.take("bob")
    assert alice is not bob and (alice.owner, bob.owner) == ("alice", "bob")
    assert await users.take("alice") is alice and alice.uses == 2
    got: list[Account] = []

    async def carol() -> None:
        got.append(await users.take("carol"))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(carol)
        await trio.testing.wait_all_tasks_blocked()
        assert got == []                        # every account serves another user
        users.give_back(alice)
        await trio.testing.wait_all_tasks_blocked()
        assert got == []                        # alice still has a task here
        users.give_back(bob)
    assert got == [bob] and bob.owner == "carol"


async def test_what_an_account_left_is_gone_before_it_serves_another_user():
    users = TaskUsers(pool()[:1])
    account = await users.take("alice")
    uid = str(account.uid)
    as_account = ["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups"]
    left = tempfile.mkdtemp(prefix="left-", dir="/tmp")
    os.chown(left, account.uid, account.gid)
    daemon = subprocess.Popen([*as_account, "setsid", "sh", "-c", "echo ready; exec sleep 60"],
                              stdout=subprocess.PIPE)
    try:
        assert daemon.stdout is not None and daemon.stdout.readline() == b"ready\n"
        async with trio.open_nursery() as sweeping:
            sweeping.start_soon(users.sweep, 0.05)
            users.give_back(account)             # idle: its processes are killed
            assert await trio.to_thread.run_sync(daemon.wait, 10) == -9
            sweeping.cancel_scope.cancel()
        assert os.path.isdir(left)               # its files wait till it changes hands
        # System V IPC that outlives its processes: a shared memory segment with
        # a secret, a semaphore set and a message queue, made as the account
        subprocess.run([*as_account, sys.executable, "-c", IPC_LEFT], check=True)
        assert all(owned_ipc(kind, account.uid) for kind in ("shm", "sem", "msg"))
        assert await users.take("bob") is account
        assert not os.path.exists(left)
        assert not any(owned_ipc(kind, account.uid) for kind in ("shm", "sem", "msg"))
    finally:
        daemon.kill()
        subprocess.run(["rm", "-rf", left])
