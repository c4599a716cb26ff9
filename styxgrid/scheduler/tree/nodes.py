"""/nodes: the index of workers, and a folder per worker (status, ad, ctl)."""

from __future__ import annotations

from typing import Iterable

from ...ninep.tree import Node, Session
from .. import access
from ..grid import Grid
from .base import GridDir, grid_text
from .qids import Kind, node_path, qpath
from .verbs import Verb, Verbs

NODE_VERBS = Verbs(Verb("drain"), Verb("resume"), Verb("disable"))


class NodesDir(GridDir):
    def __init__(self, grid: Grid, parent: Node) -> None:
        super().__init__("nodes", qpath(Kind.NODES), parent)
        self.grid = grid

    def names(self) -> Iterable[str]:
        return ["index", *self.grid.node_names()]

    def child(self, name: str) -> Node | None:
        if name == "index":
            return grid_text(name, qpath(Kind.INDEX), self, self.grid.node_index)
        if self.grid.has_node(name):
            return NodeDir(self.grid, name, self)
        return None


class NodeDir(GridDir):
    def __init__(self, grid: Grid, name: str, parent: Node) -> None:
        super().__init__(name, node_path(Kind.NODE, name), parent)
        self.grid = grid
        self.own = access.node_files(name)

    def permits(self, session: Session, want: int) -> bool:
        return self.own(session, want)

    def status(self) -> Node:
        return grid_text("status", node_path(Kind.NSTATUS, self.name), self,
                         lambda: self.grid.node_status(self.name), permit=self.own)

    def ad(self) -> Node:
        return grid_text("ad", node_path(Kind.NAD, self.name), self,
                         lambda: self.grid.node_ad(self.name), permit=self.own)

    def ctl(self) -> Node:
        return grid_text("ctl", node_path(Kind.NCTL, self.name), self,
                         lambda: self.grid.node_status(self.name), self.verbs,
                         access.admin_writes)

    ENTRIES = {"status": status, "ad": ad, "ctl": ctl}

    async def verbs(self, text: str) -> None:
        """Every verb of the write is checked before any is carried out."""
        for verb, _ in NODE_VERBS.lines(text):
            if verb == "disable":
                self.grid.labour.vacate(self.name)
            else:
                self.grid.labour.drain(self.name, verb == "drain")
