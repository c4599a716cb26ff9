"""The kit's pieces with the scheduler's defaults: people read, workers pass
through folders on the way to their tasks, and the grid's refusals are replies."""

from __future__ import annotations

from ...ninep.synthetic import Dir, File, Opener, Permit, ReadFn, WriteFn, text_file
from ...ninep.tree import Node
from .. import access
from ..model import CoreError

REFUSALS = (LookupError, CoreError)     # the grid's and the core's "no" with their reason


class GridDir(Dir):
    permit = staticmethod(access.on_the_way)


def grid_file(name: str, qid_path: int, parent: Node, opener: Opener, mode: int = 0o444,
              permit: Permit = access.people_read) -> File:
    return File(name, qid_path, parent, opener, mode, permit)


def grid_text(name: str, qid_path: int, parent: Node, read_fn: ReadFn | None,
              write_fn: WriteFn | None = None, permit: Permit = access.people_read) -> File:
    return text_file(name, qid_path, parent, read_fn, write_fn, permit, REFUSALS)
