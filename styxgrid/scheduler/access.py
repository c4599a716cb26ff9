"""Who is attached and what they may do: identities from the transport, roles, and
the permission policies the tree's nodes consult (the framework asks a node's
`permits(session, want)` before every walk, open, create and remove).

Roles: `user` (submits, reads the queue, controls its own jobs, writes under
/data/USER), `admin` (anything), `worker` (only /work, its own node's files, the
files of tasks leased to it, and reading /data).  On TLS the certificate says who
and which role; on the local unix socket the peer's uid does (root and the
scheduler's own user are admins); with --insecure the attach name is believed.
"""

from __future__ import annotations

import dataclasses
import os
import pwd
from typing import Callable

from .. import checks
from ..ninep.errors import EPERM, NinePError
from ..ninep.exportfs import ExportFS, HostNode
from ..ninep.messages import Stat
from ..ninep.tree import Session

USER, WORKER, ADMIN = "user", "worker", "admin"
PEOPLE = (USER, ADMIN)
READ, WRITE, SEARCH = 4, 2, 1

Policy = Callable[[Session, int], bool]


def role(session: Session) -> str:
    return session.data["role"]


def user(session: Session) -> str:
    return session.data["user"]


def identify(session: Session) -> None:
    """Set session.data user and role from what the transport proved; a claim the
    transport does not back is refused, and so is a name the grid cannot hold
    (it names the user's jobs, /data folder and, on workers, task accounts)."""
    try:
        checks.user_name(session.uname)
    except ValueError as exc:
        raise NinePError(f"attach: {exc}") from None
    peer = session.peer
    transport = peer.get("transport")
    if transport == "tls":
        name, cert_role = peer.get("name"), peer.get("role")
        if not name:
            raise NinePError(f"{EPERM}: no client certificate: enrol with a join token first")
        if session.uname != name:
            raise NinePError(f"{EPERM}: attach name {session.uname!r} is not the "
                             f"certificate's name {name!r}")
        if session.aname == "worker" and cert_role != WORKER:
            raise NinePError(f"{EPERM}: a {cert_role} certificate cannot attach as a worker")
        session.data.update(user=name, role=cert_role)
        return
    if transport == "unix":
        uid = peer["uid"]
        try:
            name = pwd.getpwuid(uid).pw_name
        except KeyError:
            name = str(uid)
        trusted = uid in (0, os.getuid())
        if session.uname != name and not trusted:
            raise NinePError(f"{EPERM}: attach name {session.uname!r} is not your user "
                             f"{name!r}")
        if session.aname == "worker" and not trusted:
            raise NinePError(f"{EPERM}: only {pwd.getpwuid(os.getuid()).pw_name} or root "
                             "may attach local workers")
        # root and the scheduler's own user are admins as themselves, and may speak
        # for any other user (a root mount serving each local user): that attach
        # gets exactly that user's rights
        admin = trusted and session.uname in ("root", pwd.getpwuid(os.getuid()).pw_name)
        chosen = WORKER if session.aname == "worker" else ADMIN if admin else USER
        session.data.update(user=session.uname if trusted else name, role=chosen)
        return
    # --insecure TCP (or a test's in-memory stream): the attach name is believed
    session.data.update(user=session.uname, role=WORKER if session.aname == "worker" else ADMIN)


# ------------------------------------------------------------------ policies

def people_read(session: Session, want: int) -> bool:
    """Users and admins read and search; nobody writes."""
    return role(session) in PEOPLE and not want & WRITE


def people_all(session: Session, want: int) -> bool:
    return role(session) in PEOPLE


def admin_only(session: Session, want: int) -> bool:
    return role(session) == ADMIN


def admin_writes(session: Session, want: int) -> bool:
    """Users and admins read; admins write."""
    return role(session) == ADMIN or (role(session) == USER and not want & WRITE)


def on_the_way(session: Session, want: int) -> bool:
    """A folder: people read it; a worker may pass through (search) to its tasks."""
    if role(session) in PEOPLE:
        return not want & WRITE
    return want == SEARCH


