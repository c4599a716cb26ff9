"""Removing what a task made, as root, however it is shaped.

A task may leave a folder 10,000 levels deep, or links where folders were:
shutil.rmtree recurses (a RecursionError would end the worker) and holds a
descriptor per level.  Here every subfolder is first moved up beside the
others (rename within the tree never follows a link), so the walk is flat: two
descriptors at a time, no recursion, a bounded number of steps.
"""

from __future__ import annotations

import os

_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
MAX_STEPS = 10_000_000        # entries removed in one call, at most


def empty_folder(path: str) -> None:
    """Remove everything in the folder `path` (not itself); OSError if it cannot."""
    top = os.open(path, _DIR)
    try:
        with os.scandir(top) as found:
            taken = {entry.name for entry in found}
        pending: list[str | None] = [None]          # None: `top` itself
        steps = 0
        while pending:
            name = pending.pop()
            fd = top if name is None else os.open(name, _DIR, dir_fd=top)
            try:
                with os.scandir(fd) as found:
                    entries = list(found)
                for entry in entries:
                    steps += 1
                    if steps > MAX_STEPS:
                        raise OSError(f"more than {MAX_STEPS} entries to remove")
                    if entry.is_dir(follow_symlinks=False):
                        moved = entry.name if name is None else _free_name(taken)
                        if name is not None:
                            os.rename(entry.name, moved, src_dir_fd=fd, dst_dir_fd=top)
                        pending.append(moved)
                    else:
                        os.unlink(entry.name, dir_fd=fd)
            finally:
                if fd != top:
                    os.close(fd)
            if name is not None:
                os.rmdir(name, dir_fd=top)
    finally:
        os.close(top)


def _free_name(taken: set[str]) -> str:
    n = len(taken)
    while f".removing-{n}" in taken:
        n += 1
    name = f".removing-{n}"
    taken.add(name)
    return name


def remove_tree(path: str) -> None:
    """Remove the folder `path` and all in it; what cannot go is left, quietly."""
    try:
        empty_folder(path)
        os.rmdir(path)
    except FileNotFoundError:
        pass
    except NotADirectoryError:
        try:
            os.unlink(path)
        except OSError:
            pass
    except OSError:
        pass
