"""The `styxgrid` command: one subcommand per job, each a thin layer over a library."""

from __future__ import annotations

import argparse
import functools
import gc
import logging
import os
import resource
import signal
import socket
import subprocess
import sys
from pathlib import Path
from typing import Awaitable, Callable

import trio

from .errgroups import unwrapped
from .ninep import NinePError, memory, serve_listeners
from .ninep.client import Client, ConnectionLost, open_client
from .ninep.exportfs import ExportFS
from .ninep.messages import DMDIR, OREAD, ORDWR
from .ninep.transport import open_listeners, parse_address

Command = Callable[[argparse.Namespace], int]
COMMANDS: dict[str, Command] = {}


def command(fn: Command) -> Command:
    COMMANDS[fn.__name__.replace("cmd_", "").replace("_", "-")] = fn
    return fn


def say(text: str) -> None:
    """A status line for the operator (stderr, flushed: tests and scripts wait on it)."""
    print(f"styxgrid: {text}", file=sys.stderr, flush=True)


@command
def cmd_exportfs(args: argparse.Namespace) -> int:
    try:
        fs = ExportFS(args.dir)
        addr = parse_address(args.listen)
    except (OSError, ValueError) as exc:
        say(f"exportfs: {exc}")
        return 2

    async def run() -> None:
        listeners = await open_listeners(addr)
        async with trio.open_nursery() as nursery:
            await nursery.start(functools.partial(serve_listeners, fs, listeners,
                                                  trace=args.trace))
            nursery.start_soon(memory.give_back)
            say(f"exportfs: serving {fs.root} on {_bound(listeners, addr)}")

    try:
        trio.run(run)
    except OSError as exc:
        say(f"exportfs: {exc}")
        return 1
    except KeyboardInterrupt:
        return 0
    return 0


def _bound(listeners: list, addr) -> str:
    """The address actually listened on (TCP port 0 becomes the chosen port)."""
    if addr.path is not None:
        return addr.path
    host, port = listeners[0].socket.getsockname()[:2]
    return f"{host}:{port}"


DEFAULT_STATE = ".styxgrid"
SOCKET_NAME = "scheduler.sock"


def default_scheduler() -> str:
    """$STYXGRID_SCHEDULER, else the socket of a `styxgrid up` in this folder or
    above, else the scheduler `styxgrid login` joined."""
    env = os.environ.get("STYXGRID_SCHEDULER")
    if env:
        return env
    here = Path.cwd()
    for folder in (here, *here.parents):
        sock = folder / DEFAULT_STATE / SOCKET_NAME
        if sock.exists():
            return str(sock)
    return user_identity().scheduler or str(here / DEFAULT_STATE / SOCKET_NAME)


def user_identity():
    from .security.identity import Identity, user_identity_dir
    return Identity(user_identity_dir())


# The scheduler holds many long-lived objects (each worker's connection and its
# waiting read); with Python's default thresholds the collector walks them all every
# few hundred tasks, so the cost of a task grew with the number of workers connected.
SCHEDULER_GC_THRESHOLDS = (50_000, 20, 100)


async def _serve_scheduler(args: argparse.Namespace, addr, ready: Callable[[str], None]) -> None:
    from .scheduler.service import serve_scheduler
    gc.set_threshold(*SCHEDULER_GC_THRESHOLDS)
    async with trio.open_nursery() as nursery:
        _grid, listeners = await nursery.start(functools.partial(
            serve_scheduler, args.state, addr, heartbeat_timeout=args.heartbeat_timeout,
            trace=args.trace, ca_dir=getattr(args, "ca", None),
            insecure=getattr(args, "insecure", False)))
        ready(_bound(listeners, addr))


