"""The user's commands over 9P (no mount needed): submit, q, status, wait, why,
cat, ls, write.  Each connects to the scheduler found by `where`, and every
failure a user can cause ends in one line on stderr and the documented status."""

from __future__ import annotations

import argparse
import hashlib
import os
import sys

import trio

from ..api import GridClient
from ..ninep import NinePError
from ..ninep.client import Client
from ..ninep.messages import DMDIR
from .common import UserError
from .session import client_command, explain, read

def description(args: argparse.Namespace) -> str:
    """The job the command line describes, checked here as the scheduler checks it
    and sent in its normal form (quoted where it must be: it arrives as given)."""
    from ..describe import DescriptionError, JobSpec, check_new, parent, request_size
    if args.cmd[:1] == ["--"]:
        args.cmd = args.cmd[1:]
    if not args.cmd:
        raise UserError("give the command after --, e.g. styxgrid submit -- ./sim --seed 7", 2)
    env = []
    for e in args.env:
        name, eq, value = e.partition("=")
        if not eq:
            raise UserError(f"--env {e!r}: want NAME=VALUE", 2)
        env.append((name, value))
    try:
        requests = {"request_cpus": args.cpus, "request_gpus": args.gpus,
                    "request_memory": args.memory and request_size("request_memory",
                                                                   args.memory),
                    "request_disk": args.disk and request_size("request_disk", args.disk)}
        spec = JobSpec(cmd=args.cmd[0], args=tuple(args.cmd[1:]), tasks=args.tasks,
                       env=tuple(env), dir=args.dir or "", inputs=tuple(args.input),
                       outputs=tuple(args.output), requirements=args.requirements or "",
                       rank=args.rank or "", priority=args.priority or 0,
                       retries=args.retries or 0, share=args.share,
                       after=tuple(parent(word) for word in args.after),
                       **{k: v for k, v in requests.items() if v is not None})
        JobSpec.from_lines(spec.lines())      # every line's check, as the scheduler's
        check_new(spec)
    except DescriptionError as exc:
        raise UserError(str(exc), 2) from None
    return spec.lines() + "submit\n"


def program_to_send(args: argparse.Namespace) -> str | None:
    """The local program that goes along with the job, if any: by default a path
    given relative to this folder (`./sim`, `bin/sim`); an absolute path or a bare
    name runs as it is on the worker.  --send and --no-send decide otherwise."""
    program = args.cmd[0]
    if args.send is False:
        return None
    if args.send is None and (program.startswith("/") or "/" not in program):
        return None
    if not os.path.isfile(program):
        raise UserError(f"{program}: no such file here to send along (--no-send runs it "
                        "as it is on the workers)", 2)
    return program


async def ship_program(client: Client, args: argparse.Namespace) -> None:
    """Send the program as Condor sends the executable: stored once by content in
    /data/USER/programs/HASH/NAME and named as an input; the task runs ./NAME, so
    its argv[0] is the program's own name."""
    from .data import makedirs
    program = program_to_send(args)
    if program is None:
        return
    with open(program, "rb") as f:
        data = f.read()
    name = os.path.basename(program)
    folder = f"{args.uname}/programs/{hashlib.sha256(data).hexdigest()[:16]}"
    await makedirs(client, f"data/{folder}")
    try:
        await client.stat(f"data/{folder}/{name}")
    except NinePError:
        await client.write_file(f"data/{folder}/{name}", data)
    args.cmd[0] = f"./{name}"
    args.input.append(f"{folder}/{name}")


async def cmd_submit(client: Client, args: argparse.Namespace) -> int:
    description(args)                           # check the arguments before sending anything
    await ship_program(client, args)
    print(await GridClient(client).submit(description(args)))
    return 0


async def cmd_q(client: Client, args: argparse.Namespace) -> int:
    print(f"{'JOB':>6} {'STATE':8} {'TASKS':>7} {'QUEUED':>7} {'RUN':>5} {'DONE':>7} "
          f"{'FAIL':>5} OWNER")
    for s in await GridClient(client).jobs():
        print(f"{s.job:>6} {s.state:8} {s.tasks:>7} {s.queued:>7} {s.running:>5} {s.done:>7} "
              f"{s.failed:>5} {s.owner}")
    return 0


