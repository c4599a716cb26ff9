"""9P error strings to errno: one table, one helper.  The text itself is kept for
/errstr, since an errno says so little."""

from __future__ import annotations

import errno

from ..ninep import errors as E

_BY_PREFIX: tuple[tuple[str, int], ...] = (
    (E.ENOTFOUND, errno.ENOENT),
    (E.EPERM, errno.EACCES),
    (E.EEXIST, errno.EEXIST),
    (E.ENOTDIR, errno.ENOTDIR),
    (E.EISDIR, errno.EISDIR),
    (E.ENOTEMPTY, errno.ENOTEMPTY),
    (E.EINTERRUPTED, errno.EINTR),
    (E.EREADONLY, errno.EACCES),
    (E.EBADNAME, errno.EINVAL),
    (E.EIO, errno.EIO),
    ("no such file", errno.ENOENT),
    ("no job", errno.ENOENT),
    ("no node", errno.ENOENT),
    ("file name too long", errno.ENAMETOOLONG),
    ("no space", errno.ENOSPC),
)


def errno_for(ename: str) -> int:
    """The errno that fits a 9P error string; anything else (a bad verb, a bad
    description, a wrong state) is EINVAL: the request itself was wrong."""
    text = ename.lower()
    for prefix, number in _BY_PREFIX:
        if text.startswith(prefix):
            return number
    return errno.EINVAL