def _run_until_signal(main: Callable[[], Awaitable[None]]) -> None:
    """Run `main` under trio until it ends or SIGINT/SIGTERM arrives."""
    async def run() -> None:
        async with trio.open_nursery() as nursery:
            async def on_signal() -> None:
                with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
                    async for _ in signals:
                        nursery.cancel_scope.cancel()
            nursery.start_soon(on_signal)
            await main()
            nursery.cancel_scope.cancel()
    trio.run(run)


@command
def cmd_scheduler(args: argparse.Namespace) -> int:
    try:
        addr = parse_address(args.listen or str(Path(args.state).resolve() / SOCKET_NAME))
    except ValueError as exc:
        say(f"scheduler: {exc}")
        return 2
    from .scheduler.service import SetupError
    from .security.ca import CAError
    if args.insecure and addr.path is None:
        say("scheduler: WARNING: --insecure: plain 9P on TCP, every attach name believed, "
            "anyone who can connect is an admin")
    try:
        with unwrapped():
            _run_until_signal(lambda: _serve_scheduler(
                args, addr, lambda where: say(f"scheduler: serving {args.state} on {where}")))
    except (SetupError, CAError) as exc:
        say(f"scheduler: {exc}")
        return 2
    except OSError as exc:
        say(f"scheduler: {exc}")
        return 1
    return 0


def _worker_config(args: argparse.Namespace):
    from .security.identity import Identity, worker_identity_dir
    from .worker.ad import parse_attr
    from .worker.agent import WorkerConfig
    attrs = dict(parse_attr(a) for a in args.attr)
    name = args.name or socket.gethostname()
    identity = Identity(Path(args.identity) if args.identity else worker_identity_dir(name))
    return WorkerConfig(scheduler=args.scheduler or identity.scheduler or default_scheduler(),
                        name=name, slots=args.slots, workdir=args.workdir or "", attrs=attrs,
                        nice=args.nice, heartbeat=args.heartbeat, identity=identity,
                        allow=tuple(args.allow), run_as=args.run_as,
                        max_load=args.max_load)


def _enrol(command: str, scheduler: str, token: str, name: str, out: Path) -> int:
    """Spend a join token at a TCP scheduler for a certificate kept in `out`;
    0, or the exit status after saying what went wrong."""
    from .security.ca import CAError
    from .security.enrol import enrol
    try:
        where = parse_address(scheduler)
        if where.path is not None:
            raise ValueError("--join needs the scheduler's HOST:PORT (a unix socket needs no "
                             "certificate)")
        assert where.host is not None and where.port is not None
        with unwrapped():
            identity = trio.run(enrol, where.host, where.port, token, name, out)
    except (ValueError, CAError, NinePError) as exc:
        say(f"{command}: {exc}")
        return 2
    except (OSError, ConnectionLost, trio.BrokenResourceError, trio.TooSlowError) as exc:
        say(f"{command}: cannot enrol at {scheduler}: {exc}")
        return 1
    identity.remember_scheduler(scheduler)
    say(f"{command}: enrolled as {name}; certificate in {out}")
    return 0


@command
def cmd_worker(args: argparse.Namespace) -> int:
    from .worker.agent import Replaced, Worker
    try:
        config = _worker_config(args)
    except ValueError as exc:
        say(f"worker: {exc}")
        return 2
    assert config.identity is not None
    if args.join and not config.identity.exists():
        failed = _enrol("worker", config.scheduler, args.join, config.name, config.identity.dir)
        if failed:
            return failed
    try:
        worker = Worker(config)
    except ValueError as exc:
        say(f"worker: {exc}")
        return 2

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            await nursery.start(worker.run)
            say(f"worker: {config.name} joined {config.scheduler} with {config.slots} slots")
    try:
        with unwrapped():
            _run_until_signal(main)
    except Replaced as exc:
        say(f"worker: {config.name}: {exc}")
        return 1
    return 0


