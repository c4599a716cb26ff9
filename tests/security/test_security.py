"""Security with real TLS sockets and real certificates: the grid CA, join tokens,
refusals, ownership, worker policy, and two independent 9P clients through a TLS tunnel."""

from __future__ import annotations

import datetime as dt
import os
import pwd
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import pytest
import trio

from styxgrid.ninep import NinePError
from styxgrid.ninep.client import ConnectionLost, open_client
from styxgrid.ninep.messages import DMDIR, ORDWR, Stat
from styxgrid.security import tls
from styxgrid.security.ca import CA, cert_pem, key_pem, new_key, write_identity
from styxgrid.security.dial import dial
from styxgrid.security.identity import Identity

from ..conformance import check_both
from ..helpers import STYXGRID, TIMEOUT, submit, wait

class TLSGrid:
    """A CA, a scheduler on TCP+TLS, and helpers to make identities and clients."""

    def __init__(self, proc, root: str) -> None:
        self.proc = proc
        self.root = root
        self.ca = CA.init(os.path.join(root, "ca"))
        self.state = os.path.join(root, "state")
        self.scheduler = proc(["scheduler", "--ca", str(self.ca.dir), "--state", self.state,
                               "--listen", "127.0.0.1:0"], r"serving \S+ on (\S+)")
        self.addr = self.scheduler.match.group(1)
        self.env = {**os.environ, "XDG_CONFIG_HOME": os.path.join(root, "config")}

    def identity(self, name: str, role: str) -> Identity:
        return Identity(self.ca.issue(name, role, os.path.join(self.root, f"id-{name}")))

    def client(self, identity: Identity | None, **kw):
        return _Client(self.addr, identity, **kw)

    def cli(self, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
        return subprocess.run([*STYXGRID, *args], capture_output=True, text=True,
                              timeout=TIMEOUT, env={**self.env, **(env or {})})

    def token(self, role: str, *extra: str) -> str:
        out = self.cli("token", "create", "--ca", str(self.ca.dir), "--role", role, *extra)
        assert out.returncode == 0, out.stderr
        return out.stdout.strip()

    def worker(self, name: str, *extra: str):
        identity = self.identity(name, "worker")
        return self.proc(["worker", "--scheduler", self.addr, "--name", name, "--identity",
                          str(identity.dir), "--heartbeat", "0.5", "--workdir",
                          os.path.join(self.root, f"work-{name}"), *extra], r"joined")


class _Client:
    """`async with grid.client(identity) as c`: a 9P client over TLS."""

    def __init__(self, addr: str, identity: Identity | None, uname: str | None = None,
                 aname: str = "") -> None:
        self.addr, self.identity, self.uname, self.aname = addr, identity, uname, aname

    async def __aenter__(self):
        stream, name = await dial(self.addr, self.identity)
        self.cm = open_client(stream, uname=self.uname or name or "nobody", aname=self.aname)
        return await self.cm.__aenter__()

    async def __aexit__(self, *exc):
        return await self.cm.__aexit__(*exc)


@pytest.fixture
def tgrid(proc):
    root = tempfile.mkdtemp(prefix="sgt-", dir="/tmp")
    os.chmod(root, 0o755)
    yield TLSGrid(proc, root)
    shutil.rmtree(root, ignore_errors=True)


def test_readme_commands_bring_up_a_tls_grid_with_a_worker_joined_by_token(tmp_path):
    """ca init; scheduler --ca; worker --join $(token create): a job runs."""
    env = {**os.environ, "XDG_CONFIG_HOME": str(tmp_path / "config")}
    os.chmod(tmp_path, 0o755)

    def cli(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([*STYXGRID, *args], capture_output=True, text=True, env=env,
                              timeout=TIMEOUT, cwd=tmp_path)
    assert cli("ca", "init", "--dir", "ca").returncode == 0
    sched = subprocess.Popen([*STYXGRID, "scheduler", "--ca", "ca", "--listen", "127.0.0.1:0"],
                             stderr=subprocess.PIPE, text=True, env=env, cwd=tmp_path)
    worker = None
    try:
        addr = next(line for line in sched.stderr if "serving" in line).split()[-1]
        token = cli("token", "create", "--ca", "ca", "--role", "worker").stdout.strip()
        worker = subprocess.Popen([*STYXGRID, "worker", "--join", token, "--scheduler", addr,
                                   "--name", "w1"], stderr=subprocess.PIPE, text=True, env=env,
                                  cwd=tmp_path)
        assert "enrolled as w1" in worker.stderr.readline()
        assert "joined" in worker.stderr.readline()
        user = cli("token", "create", "--ca", "ca", "--role", "user").stdout.strip()
        assert cli("login", "--join", user, "--scheduler", addr, "--name", "alice").returncode == 0
        job = cli("submit", "--", "sh", "-c", "echo hi from $(id -un)").stdout.strip()
        assert " done " in cli("wait", job).stdout
        assert cli("cat", f"jobs/{job}/stdout").stdout.startswith("hi from sg-")
        assert "owner=alice" in cli("cat", f"jobs/{job}/status").stdout
        key = tmp_path / "config" / "styxgrid" / "user" / "key.pem"
        assert oct(key.stat().st_mode & 0o777) == "0o600"
    finally:
        for p in (worker, sched):
            if p is not None:
                p.terminate()
                p.wait(10)
                p.stderr.close()


async def test_plaintext_client_is_refused_on_the_tls_port(tgrid):
    with pytest.raises((ConnectionLost, NinePError, OSError)):
        with trio.fail_after(TIMEOUT):
            async with open_client(tgrid.addr, uname="root") as c:
                await c.read_file("stats")


async def test_certificate_from_another_ca_is_refused(tgrid):
    other = CA.init(os.path.join(tgrid.root, "other-ca"))
    stranger = Identity(other.issue("alice", "user", os.path.join(tgrid.root, "stranger")))
    # trust our grid's CA for the server, but present the other CA's certificate
    shutil.copy(tgrid.ca.dir / "ca.crt", stranger.ca)
    with pytest.raises((trio.BrokenResourceError, ConnectionLost, OSError)):
        async with tgrid.client(stranger) as c:
            await c.read_file("stats")


async def test_expired_certificate_is_refused(tgrid):
    key = new_key()
    old = dt.datetime.now(dt.timezone.utc) - dt.timedelta(days=10)
    cert = tgrid.ca.sign(key.public_key(), "late", "user", days=1, not_before=old)
    expired = Identity(write_identity(Path(tgrid.root) / "late", key_pem(key), cert_pem(cert),
                                      cert_pem(tgrid.ca.cert)))
    with pytest.raises((trio.BrokenResourceError, ConnectionLost, OSError)):
        async with tgrid.client(expired) as c:
            await c.read_file("stats")


async def test_revoked_name_is_refused_and_dropped_while_connected(tgrid):
    bob = tgrid.identity("bob", "user")
    async with tgrid.client(bob) as c:
        assert (await c.read_file("stats")).startswith(b"jobs=")
        events = await c.open("events")              # a read that waits: it ends with the link
        assert tgrid.cli("ca", "revoke", "--dir", str(tgrid.ca.dir), "bob").returncode == 0
        with trio.fail_after(10):
            with pytest.raises(ConnectionLost):
                while True:
                    await events.read()
    with pytest.raises(NinePError, match="^the certificate of bob is revoked$"):
        async with tgrid.client(bob) as c:       # told why, at attach; nothing served
            await c.read_file("stats")
    out = tgrid.cli("--scheduler", tgrid.addr, "q", env={"STYXGRID_IDENTITY": str(bob.dir)})
    assert out.returncode == 1
    assert out.stderr == "styxgrid: q: the certificate of bob is revoked\n"


def test_tokens_cannot_be_replayed_or_used_late(tgrid, tmp_path):
    token = tgrid.token("user")
    first = tgrid.cli("login", "--join", token, "--scheduler", tgrid.addr, "--name", "carol")
    assert first.returncode == 0, first.stderr
    again = tgrid.cli("login", "--join", token, "--scheduler", tgrid.addr, "--name", "dave",
                      env={"XDG_CONFIG_HOME": str(tmp_path / "c2")})
    # refused by the scheduler: 1, as styxgrid(1) says (2 is for a bad command line)
    assert again.returncode == 1 and "token already used up" in again.stderr
    short = tgrid.token("user", "--ttl", "1s")
    time.sleep(1.2)                              # token lifetimes are wall-clock time
    late = tgrid.cli("login", "--join", short, "--scheduler", tgrid.addr, "--name", "erin",
                     env={"XDG_CONFIG_HOME": str(tmp_path / "c3")})
    assert late.returncode == 1 and "token expired" in late.stderr
    taken = tgrid.cli("login", "--join", tgrid.token("user"), "--scheduler", tgrid.addr,
                      "--name", "carol", env={"XDG_CONFIG_HOME": str(tmp_path / "c4")})
    assert taken.returncode == 1 and "taken" in taken.stderr


def test_no_one_enrols_as_root_or_as_the_scheduler(tgrid, tmp_path):
    """A user token spent under a name that reads as more rights is refused."""
    for i, name in enumerate(("root", "scheduler", "grid", pwd.getpwuid(os.getuid()).pw_name)):
        out = tgrid.cli("login", "--join", tgrid.token("user"), "--scheduler", tgrid.addr,
                        "--name", name, env={"XDG_CONFIG_HOME": str(tmp_path / f"r{i}")})
        assert out.returncode == 1 and f"the name '{name}' is taken" in out.stderr, out.stderr
    lookalike = tgrid.cli("login", "--join", tgrid.token("user"), "--scheduler", tgrid.addr,
                          "--name", "\uff52\uff4f\uff4f\uff54",
                          env={"XDG_CONFIG_HOME": str(tmp_path / "look")})
    assert lookalike.returncode != 0 and "use ASCII letters" in lookalike.stderr


async def test_attach_name_must_be_the_certificates(tgrid):
    alice = tgrid.identity("alice", "user")
    with pytest.raises(NinePError, match="is not the certificate's name 'alice'"):
        async with tgrid.client(alice, uname="root") as c:
            await c.read_file("stats")
    host, port = tgrid.addr.rsplit(":", 1)
    bare = await tls.connect(host, int(port), tls.pinning_context())   # TLS, no certificate
    with pytest.raises(NinePError, match="no client certificate"):
        async with open_client(bare, uname="anyone") as c:
            await c.read_file("stats")


async def test_users_control_only_their_own_jobs_and_admins_any(tgrid):
    alice, bob = tgrid.identity("alice", "user"), tgrid.identity("bob", "user")
    admin = tgrid.identity("boss", "admin")
    async with tgrid.client(alice) as a, tgrid.client(bob) as b, tgrid.client(admin) as root:
        job = await submit(a, "submit sleep 30\n")
        for verb in (b"kill\n", b"hold\n", b"priority 9\n"):
            with pytest.raises(NinePError, match="permission denied"):
                await b.write_file(f"jobs/{job}/ctl", verb)
        assert b"queued" in await b.read_file(f"jobs/{job}/status")      # bob may look
        with pytest.raises(NinePError, match="permission denied"):
            await b.write_file("ctl", b"drain\n")
        with pytest.raises(NinePError, match="permission denied"):
            await a.read_file("work")
        await a.write_file(f"jobs/{job}/ctl", b"hold\n")
        await root.write_file(f"jobs/{job}/ctl", b"kill\n")
        assert " killed " in await wait(a, job)
        await root.write_file("ctl", b"resume\n")
        # /data: /data/USER is USER's, private until he shares it by its mode bits;
        # a user writes only under /data/USER
        await a.write_file("data/alice/mine.txt", b"mine\n")
        with pytest.raises(NinePError, match="permission denied"):
            await b.read_file("data/alice/mine.txt")
        await a.wstat("data/alice", Stat.dont_touch(mode=DMDIR | 0o755))
        await a.wstat("data/alice/mine.txt", Stat.dont_touch(mode=0o644))
        assert await b.read_file("data/alice/mine.txt") == b"mine\n"
        with pytest.raises(NinePError, match="permission denied"):
            await b.write_file("data/alice/theirs.txt", b"x")
        with pytest.raises(NinePError, match="permission denied"):
            await b.write_file("data/top.txt", b"x")
        with pytest.raises(NinePError):
            await a.read_file("data/../../ca/ca.key")
        assert b"ca.key" not in b"".join(s.name.encode() for s in await a.ls("data/.."))


async def test_symlinks_out_of_data_are_refused(tgrid):
    os.makedirs(os.path.join(tgrid.state, "data", "alice"), exist_ok=True)
    os.symlink("/etc", os.path.join(tgrid.state, "data", "alice", "etc"))
    alice = tgrid.identity("alice", "user")
    async with tgrid.client(alice) as a:
        with pytest.raises(NinePError, match="permission denied: path leaves"):
            await a.read_file("data/alice/etc")        # the link itself, walked alone
        with pytest.raises(NinePError):
            await a.read_file("data/alice/etc/hostname")
        with pytest.raises(NinePError):
            await a.read_file("/etc/hostname")


async def test_worker_certificate_reaches_only_its_own_things(tgrid):
    w1, w2 = tgrid.identity("w1", "worker"), tgrid.identity("w2", "worker")
    alice = tgrid.identity("alice", "user")
    async with tgrid.client(alice) as a, tgrid.client(w1, aname="worker") as one, \
            tgrid.client(w2, aname="worker") as two:
        job = await submit(a, "submit echo x\n")
        ctl1 = await one.open("work", ORDWR)
        await ctl1.pwrite(0, b"join w1\nslots 1\n")
        ctl2 = await two.open("work", ORDWR)
        with pytest.raises(NinePError, match="certificate's name"):
            await ctl2.pwrite(0, b"join w1\nslots 1\n")
        await ctl2.pwrite(0, b"join w2\nslots 1\n")
        slot = await one.open("work")
        assert (await slot.pread(0, 4096)).startswith(f"task {job} 0".encode())
        for path in ("ctl", "new", "stats", f"jobs/{job}/status", "nodes/index",
                     "nodes/w1/ctl"):
            with pytest.raises(NinePError, match="permission denied"):
                await two.read_file(path)
        with pytest.raises(NinePError, match="permission denied"):
            await two.write_file(f"jobs/{job}/tasks/0/stdout", b"forged\n")
        with pytest.raises(NinePError, match="permission denied"):
            await two.read_file("nodes/w1/status")
        assert (await two.read_file("nodes/w2/status")).startswith(b"w2 ")
        with pytest.raises(NinePError, match="permission denied"):
            await one.write_file("data/planted.txt", b"x")
        await one.write_file(f"jobs/{job}/tasks/0/stdout", b"real\n")
        await ctl1.pwrite(0, f"done {job} 0 0".encode())
        assert " done " in await wait(a, job)
        assert await a.read_file(f"jobs/{job}/stdout") == b"real\n"


async def test_a_task_cannot_read_its_workers_key_or_run_what_the_owner_forbids(tgrid):
    """The suite runs as root (README), so the worker runs tasks as a task user:
    the worker's key, its identity folder and its own files stay out of reach,
    even with the folder made readable to all."""
    worker = tgrid.worker("picky", "--allow", "/usr/bin/*", "--allow", "*/sh")
    key = os.path.join(tgrid.root, "id-picky", "key.pem")
    os.chmod(os.path.dirname(key), 0o755)          # even so: the key itself is 0600
    alice = tgrid.identity("alice", "user")
    async with tgrid.client(alice) as a:
        ok = await submit(a, f"submit sh -c 'id -un; cat {key}; ls {tgrid.root}/work-picky; "
                             "echo end'\n")
        assert " done " in await wait(a, ok)
        said = (await a.read_file(f"jobs/{ok}/stdout")).decode()
        assert said.startswith("sg-") and said.endswith("end\n"), said
        assert "PRIVATE KEY" not in said
        errors = (await a.read_file(f"jobs/{ok}/stderr")).decode()
        assert f"{key}: Permission denied" in errors
        assert f"'{tgrid.root}/work-picky': Permission denied" in errors
        blocked = await submit(a, "submit /bin/true\n")
        with trio.fail_after(TIMEOUT):
            while b"not on the allow list" not in await a.read_file(f"jobs/{blocked}/why"):
                await trio.sleep(0.05)
    assert worker.popen.poll() is None


def test_worker_refuses_to_run_tasks_as_root(tgrid):
    out = subprocess.run([*STYXGRID, "worker", "--scheduler", tgrid.addr, "--task-users",
                          "root"], capture_output=True, text=True, timeout=TIMEOUT)
    assert out.returncode == 2
    assert "--task-users: refusing root: tasks never run as root" in out.stderr


def test_tcp_scheduler_needs_a_ca_or_insecure(tmp_path):
    out = subprocess.run([*STYXGRID, "scheduler", "--state", str(tmp_path / "s"), "--listen",
                          "127.0.0.1:0"], capture_output=True, text=True, timeout=TIMEOUT)
    assert out.returncode == 2 and "needs --ca DIR" in out.stderr


def test_conformance_over_tls_through_socat(tgrid, proc):
    """The independent clients speak plain 9P; socat carries it over TLS with a
    user certificate (the attach name is the certificate's)."""
    prober = tgrid.identity("prober", "admin")
    os.makedirs(os.path.join(tgrid.state, "data", "probe"), exist_ok=True)
    Path(tgrid.state, "data", "probe", "f.txt").write_text("original\n")
    sock = os.path.join(tgrid.root, "tunnel.sock")
    host, port = tgrid.addr.rsplit(":", 1)
    tunnel = subprocess.Popen(
        ["socat", f"UNIX-LISTEN:{sock},fork",
         f"OPENSSL:{host}:{port},cert={prober.cert},key={prober.key},cafile={prober.ca},"
         "openssl-min-proto-version=TLS1.3"], stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 10
        while not os.path.exists(sock) and time.monotonic() < deadline:
            time.sleep(0.02)                     # socat has no readiness signal
        reports = check_both(sock, uname="prober", path="stats", wfile="data/probe/f.txt",
                             wdir="data/probe")
    finally:
        tunnel.terminate()
        tunnel.wait()
    for report in reports:
        assert not report.failed, report
        assert [s.split()[0] for s in report.skipped] == ["read-eof"], report

