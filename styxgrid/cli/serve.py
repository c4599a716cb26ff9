"""The serving commands: `exportfs`, `scheduler`, `worker` and `up`, which runs a
scheduler with local workers (and a mount) that never outlive it."""

from __future__ import annotations

import argparse
import functools
import os
import socket
from pathlib import Path
from typing import Callable

import trio

from .. import checks, resources
from ..errgroups import unwrapped
from ..ninep import memory, serve_listeners
from ..ninep.exportfs import ExportFS
from ..ninep.transport import Address, open_listeners, parse_address
from ..scheduler.config import SchedulerConfig
from .common import (DEFAULT_STATE, UserError, command, fuse_installed, os_error,
                     run_until_signal, say)
from .enrol import enrol
from .where import find_scheduler

def bound(listeners: list, addr: Address) -> str:
    """The address actually listened on (TCP port 0 becomes the chosen port)."""
    if addr.path is not None:
        return addr.path
    host, port = listeners[0].socket.getsockname()[:2]
    return f"{host}:{port}"


@command
def cmd_exportfs(args: argparse.Namespace) -> int:
    try:
        fs = ExportFS(args.dir)
        addr = parse_address(args.listen)
    except (OSError, ValueError) as exc:
        say(f"exportfs: {exc}")
        return 2
    if addr.path is None and not args.insecure:
        say("exportfs: TCP cannot tell who connects: every attach name would be believed "
            "(give --insecure to serve it anyway, or use a unix socket)")
        return 2
    if not 0 <= args.socket_mode <= 0o777:
        say(f"exportfs: --socket-mode {args.socket_mode:o}: want an octal mode up to 777")
        return 2

    async def run() -> None:
        listeners = await open_listeners(addr, mode=args.socket_mode)
        async with trio.open_nursery() as nursery:
            await nursery.start(functools.partial(serve_listeners, fs, listeners,
                                                  trace=args.trace))
            nursery.start_soon(memory.give_back)
            say(f"exportfs: serving {fs.root} on {bound(listeners, addr)}")
    try:
        with unwrapped():
            run_until_signal(run)
    except OSError as exc:
        say(f"exportfs: {exc}")
        return 1
    return 0


def scheduler_config(args: argparse.Namespace) -> SchedulerConfig:
    """The `scheduler` and `up` options as a SchedulerConfig (ValueError: a bad address)."""
    listen = getattr(args, "listen", None)
    if not 60 <= args.usage_half_life <= 86400 * 366:
        raise ValueError(f"--usage-half-life {args.usage_half_life:g}: want 60..{86400 * 366} "
                         "seconds")
    return SchedulerConfig(Path(args.state).resolve(),
                           listen=parse_address(listen) if listen else None,
                           ca_dir=getattr(args, "ca", None),
                           insecure=getattr(args, "insecure", False),
                           heartbeat_timeout=args.heartbeat_timeout, trace=args.trace,
                           usage_half_life=args.usage_half_life)


async def serve_scheduler(config: SchedulerConfig, ready: Callable[[str], None]) -> None:
    from ..scheduler.service import serve_scheduler
    async with trio.open_nursery() as nursery:
        _grid, listeners = await nursery.start(serve_scheduler, config)
        ready(bound(listeners, config.address))


@command
def cmd_scheduler(args: argparse.Namespace) -> int:
    from ..scheduler.service import SetupError
    from ..security.ca import CAError
    try:
        config = scheduler_config(args)
    except ValueError as exc:
        say(f"scheduler: {exc}")
        return 2
    if config.insecure and config.address.path is None:
        say("scheduler: WARNING: --insecure: plain 9P on TCP, every attach name believed, "
            "anyone who can connect is an admin")
    try:
        with unwrapped():
            run_until_signal(lambda: serve_scheduler(
                config, lambda where: say(f"scheduler: serving {args.state} on {where}")))
    except (SetupError, CAError) as exc:
        say(f"scheduler: {exc}")
        return 2
    except OSError as exc:
        say(f"scheduler: {exc}")
        return 1
    return 0


def gpu_list(text: str | None) -> tuple[str, ...] | None:
    """`--gpus 2` (devices 0 and 1) or `--gpus 0,3` (those devices)."""
    if text is None:
        return None
    words = [w for w in text.split(",") if w]
    if len(words) == 1 and "," not in text:
        count = checks.integer("--gpus", text, 0, resources.MAX_GPUS)
        return tuple(str(n) for n in range(count))
    for word in words:
        checks.integer("--gpus device", word, 0, 9999)
    if len(set(words)) != len(words) or len(words) > resources.MAX_GPUS:
        raise ValueError(f"--gpus {text}: each device once, at most {resources.MAX_GPUS}")
    return tuple(words)