@command
def cmd_up(args: argparse.Namespace) -> int:
    """A scheduler on a unix socket in the state folder and local workers, in the
    foreground, until Ctrl-C or SIGTERM; its children end with it (see up.py)."""
    from .up import Child, clear_dead_mount
    if args.mount and not fuse_installed("up"):
        return 2
    state = Path(args.state).resolve()
    addr = parse_address(str(state / SOCKET_NAME))
    slots = args.workers or os.cpu_count() or 1
    args.state = str(state)
    mount = os.path.abspath(args.mount) if args.mount else None

    async def main() -> None:
        children: list[Child] = []
        try:
            async with trio.open_nursery() as nursery:
                ready = trio.Event()
                nursery.start_soon(_serve_scheduler, args, addr, lambda where: ready.set())
                await ready.wait()
                worker = Child(["worker", "--scheduler", str(addr), "--slots", str(slots),
                                "--name", f"{socket.gethostname()}-local"])
                children.append(worker)
                await worker.wait_line("joined")
                nursery.start_soon(worker.copy_stderr)
                if mount:
                    cleared = clear_dead_mount(mount)
                    if cleared:
                        say(f"up: {cleared}")
                    os.makedirs(mount, exist_ok=True)
                    fuse = Child(["mount", "--foreground", str(addr), mount])
                    children.insert(0, fuse)
                    await fuse.wait_line("mounted on")
                    nursery.start_soon(fuse.copy_stderr)
                say(f"up: scheduler on {addr}, {slots} local worker slots, state in {state}")
                if args.mount:
                    say(f"up: try  echo 'submit echo hi' > {args.mount}/new; "
                        f"cat {args.mount}/jobs/1/wait")
                else:
                    say(f"up: try  STYXGRID_SCHEDULER={addr} styxgrid submit -- echo hi")
                code = await worker.wait()
                raise OSError(f"the local worker ended (status {code})")
        finally:
            for child in children:
                child.stop()
    try:
        with unwrapped():
            _run_until_signal(main)
    except OSError as exc:
        say(f"up: {exc}")
        return 1
    return 0


def fuse_installed(verb: str) -> bool:
    """pyfuse3 is an optional part: without it, one line says what to install."""
    try:
        import pyfuse3  # noqa: F401
    except ImportError:
        say(f"{verb}: FUSE support is not installed: pip install 'styxgrid[fuse]' "
            "(it needs the fuse3 and libfuse3-dev packages)")
        return False
    return True


@command
def cmd_mount(args: argparse.Namespace) -> int:
    """Mount a 9P server with FUSE; in the background unless --foreground."""
    if not fuse_installed("mount"):
        return 2
    mountpoint = os.path.abspath(args.mountpoint)
    if not os.path.isdir(mountpoint):
        say(f"mount: {mountpoint} is not a folder")
        return 2
    if not args.foreground:
        return _mount_in_background(args, mountpoint)
    from .fs.mount import serve_mount

    def ready() -> None:
        say(f"mount: {args.addr} mounted on {mountpoint}")
        if os.environ.pop("STYXGRID_DETACHED", None):
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, 2)
            os.close(devnull)
    try:
        with unwrapped():
            trio.run(functools.partial(serve_mount, args.addr, mountpoint,
                                       identity=user_identity(), ready=ready))
    except (OSError, ConnectionLost, NinePError, RuntimeError, trio.BrokenResourceError) as exc:
        say(f"mount: cannot mount {args.addr} on {mountpoint}: {exc}")
        return 1
    return 0


def _mount_in_background(args: argparse.Namespace, mountpoint: str) -> int:
    """Start the foreground mount as a detached child; return once it is mounted
    (0) or has failed (its message, 1)."""
    child = subprocess.Popen(
        [sys.executable, "-m", "styxgrid", "mount", "--foreground", args.addr, mountpoint],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        text=True, start_new_session=True, env={**os.environ, "STYXGRID_DETACHED": "1"})
    assert child.stderr is not None
    for line in child.stderr:
        sys.stderr.write(line)
        if " mounted on " in line:
            child.stderr.close()
            return 0
    child.wait()
    return 1