async def cmd_status(client: Client, args: argparse.Namespace) -> int:
    sys.stdout.write((await client.read_file("nodes/index")).decode())
    sys.stdout.write((await client.read_file("stats")).decode())
    return 0


async def cmd_users(client: Client, args: argparse.Namespace) -> int:
    """The users' shares, best effective priority first; or set a user's factor."""
    if args.factor:
        if len(args.factor) != 2:
            raise ValueError("users: want USER FACTOR to set a factor, or nothing")
        path = f"users/{args.factor[0]}/ctl"
        try:
            await client.write_file(path, f"factor {args.factor[1]}\n".encode())
        except NinePError as exc:
            raise await explain(client, path, exc) from None
        return 0
    lines = (await client.read_file("users/index")).decode().splitlines()
    fields = [dict(w.split("=", 1) for w in line.split()[1:]) | {"name": line.split()[0]}
              for line in lines]
    print(f"{'USER':16} {'PRIORITY':>10} {'USAGE':>10} {'FACTOR':>7} {'RUN':>5} {'QUEUED':>7}")
    for f in sorted(fields, key=lambda f: float(f["priority"])):
        print(f"{f['name']:16} {f['priority']:>10} {f['usage']:>10} {f['factor']:>7} "
              f"{f['running']:>5} {f['queued']:>7}")
    return 0


async def cmd_wait(client: Client, args: argparse.Namespace) -> int:
    """Show progress while the job runs; exit 0 if every task is done, else 1."""
    job = args.job
    show = sys.stderr.isatty()
    await read(client, f"jobs/{job}/status")            # "no job N" before anything else

    async def progress() -> None:
        """Redraw the bar when the job changes, at most ten times a second (the
        events that come meanwhile are read in one go)."""
        async for _ in client.stream(f"jobs/{job}/events"):
            s = await GridClient(client).status(job)
            total, done = s.tasks, s.done + s.failed
            bar = "#" * (30 * done // max(total, 1))
            sys.stderr.write(f"\rjob {job} [{bar:30}] {done}/{total} {s.state}  ")
            sys.stderr.flush()
            await trio.sleep(0.1)
    async with trio.open_nursery() as nursery:
        if show:
            nursery.start_soon(progress)
        final = (await read(client, f"jobs/{job}/wait")).decode()
        nursery.cancel_scope.cancel()
    if show:
        sys.stderr.write("\n")
    print(final.strip())
    return 0 if final.split()[1] == "done" else 1


async def cmd_why(client: Client, args: argparse.Namespace) -> int:
    sys.stdout.write((await read(client, f"jobs/{args.job}/why")).decode())
    return 0


async def cmd_cat(client: Client, args: argparse.Namespace) -> int:
    for path in args.paths:
        try:
            async for chunk in client.stream(path):
                sys.stdout.buffer.write(chunk)
                sys.stdout.flush()
        except NinePError as exc:
            raise await explain(client, path, exc) from None
    return 0


async def cmd_ls(client: Client, args: argparse.Namespace) -> int:
    """A folder's entries, a folder's marked with /; a file, like ls(1), as itself."""
    try:
        if not (await client.stat(args.path)).mode & DMDIR:
            print(args.path.rstrip("/").rpartition("/")[2])
            return 0
        entries = await client.ls(args.path)
    except NinePError as exc:
        raise await explain(client, args.path, exc) from None
    for entry in entries:
        print(entry.name + ("/" if entry.mode & DMDIR else ""))
    return 0


async def cmd_write(client: Client, args: argparse.Namespace) -> int:
    """Write the words given (or stdin) to a file in one write, like `echo > FILE`."""
    data = (" ".join(args.words) + "\n").encode() if args.words else sys.stdin.buffer.read()
    try:
        await client.write_file(args.path, data)
    except NinePError as exc:
        raise await explain(client, args.path, exc) from None
    return 0


for _fn in (cmd_submit, cmd_q, cmd_status, cmd_users, cmd_wait, cmd_why, cmd_cat, cmd_ls,
            cmd_write):
    client_command(_fn)
