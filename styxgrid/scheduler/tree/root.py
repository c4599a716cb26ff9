"""The root of the tree: who attaches, the top-level files, and the grid's ctl."""

from __future__ import annotations

import os
from typing import Callable

from ...ninep.errors import NinePError
from ...ninep.exportfs import ExportFS
from ...ninep.tree import Node, Session
from .. import access
from ..grid import Grid
from .base import GridDir, grid_file, grid_text
from .jobs import EventStream, JobsDir
from .new import NewHandle
from .nodes import NodesDir
from .qids import Kind, qpath
from .users import UsersDir
from .verbs import Verb, Verbs
from .work import WorkHandle

GRID_VERBS = Verbs(Verb("drain", "[NODE]"), Verb("resume", "[NODE]"))


class GridFS:
    """The FileServer: every attach sees the same tree; what it may do there
    depends on who it is (access.py).  A TLS client with no certificate yet may
    only attach `join` and enrol (when the scheduler has a CA)."""

    def __init__(self, grid: Grid, enrolment: Callable[[], Node] | None = None) -> None:
        self.grid = grid
        self.data = ExportFS(grid.data_dir)
        self.enrolment = enrolment

    def attach(self, session: Session) -> Node:
        peer = session.peer
        if peer.get("transport") == "tls" and not peer.get("name") \
                and session.aname == "join" and self.enrolment is not None:
            return self.enrolment()
        access.identify(session)
        if access.role(session) == access.USER:
            os.makedirs(os.path.join(self.data.root, access.user(session)), exist_ok=True)
        return Root(self)


class Root(GridDir):
    permit = staticmethod(lambda session, want: not want & access.WRITE)

    def __init__(self, fs: GridFS) -> None:
        super().__init__("/", qpath(Kind.ROOT), None)
        self.fs = fs
        self.grid = fs.grid

    def new(self) -> Node:
        return grid_file("new", qpath(Kind.NEW), self, lambda s, m: NewHandle(self.grid, s),
                         0o666, access.people_all)

    def ctl(self) -> Node:
        return grid_text("ctl", qpath(Kind.CTL), self, self.grid_state, self.grid_ctl,
                         access.admin_only)

    def stats(self) -> Node:
        return grid_text("stats", qpath(Kind.STATS), self, self.grid.stats_line)

    def events(self) -> Node:
        return grid_file("events", qpath(Kind.EVENTS), self,
                         lambda s, m: EventStream(self.grid, 0))

    def jobs(self) -> Node:
        return JobsDir(self.grid, self)

    def nodes(self) -> Node:
        return NodesDir(self.grid, self)

    def users(self) -> Node:
        return UsersDir(self.grid, self)

    def data(self) -> Node:
        return access.DataNode(self.fs.data, self.fs.data.root, "data", self)

    def work(self) -> Node:
        return grid_file("work", qpath(Kind.WORK), self, lambda s, m: WorkHandle(self.grid, s),
                         0o666, access.workers_only)

    ENTRIES = {"new": new, "ctl": ctl, "stats": stats, "events": events, "jobs": jobs,
               "nodes": nodes, "users": users, "data": data, "work": work}

    def grid_state(self) -> str:
        draining = self.grid.draining()
        return f"draining {' '.join(draining)}\n" if draining else "running\n"

    async def grid_ctl(self, text: str) -> None:
        """Every verb and every node named is checked before any is carried out."""
        verbs = GRID_VERBS.lines(text)
        for _, node in verbs:
            if node is not None and not self.grid.has_node(node):
                raise NinePError(f"no node {node}")
        for verb, node in verbs:
            self.grid.labour.drain(node, verb == "drain")