@command
def cmd_login(args: argparse.Namespace) -> int:
    """Spend a user join token for a certificate; later commands use it."""
    return _enrol("login", args.scheduler, args.join, args.name or _local_user(),
                  user_identity().dir)


def _local_user() -> str:
    from .ninep.client import default_uname
    return default_uname()


@command
def cmd_ca(args: argparse.Namespace) -> int:
    """The grid CA: init, issue, revoke."""
    from .security.ca import CA, CAError
    try:
        if args.ca_command == "init":
            ca = CA.init(args.dir)
            say(f"ca: made {ca.dir} (fingerprint {ca.fingerprint})")
        elif args.ca_command == "issue":
            out = CA.open(args.dir).issue(args.name, args.role,
                                          args.out or f"{args.name}.identity", days=args.days)
            say(f"ca: {args.role} {args.name}: key and certificate in {out}")
        else:
            CA.open(args.dir).revoke(args.name)
            say(f"ca: {args.name} revoked; its connections are dropped")
    except CAError as exc:
        say(f"ca: {exc}")
        return 2
    return 0


@command
def cmd_token(args: argparse.Namespace) -> int:
    """Print a join token for a new worker or user."""
    from .security import tokens
    from .security.ca import CA, CAError
    try:
        token = tokens.create(CA.open(args.ca), args.role, ttl=tokens.parse_ttl(args.ttl),
                              uses=args.uses)
    except CAError as exc:
        say(f"token: {exc}")
        return 2
    print(token)
    return 0


@command
def cmd_umount(args: argparse.Namespace) -> int:
    result = subprocess.run(["fusermount3", "-u", os.path.abspath(args.mountpoint)])
    return result.returncode


# ------------------------------------------------------------------ user commands over 9P

def _client_command(fn: Callable[[Client, argparse.Namespace], Awaitable[int]]) -> Command:
    """Wrap an async command that talks to the scheduler: connect, run, report errors."""
    @functools.wraps(fn)
    def run(args: argparse.Namespace) -> int:
        address = args.scheduler or default_scheduler()

        async def main() -> int:
            from .security.dial import dial
            with unwrapped():
                stream, uname = await dial(address, user_identity())
                args.uname = uname or _local_user()
                async with open_client(stream, uname=args.uname) as client:
                    return await fn(client, args)
        try:
            return trio.run(main)
        except NinePError as exc:
            say(f"{args.command}: {exc}")
            return 1
        except ValueError as exc:
            say(f"{args.command}: {exc}")
            return 2
        except (OSError, ConnectionLost, trio.BrokenResourceError) as exc:
            say(f"{args.command}: cannot reach the scheduler at {address}: {exc}")
            return 1
        except KeyboardInterrupt:
            return 130
    return command(run)


def description(args: argparse.Namespace) -> str:
    """The job the command line describes, checked here as the scheduler checks it
    and sent in its normal form (quoted where it must be: it arrives as given)."""
    from .scheduler.describe import DescriptionError, JobSpec, check_new
    if args.cmd[:1] == ["--"]:
        args.cmd = args.cmd[1:]
    if not args.cmd:
        raise ValueError("give the command after --")
    env = []
    for e in args.env:
        name, eq, value = e.partition("=")
        if not eq:
            raise ValueError(f"--env {e!r}: want NAME=VALUE")
        env.append((name, value))
    try:
        spec = JobSpec(cmd=args.cmd[0], args=tuple(args.cmd[1:]), tasks=args.tasks,
                       env=tuple(env), dir=args.dir or "", inputs=tuple(args.input),
                       outputs=tuple(args.output), requirements=args.requirements or "",
                       rank=args.rank or "", priority=args.priority or 0,
                       retries=args.retries or 0)
        check_new(spec)
    except DescriptionError as exc:
        raise ValueError(str(exc)) from None
    return spec.lines() + "submit\n"