def worker_config(args: argparse.Namespace):
    from ..security.identity import Identity, worker_identity_dir
    from ..worker.ad import parse_attr
    from ..worker.config import WorkerConfig
    attrs = dict(parse_attr(a) for a in args.attr)
    name = args.name or socket.gethostname()
    identity = Identity(Path(args.identity) if args.identity else worker_identity_dir(name))
    scheduler = find_scheduler(args.scheduler, identity)
    parse_address(scheduler)
    for option in ("idle_after", "suspend_for", "vacate_grace"):
        value = getattr(args, option)
        if not 0 <= value <= 86400 * 366:
            raise ValueError(f"--{option.replace('_', '-')} {value:g}: want 0..{86400 * 366} "
                             "seconds")
    for glob in args.allow:
        if any(c.isspace() for c in glob):
            raise ValueError(f"--allow {glob!r}: a glob has no blanks (match one with ?)")
        if not glob.startswith(("/", "*")):
            raise ValueError(f"--allow {glob!r}: a glob matches a program's absolute path "
                             f"(e.g. /usr/bin/{glob} or */{glob})")
    memory = resources.size("--memory", args.memory) if args.memory else 0
    disk = resources.size("--disk", args.disk) if args.disk else 0
    return WorkerConfig(scheduler=scheduler, name=name, slots=args.slots,
                        memory=memory, disk=disk, gpus=gpu_list(args.gpus),
                        limits=args.limits,
                        workdir=args.workdir or "", attrs=attrs, nice=args.nice,
                        heartbeat=args.heartbeat, identity=identity,
                        allow=tuple(args.allow), max_load=args.max_load,
                        busy_file=os.path.abspath(args.busy_file) if args.busy_file else "",
                        idle_after=args.idle_after, suspend_for=args.suspend_for,
                        vacate_grace=args.vacate_grace,
                        task_users=tuple(n for n in args.task_users.split(",") if n))


@command
def cmd_worker(args: argparse.Namespace) -> int:
    from ..worker.agent import JoinRefused, Replaced, Worker
    try:
        config = worker_config(args)
    except UserError as exc:
        say(f"worker: {exc}")
        return exc.status
    except ValueError as exc:
        say(f"worker: {exc}")
        return 2
    assert config.identity is not None
    if args.join and not config.identity.exists():
        failed = enrol("worker", config.scheduler, args.join, config.name, config.identity.dir)
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
            run_until_signal(main)
    except (Replaced, JoinRefused) as exc:
        say(f"worker: {config.name}: {exc}")
        return 1
    return 0


async def watch_mount(fuse, mount: str) -> None:
    """A mount that ends on its own (killed) is cleared; the grid goes on without it."""
    from ..up import clear_dead_mount
    code = await fuse.wait()
    try:
        cleared = clear_dead_mount(mount)
    except OSError as exc:
        cleared = str(exc)
    say(f"up: the mount at {mount} ended (status {code})" + (f"; {cleared}" if cleared else "")
        + "; the grid goes on without it")


@command
def cmd_up(args: argparse.Namespace) -> int:
    """A scheduler on a unix socket in the state folder and local workers, in the
    foreground, until Ctrl-C or SIGTERM; its children end with it (see up.py)."""
    from ..up import Child, clear_dead_mount
    from ..exchange import MAX_SLOTS
    if args.mount and not fuse_installed("up"):
        return 2
    if not 0 <= args.workers <= MAX_SLOTS:
        say(f"up: --workers {args.workers}: want 1..{MAX_SLOTS} (0: one per core)")
        return 2
    config = scheduler_config(args)
    state, addr = config.state_dir, config.address
    slots = args.workers or os.cpu_count() or 1
    mount = os.path.abspath(args.mount) if args.mount else None
    logs = ["-v"] * args.verbose + ["--trace"] * args.trace      # the children log alike

    async def main() -> None:
        children: list[Child] = []
        try:
            async with trio.open_nursery() as nursery:
                ready = trio.Event()
                nursery.start_soon(serve_scheduler, config, lambda where: ready.set())
                await ready.wait()
                worker = Child([*logs, "worker", "--scheduler", str(addr), "--slots", str(slots),
                                "--name", f"{socket.gethostname()}-local"])
                children.append(worker)
                await worker.wait_line("joined")
                nursery.start_soon(worker.copy_stderr)
                if mount:
                    cleared = clear_dead_mount(mount)
                    if cleared:
                        say(f"up: {cleared}")
                    os.makedirs(mount, exist_ok=True)
                    fuse = Child([*logs, "mount", "--foreground", str(addr), mount])
                    children.insert(0, fuse)
                    await fuse.wait_line("mounted on")
                    nursery.start_soon(fuse.copy_stderr)
                    nursery.start_soon(watch_mount, fuse, mount)
                say(f"up: scheduler on {addr}, {slots} local worker slots, state in {state}")
                if args.mount:
                    say(f"up: try  echo 'submit echo hi' > {args.mount}/new; "
                        f"cat {args.mount}/jobs/1/wait")
                elif state.name == DEFAULT_STATE:
                    say(f"up: try  styxgrid submit -- echo hi   (in {state.parent} or below)")
                else:
                    say(f"up: try  styxgrid --scheduler {addr} submit -- echo hi")
                code = await worker.wait()
                raise OSError(f"the local worker ended (status {code})")
        finally:
            for child in children:
                child.stop()
    try:
        with unwrapped():
            run_until_signal(main)
    except OSError as exc:
        say(f"up: {os_error(exc)}")
        return 1
    return 0
