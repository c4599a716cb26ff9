"""The command line: every command and option, each with its help text."""

from __future__ import annotations

import argparse
import os
import sys
from typing import NoReturn

from ..scheduler.config import SOCKET_NAME, SchedulerConfig
from ..worker.config import WorkerConfig
from .common import DEFAULT_STATE

WHERE = ("the scheduler: HOST:PORT or a unix socket path (default: $STYXGRID_SCHEDULER, "
         "else the one `styxgrid login` stored, else the socket of a `styxgrid up` in this "
         "folder or a parent)")


class Parser(argparse.ArgumentParser):
    """Mistakes on the command line are one line too, naming where help is."""

    def error(self, message: str) -> NoReturn:
        verb = self.prog.partition(" ")[2]
        print(f"styxgrid: {verb + ': ' if verb else ''}{message} (see {self.prog} --help)",
              file=sys.stderr)
        sys.exit(2)


def version() -> str:
    from importlib.metadata import PackageNotFoundError, version
    try:
        return version("styxgrid")
    except PackageNotFoundError:        # run from a checkout that was never installed
        return "(not installed)"


def parser() -> argparse.ArgumentParser:
    top = Parser(prog="styxgrid", description="A compute grid where everything is a file: "
                 "a 9P2000 scheduler, workers that dial out, and users with echo and cat. "
                 "man styxgrid for more.")
    top.add_argument("-v", "--verbose", action="count", default=0,
                     help="log what changes: jobs and nodes (-v), every task too (-vv)")
    top.add_argument("--trace", action="store_true", help="log every 9P message in and out")
    top.add_argument("--version", action="version", version=f"styxgrid {version()}")
    top.add_argument("--scheduler", metavar="ADDRESS", help=WHERE)
    sub = top.add_subparsers(dest="command", required=True, metavar="COMMAND",
                             parser_class=Parser)
    servers(sub)
    certificates(sub)
    user_commands(sub)
    data_commands(sub)
    return top


def scheduler_option(p: argparse.ArgumentParser) -> None:
    """--scheduler after the verb as well; given in both places, this one wins."""
    p.add_argument("--scheduler", metavar="ADDRESS", default=argparse.SUPPRESS, help=WHERE)


def heartbeat_timeout(p: argparse.ArgumentParser) -> None:
    """The scheduler's own tunables, for `scheduler` and `up`."""
    default = SchedulerConfig.heartbeat_timeout
    p.add_argument("--heartbeat-timeout", type=float, default=default, metavar="SECONDS",
                   help=f"silence after which a worker is lost (default {default:g})")
    half = SchedulerConfig.usage_half_life
    p.add_argument("--usage-half-life", type=float, default=half, metavar="SECONDS",
                   help=f"time in which a user's usage halves, for fair share (default "
                   f"{half:g})")