async def ship_program(client: Client, args: argparse.Namespace) -> None:
    """`submit ./prog`: a program given by a path that exists here is sent along,
    as Condor sends the executable: stored once by content in
    /data/USER/programs/ and named as an input, so any worker can run it."""
    import hashlib
    program = args.cmd[0]
    if "/" not in program or not os.path.isfile(program):
        return
    with open(program, "rb") as f:
        data = f.read()
    name = f"{hashlib.sha256(data).hexdigest()[:16]}-{os.path.basename(program)}"
    folder = f"{args.uname}/programs"
    for part in (args.uname, folder):
        try:
            await client.stat(f"data/{part}")
        except NinePError:
            await (await client.create(f"data/{part}", perm=DMDIR | 0o755, mode=OREAD)).close()
    try:
        await client.stat(f"data/{folder}/{name}")
    except NinePError:
        await client.write_file(f"data/{folder}/{name}", data)
    args.cmd[0] = f"./{name}"
    args.input.append(f"{folder}/{name}")


async def cmd_submit(client: Client, args: argparse.Namespace) -> int:
    description(args)                           # check the arguments before sending anything
    await ship_program(client, args)
    f = await client.open("new", ORDWR)
    async with f:
        await f.pwrite(0, description(args).encode())
        print((await f.pread(0, 64)).decode().strip())
    return 0


async def cmd_q(client: Client, args: argparse.Namespace) -> int:
    print(f"{'JOB':>6} {'STATE':8} {'TASKS':>7} {'QUEUED':>7} {'RUN':>5} {'DONE':>7} "
          f"{'FAIL':>5} OWNER")
    for entry in await client.ls("jobs"):
        try:
            line = (await client.read_file(f"jobs/{entry.name}/status")).decode()
        except NinePError:
            continue                       # removed meanwhile
        words = line.split()
        f = dict(w.split("=", 1) for w in words[2:] if "=" in w)
        print(f"{words[0]:>6} {words[1]:8} {f['tasks']:>7} {f['queued']:>7} "
              f"{f['running']:>5} {f['done']:>7} {f['failed']:>5} {f['owner']}")
    return 0


async def cmd_status(client: Client, args: argparse.Namespace) -> int:
    sys.stdout.write((await client.read_file("nodes/index")).decode())
    sys.stdout.write((await client.read_file("stats")).decode())
    return 0