def workers_only(session: Session, want: int) -> bool:
    return role(session) == WORKER


def owner_writes(owner: str) -> Policy:
    def policy(session: Session, want: int) -> bool:
        if role(session) == ADMIN:
            return True
        return role(session) == USER and (not want & WRITE or user(session) == owner)
    return policy


def worker_name(session: Session) -> str | None:
    """The name a worker joined under on this connection (None before `join`)."""
    link = session.data.get("link")
    return link.name if link is not None else None


def node_files(name: str) -> Policy:
    """A node's own files: people read, and so does that node's worker."""
    def policy(session: Session, want: int) -> bool:
        if want & WRITE:
            return False
        return role(session) in PEOPLE or (role(session) == WORKER
                                           and worker_name(session) == name)
    return policy


def owner_reads(owner: str, shared: bool) -> Policy:
    """A job's own files (description, output, events, inputs): its owner and the
    admins read them, and every user when the job is shared; nobody writes."""
    def policy(session: Session, want: int) -> bool:
        if want & WRITE:
            return False
        return role(session) == ADMIN or (role(session) == USER and
                                          (shared or user(session) == owner))
    return policy


def task_output(owner: str, shared: bool) -> Policy:
    """A task's output: read as the job's files are; the worker the task is
    leased to writes it (the lease is checked at open)."""
    readers = owner_reads(owner, shared)

    def policy(session: Session, want: int) -> bool:
        if role(session) == WORKER:
            return want == WRITE
        return readers(session, want)
    return policy


def task_checkpoint(owner: str, shared: bool) -> Policy:
    """A task's checkpoint: read as the job's files are; the worker the task is
    leased to reads it (to restore) and writes it (the lease is checked at open)."""
    readers = owner_reads(owner, shared)

    def policy(session: Session, want: int) -> bool:
        return role(session) == WORKER or readers(session, want)
    return policy


def denied(what: str) -> NinePError:
    return NinePError(f"{EPERM}: {what}")


# ------------------------------------------------------------------ disk-backed folders

class DataNode(HostNode):
    """/data: /data/USER and all below it belong to USER, with the files' own mode
    bits (owner, and everyone else as "other"): private unless the owner shares
    (a user's folder is made 0700).  Admins reach everything; workers read (the
    inputs of their tasks); /data itself is listed by all and written by none."""

    def owner(self) -> str | None:
        """The user whose folder this is in (None: /data itself, or a file an
        admin left at its top)."""
        rel = os.path.relpath(self.path, self.export.root)
        if rel == "." or ("/" not in rel and not self.is_dir):
            return None
        return rel.split("/", 1)[0]

    def permits(self, session: Session, want: int) -> bool:
        if role(session) == ADMIN:
            return True
        owner = self.owner()
        if owner is None or role(session) == WORKER:
            return not want & WRITE
        if role(session) != USER:
            return False
        bits = self.seen.st_mode >> 6 if user(session) == owner else self.seen.st_mode
        return (bits & want) == want

    def stat(self) -> Stat:
        """Owned by the user whose folder it is (so he may chmod and touch it)."""
        s = super().stat()
        owner = self.owner()
        return s if owner is None else dataclasses.replace(s, uid=owner, muid=owner)


class OutputsExport(ExportFS):
    """A job's outputs folder; `may_write(worker_name)` says whether that worker
    holds a task of the job now (then it may write there)."""

    def __init__(self, root: str, may_write: Callable[[str], bool], readers: Policy) -> None:
        super().__init__(root)
        self.may_write = may_write
        self.readers = readers


class OutputsNode(HostNode):
    """/jobs/N/outputs: read as the job's files are; admins may also tidy them; a
    worker with a task of the job leased writes."""

    export: OutputsExport

    def permits(self, session: Session, want: int) -> bool:
        if role(session) == ADMIN:
            return True
        if role(session) == USER:
            return self.export.readers(session, want)
        name = worker_name(session)
        return role(session) == WORKER and name is not None and self.export.may_write(name)
