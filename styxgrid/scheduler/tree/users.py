"""/users: every user's fair share (usage, factor, effective priority), and a
folder per user whose ctl takes the admin's factor."""

from __future__ import annotations

from typing import Iterable

from ... import checks
from ...ninep.tree import Node
from .. import access
from ..grid import Grid
from ..shares import MAX_FACTOR, MIN_FACTOR
from .base import GridDir, grid_text
from .qids import Kind, node_path, qpath
from .verbs import Verb, Verbs


def _factor(text: str) -> float:
    value = float(text)
    if not MIN_FACTOR <= value <= MAX_FACTOR or not text.replace(".", "", 1).isdigit():
        raise ValueError(text)
    return value


USER_VERBS = Verbs(Verb("factor", "F", _factor,
                        f"F a number in {MIN_FACTOR:g}..{MAX_FACTOR:g}"))


class UsersDir(GridDir):
    def __init__(self, grid: Grid, parent: Node) -> None:
        super().__init__("users", qpath(Kind.USERS), parent)
        self.grid = grid

    def names(self) -> Iterable[str]:
        return ["index", *self.grid.user_names()]

    def child(self, name: str) -> Node | None:
        if name == "index":
            return grid_text(name, qpath(Kind.UINDEX), self, self.grid.users_index)
        try:
            checks.user_name(name)          # any user may be given a factor ahead
        except ValueError:
            return None
        return UserDir(self.grid, name, self)


class UserDir(GridDir):
    def __init__(self, grid: Grid, name: str, parent: Node) -> None:
        super().__init__(name, node_path(Kind.USER, name), parent)
        self.grid = grid

    def status(self) -> Node:
        return grid_text("status", node_path(Kind.USTATUS, self.name), self,
                         lambda: self.grid.user_status(self.name))

    def ctl(self) -> Node:
        return grid_text("ctl", node_path(Kind.UCTL, self.name), self,
                         lambda: self.grid.user_status(self.name), self.verbs,
                         access.admin_writes)

    ENTRIES = {"status": status, "ctl": ctl}

    async def verbs(self, text: str) -> None:
        for _, factor in USER_VERBS.lines(text):
            await self.grid.set_factor(self.name, factor)