async def cmd_wait(client: Client, args: argparse.Namespace) -> int:
    """Show progress while the job runs; exit 0 if every task is done, else 1."""
    job = args.job
    show = sys.stderr.isatty()

    async def progress() -> None:
        """Redraw the bar when the job changes, at most ten times a second (the
        events that come meanwhile are read in one go)."""
        async for _ in client.stream(f"jobs/{job}/events"):
            words = (await client.read_file(f"jobs/{job}/status")).decode().split()
            f = dict(w.split("=", 1) for w in words[2:] if "=" in w)
            total, done = int(f["tasks"]), int(f["done"]) + int(f["failed"])
            bar = "#" * (30 * done // max(total, 1))
            sys.stderr.write(f"\rjob {job} [{bar:30}] {done}/{total} {words[1]}  ")
            sys.stderr.flush()
            await trio.sleep(0.1)
    async with trio.open_nursery() as nursery:
        if show:
            nursery.start_soon(progress)
        final = (await client.read_file(f"jobs/{job}/wait")).decode()
        nursery.cancel_scope.cancel()
    if show:
        sys.stderr.write("\n")
    print(final.strip())
    return 0 if final.split()[1] == "done" else 1


async def cmd_why(client: Client, args: argparse.Namespace) -> int:
    sys.stdout.write((await client.read_file(f"jobs/{args.job}/why")).decode())
    return 0


async def cmd_cat(client: Client, args: argparse.Namespace) -> int:
    for path in args.paths:
        async for chunk in client.stream(path):
            sys.stdout.buffer.write(chunk)
            sys.stdout.flush()
    return 0


async def cmd_ls(client: Client, args: argparse.Namespace) -> int:
    for entry in await client.ls(args.path):
        print(entry.name + ("/" if entry.mode & 0x80000000 else ""))
    return 0


async def cmd_write(client: Client, args: argparse.Namespace) -> int:
    """Write the words given (or stdin) to a file in one write, like `echo > FILE`."""
    data = (" ".join(args.words) + "\n").encode() if args.words else sys.stdin.buffer.read()
    await client.write_file(args.path, data)
    return 0


for _fn in (cmd_submit, cmd_q, cmd_status, cmd_wait, cmd_why, cmd_cat, cmd_ls, cmd_write):
    _client_command(_fn)


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version
    try:
        return version("styxgrid")
    except PackageNotFoundError:        # run from a checkout that was never installed
        return "(not installed)"


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="styxgrid", description=__doc__)
    top.add_argument("--trace", action="store_true", help="log every 9P message in and out")
    top.add_argument("--version", action="version", version=f"styxgrid {_version()}")
    sub = top.add_subparsers(dest="command", required=True)

    p = sub.add_parser("exportfs", help="serve a local folder over 9P2000")
    p.add_argument("dir", help="the folder to serve")
    p.add_argument("--listen", required=True, help="HOST:PORT or an absolute unix socket path")

    p = sub.add_parser("scheduler", help="run the scheduler (a 9P server) on one address")
    p.add_argument("--state", default=DEFAULT_STATE, help="state folder (SQLite, output)")
    p.add_argument("--listen", help="HOST:PORT or a unix socket path (default: STATE/"
                   f"{SOCKET_NAME})")
    p.add_argument("--heartbeat-timeout", type=float, default=10.0,
                   help="seconds of silence after which a worker is lost")
    p.add_argument("--ca", metavar="DIR", help="the grid CA (from `ca init`): TCP speaks TLS")
    p.add_argument("--insecure", action="store_true",
                   help="allow plain TCP with no certificates (a warning is printed)")

    p = sub.add_parser("ca", help="the grid's certificate authority")
    casub = p.add_subparsers(dest="ca_command", required=True)
    q = casub.add_parser("init", help="make a new CA")
    q.add_argument("--dir", required=True)
    q = casub.add_parser("issue", help="issue a key and certificate")
    q.add_argument("--dir", required=True, help="the CA folder")
    q.add_argument("--role", required=True, choices=("user", "worker", "admin"))
    q.add_argument("--out", help="identity folder to write (default NAME.identity)")
    q.add_argument("--days", type=int, default=365)
    q.add_argument("name")
    q = casub.add_parser("revoke", help="revoke a name; its connections are dropped")
    q.add_argument("--dir", required=True)
    q.add_argument("name")

    p = sub.add_parser("token", help="join tokens")
    tsub = p.add_subparsers(dest="token_command", required=True)
    q = tsub.add_parser("create", help="print a join token")
    q.add_argument("--ca", required=True, metavar="DIR")
    q.add_argument("--role", required=True, choices=("user", "worker"))
    q.add_argument("--ttl", default="1h", help="lifetime: 30m, 1h, 7d (default 1h)")
    q.add_argument("--uses", type=int, default=1)

    p = sub.add_parser("login", help="join a grid as a user with a token")
    p.add_argument("--join", required=True, metavar="TOKEN")
    p.add_argument("--scheduler", required=True, help="HOST:PORT")
    p.add_argument("--name", help="your name in the grid (default: your login name)")

    p = sub.add_parser("worker", help="run a worker that dials out to the scheduler")
    _worker_options(p)

    p = sub.add_parser("up", help="scheduler and local workers on this machine")
    p.add_argument("--state", default=DEFAULT_STATE)
    p.add_argument("--workers", type=int, default=0, help="local worker slots (default: cores)")
    p.add_argument("--heartbeat-timeout", type=float, default=10.0)
    p.add_argument("--mount", metavar="DIR", help="also mount the grid here with FUSE")

    p = sub.add_parser("mount", help="mount a 9P server (a scheduler, exportfs) with FUSE")
    p.add_argument("addr", help="HOST:PORT or a unix socket path")
    p.add_argument("mountpoint")
    p.add_argument("--foreground", action="store_true", help="stay in the foreground")

    p = sub.add_parser("umount", help="unmount a styxgrid mount (fusermount3 -u)")
    p.add_argument("mountpoint")

    p = sub.add_parser("submit", help="submit a job; prints its id")
    _scheduler_option(p)
    p.add_argument("-n", "--tasks", type=int, default=1)
    p.add_argument("--env", action="append", default=[], metavar="K=V")
    p.add_argument("--input", action="append", default=[], metavar="PATH")
    p.add_argument("--output", action="append", default=[], metavar="PATH")
    p.add_argument("--dir")
    p.add_argument("--requirements")
    p.add_argument("--rank")
    p.add_argument("--priority", type=int)
    p.add_argument("--retries", type=int)
    p.add_argument("cmd", nargs=argparse.REMAINDER, help="-- PROGRAM ARGS")

    for name, text in (("q", "the job queue"), ("status", "the nodes")):
        _scheduler_option(sub.add_parser(name, help=text))
    for name, text in (("wait", "wait for a job, with progress"),
                       ("why", "why a job is not running")):
        p = sub.add_parser(name, help=text)
        _scheduler_option(p)
        p.add_argument("job", type=int)
    p = sub.add_parser("cat", help="print files of the grid (streams follow to their end)")
    _scheduler_option(p)
    p.add_argument("paths", nargs="+")
    p = sub.add_parser("ls", help="list a folder of the grid")
    _scheduler_option(p)
    p.add_argument("path", nargs="?", default="")
    p = sub.add_parser("write", help="write words (or stdin) to a file of the grid")
    _scheduler_option(p)
    p.add_argument("path")
    p.add_argument("words", nargs="*")
    return top