def servers(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("up", help="a scheduler, local workers and (--mount) a FUSE mount, "
                       "in the foreground", description="A grid on this machine: scheduler "
                       "on STATE/scheduler.sock, one local worker, optionally a mount.")
    p.add_argument("--state", default=DEFAULT_STATE, metavar="DIR",
                   help=f"state folder: database, output, data (default {DEFAULT_STATE})")
    p.add_argument("--workers", type=int, default=0, metavar="N",
                   help="local worker slots (default: one per core)")
    heartbeat_timeout(p)
    p.add_argument("--mount", metavar="DIR", help="also mount the grid here with FUSE")

    p = sub.add_parser("scheduler", help="run the scheduler (a 9P server) on one address")
    p.add_argument("--state", default=DEFAULT_STATE, metavar="DIR",
                   help=f"state folder: database, output, data (default {DEFAULT_STATE})")
    p.add_argument("--listen", metavar="ADDRESS", help="HOST:PORT or a unix socket path "
                   f"(default: STATE/{SOCKET_NAME})")
    heartbeat_timeout(p)
    p.add_argument("--ca", metavar="DIR", help="the grid CA (from `ca init`): TCP speaks TLS")
    p.add_argument("--insecure", action="store_true",
                   help="allow plain TCP with no certificates (a warning is printed)")

    p = sub.add_parser("worker", help="run a worker that dials out to the scheduler")
    scheduler_option(p)
    p.add_argument("--name", help="node name, one per worker (default: host name)")
    p.add_argument("--slots", "--cpus", type=int, default=os.cpu_count() or 1, metavar="K",
                   help="cpus offered to tasks: K tasks of one cpu run at once "
                        "(default: one per core)")
    p.add_argument("--memory", default="", metavar="SIZE",
                   help="memory offered to tasks, e.g. 8G (default: the machine's)")
    p.add_argument("--disk", default="", metavar="SIZE",
                   help="disk offered to tasks, e.g. 100G (default: free in the workdir)")
    p.add_argument("--gpus", default=None, metavar="N|LIST",
                   help="GPUs offered: a count (devices 0..N-1) or device numbers 0,2 "
                        "(default: /dev/nvidiaN found)")
    p.add_argument("--limits", choices=("auto", "cgroup", "rlimit"), default="auto",
                   help="how tasks are held to their requests (default auto: cgroup v2, "
                        "else v1, else rlimits)")
    p.add_argument("--workdir", metavar="DIR", help="where task sandboxes are made "
                   "(default /tmp/styxgrid-worker-NAME)")
    p.add_argument("--attr", action="append", default=[], metavar="KEY=VALUE",
                   help="a custom ClassAd attribute (repeatable)")
    p.add_argument("--nice", type=int, default=WorkerConfig.nice,
                   help=f"niceness of tasks (default {WorkerConfig.nice})")
    p.add_argument("--heartbeat", type=float, default=WorkerConfig.heartbeat, metavar="SECONDS",
                   help=f"seconds between heartbeats (default {WorkerConfig.heartbeat:g})")
    p.add_argument("--join", metavar="TOKEN", help="enrol with this token (first start)")
    p.add_argument("--identity", metavar="DIR",
                   help="key and certificate (default ~/.config/styxgrid/worker-NAME)")
    p.add_argument("--allow", action="append", default=[], metavar="GLOB",
                   help="run only programs matching (repeatable; default: any)")
    p.add_argument("--task-users", default="", metavar="USER,...",
                   help="started as root: the accounts tasks run as, one grid user's at "
                        "a time each (default: one per slot, made on first start)")
    p.add_argument("--max-load", type=float, metavar="L",
                   help="the owner is back while the load not from this worker's tasks "
                        "is L or more (default: load is not looked at)")
    p.add_argument("--busy-file", default="", metavar="PATH",
                   help="the owner is back while PATH exists")
    p.add_argument("--idle-after", type=float, default=WorkerConfig.idle_after,
                   metavar="SECONDS", help="the owner is back while an input device was "
                   "used within SECONDS (default: input is not looked at)")
    p.add_argument("--suspend-for", type=float, default=WorkerConfig.suspend_for,
                   metavar="SECONDS", help="tasks stay suspended this long while the owner "
                   f"is back, then are vacated (default {WorkerConfig.suspend_for:g})")
    p.add_argument("--vacate-grace", type=float, default=WorkerConfig.vacate_grace,
                   metavar="SECONDS", help="from SIGTERM to SIGKILL when vacating "
                   f"(default {WorkerConfig.vacate_grace:g})")

    p = sub.add_parser("exportfs", help="serve a local folder over 9P2000")
    p.add_argument("dir", help="the folder to serve")
    p.add_argument("--listen", required=True, metavar="ADDRESS",
                   help="HOST:PORT or a unix socket path")
    p.add_argument("--socket-mode", type=lambda text: int(text, 8), default=0o600,
                   metavar="MODE", help="who may connect to a unix socket, in octal "
                   "(default 600: only this user; run as root, 666 serves each user "
                   "with that user's rights)")
    p.add_argument("--insecure", action="store_true",
                   help="allow TCP, where every attach name is believed")

    p = sub.add_parser("mount", help="mount a 9P server (a scheduler, exportfs) with FUSE")
    p.add_argument("addr", metavar="ADDRESS", help="HOST:PORT or a unix socket path")
    p.add_argument("mountpoint", help="an existing folder")
    p.add_argument("--foreground", action="store_true",
                   help="stay in the foreground until SIGINT or SIGTERM")

    p = sub.add_parser("umount", help="unmount a styxgrid mount (fusermount3 -u)")
    p.add_argument("mountpoint", help="where it is mounted")


def certificates(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("ca", help="the grid's certificate authority")
    casub = p.add_subparsers(dest="ca_command", required=True, metavar="VERB",
                             parser_class=Parser)
    q = casub.add_parser("init", help="make a new CA")
    q.add_argument("--dir", required=True, help="the CA folder to make")
    q = casub.add_parser("issue", help="issue a key and certificate")
    q.add_argument("--dir", required=True, help="the CA folder")
    q.add_argument("--role", required=True, choices=("user", "worker", "admin"),
                   help="what the holder may do")
    q.add_argument("--out", metavar="DIR", help="identity folder to write "
                   "(default NAME.identity)")
    q.add_argument("--days", type=int, default=365, help="lifetime (default 365)")
    q.add_argument("name", help="the holder's name in the grid")
    q = casub.add_parser("revoke", help="revoke a name; its connections are dropped")
    q.add_argument("--dir", required=True, help="the CA folder")
    q.add_argument("name", help="the name to revoke")

    p = sub.add_parser("token", help="join tokens")
    tsub = p.add_subparsers(dest="token_command", required=True, metavar="VERB",
                            parser_class=Parser)
    q = tsub.add_parser("create", help="print a join token")
    q.add_argument("--ca", required=True, metavar="DIR", help="the CA folder")
    q.add_argument("--role", required=True, choices=("user", "worker"),
                   help="what its holder becomes")
    q.add_argument("--ttl", default="1h", help="lifetime: 30m, 1h, 7d (default 1h)")
    q.add_argument("--uses", type=int, default=1, help="how many may join with it (default 1)")

    p = sub.add_parser("login", help="join a grid as a user with a token")
    p.add_argument("--join", required=True, metavar="TOKEN", help="from `token create`")
    p.add_argument("--scheduler", required=True, metavar="HOST:PORT",
                   help="the scheduler the token is for (remembered for later commands)")
    p.add_argument("--name", help="your name in the grid (default: your login name)")


def user_commands(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("submit", help="submit a job; prints its id")
    scheduler_option(p)
    p.add_argument("-n", "--tasks", type=int, default=1, metavar="N",
                   help="tasks in the job; each sees its index in $STYXGRID_TASK")
    p.add_argument("--env", action="append", default=[], metavar="K=V",
                   help="an environment variable of the tasks (repeatable)")
    p.add_argument("--input", action="append", default=[], metavar="PATH",
                   help="a file in /data copied beside each task (repeatable)")
    p.add_argument("--output", action="append", default=[], metavar="PATH",
                   help="a file each task leaves, stored in jobs/N/outputs/ (repeatable)")
    p.add_argument("--dir", help="run in this folder on the worker (default: a sandbox)")
    p.add_argument("--requirements", metavar="EXPR", help="ClassAd: which nodes may run it")
    p.add_argument("--rank", metavar="EXPR", help="ClassAd: which nodes it prefers")
    p.add_argument("--priority", type=int, metavar="P", help="-1000..1000 (default 0)")
    p.add_argument("--retries", type=int, metavar="R", help="re-runs of a failed task")
    p.add_argument("--share", action="store_true",
                   help="let every user read the job's files (default: you and admins)")
    p.add_argument("--cpus", type=int, metavar="N", help="cpus each task needs (default 1)")
    p.add_argument("--memory", metavar="SIZE",
                   help="memory each task needs and may use, e.g. 2GB (default 512M)")
    p.add_argument("--disk", metavar="SIZE",
                   help="disk each task needs in its folder, e.g. 10GB (default 1G)")
    p.add_argument("--gpus", type=int, metavar="N", help="GPUs each task needs (default 0)")
    p.add_argument("--after", action="append", default=[], metavar="JOB[:any]",
                   help="run once this job is done (:any: however it ended; repeatable)")
    send = p.add_mutually_exclusive_group()
    send.add_argument("--send", action="store_true", default=None,
                      help="send the program along even when its path is absolute")
    send.add_argument("--no-send", dest="send", action="store_false",
                      help="run the program as it is on the workers, even ./prog")
    p.add_argument("cmd", nargs=argparse.REMAINDER, help="-- PROGRAM ARGS")

    for name, text in (("q", "the job queue"), ("status", "the nodes and counters")):
        scheduler_option(sub.add_parser(name, help=text))
    p = sub.add_parser("users", help="users' fair shares; an admin sets a user's factor")
    scheduler_option(p)
    p.add_argument("factor", nargs="*", metavar="USER FACTOR",
                   help="give USER the priority factor FACTOR (admins; 2: half the share)")
    for name, text in (("wait", "wait for a job (progress on a terminal); "
                                "exit 0 when every task is done"),
                       ("why", "why a job is not running")):
        p = sub.add_parser(name, help=text)
        scheduler_option(p)
        p.add_argument("job", type=int, help="the job's number")
    p = sub.add_parser("cat", help="print files of the grid (streams follow to their end)")
    scheduler_option(p)
    p.add_argument("paths", nargs="+", metavar="PATH", help="e.g. jobs/3/stdout")
    p = sub.add_parser("ls", help="list a folder of the grid")
    scheduler_option(p)
    p.add_argument("path", nargs="?", default="", help="e.g. jobs (default: the root)")
    p = sub.add_parser("write", help="write words (or stdin) to a file of the grid")
    scheduler_option(p)
    p.add_argument("path", help="e.g. jobs/3/ctl")
    p.add_argument("words", nargs="*", help="what to write (default: standard input)")


def data_commands(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("mkdir", help="make folders in the grid (e.g. data/alice/in)")
    scheduler_option(p)
    p.add_argument("-p", "--parents", action="store_true",
                   help="make missing parents too; no error if it exists")
    p.add_argument("paths", nargs="+", metavar="PATH", help="folders to make")
    p = sub.add_parser("put", help="upload files and folders into the grid")
    scheduler_option(p)
    p.add_argument("local", nargs="+", metavar="LOCAL", help="files or folders here")
    p.add_argument("dest", metavar="DEST", help="a folder of the grid (or, for one file, "
                   "its new name)")
    p = sub.add_parser("get", help="download files and folders from the grid")
    scheduler_option(p)
    p.add_argument("src", nargs="+", metavar="SRC", help="files or folders of the grid")
    p.add_argument("localdir", metavar="LOCALDIR", help="a folder here (made if missing)")
    p = sub.add_parser("rm", help="remove files (and with -r folders) of the grid")
    scheduler_option(p)
    p.add_argument("-r", "--recursive", action="store_true", help="remove folders whole")
    p.add_argument("paths", nargs="+", metavar="PATH", help="files or folders to remove")
