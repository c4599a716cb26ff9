"""The scheduler's served tree (styxgrid(4)): a thin 9P adapter over `Grid`, one
module per subtree.

Directories are made on walk from the grid's state, so a job appears in `ls jobs`
the moment it is committed.  State files answer a read at offset 0 with a fresh
snapshot and serve later offsets from it.  Streams (stdout, events) park a read
until there is more, and end when their job ends.  Error texts are the grid's own
words: the shell user sees them.
"""

from .root import GridFS

__all__ = ["GridFS"]