def _scheduler_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--scheduler", help="address (default: $STYXGRID_SCHEDULER or the "
                   "socket of `styxgrid up` here or in a parent folder)")


def _worker_options(p: argparse.ArgumentParser) -> None:
    _scheduler_option(p)
    p.add_argument("--name", help="node name (default: host name)")
    p.add_argument("--slots", type=int, default=os.cpu_count() or 1)
    p.add_argument("--workdir", help="where task sandboxes are made")
    p.add_argument("--attr", action="append", default=[], metavar="KEY=VALUE",
                   help="a custom ClassAd attribute (repeatable)")
    p.add_argument("--nice", type=int, default=10, help="niceness of tasks (default 10)")
    p.add_argument("--heartbeat", type=float, default=3.0, help="seconds between heartbeats")
    p.add_argument("--join", metavar="TOKEN", help="enrol with this token (first start)")
    p.add_argument("--identity", metavar="DIR",
                   help="key and certificate (default ~/.config/styxgrid/worker-NAME)")
    p.add_argument("--allow", action="append", default=[], metavar="GLOB",
                   help="run only programs matching (repeatable; default: any)")
    p.add_argument("--run-as", metavar="USER",
                   help="started as root: run tasks as USER (default nobody)")
    p.add_argument("--max-load", type=float, metavar="L",
                   help="take tasks only while the load not from this worker's tasks "
                        "is below L (default: always)")


def raise_fd_limit() -> None:
    """Servers hold one descriptor per connection: allow as many as the system does."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    raise_fd_limit()
    logging.basicConfig(level=logging.DEBUG if args.trace else logging.WARNING,
                        format="%(name)s: %(message)s")
    return COMMANDS[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
