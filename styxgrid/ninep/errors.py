"""The 9P layer's exceptions and the error strings it answers with.

Two protocol errors in the style of h11: `RemoteProtocolError` when the peer sent
bytes that are not 9P2000, `LocalProtocolError` when our own code tried to build or
send something invalid.  `NinePError` is the ordinary "this request failed" that a
file handler raises; the framework turns it into Rerror.
"""


class ProtocolError(Exception):
    """Base of the two protocol errors."""


class RemoteProtocolError(ProtocolError):
    """The peer sent something that is not a well-formed 9P2000 message."""


class LocalProtocolError(ProtocolError):
    """We were asked to build or send an invalid message."""


ERRMAX = 1024          # bytes of an Rerror text; a longer one is cut (UTF-8 safe)
QUOTEMAX = 64          # characters of the peer's input an error text quotes


def cut(text: str, limit: int = ERRMAX) -> str:
    """`text` cut to at most `limit` bytes of UTF-8, marked with "..." when cut."""
    raw = text.encode("utf-8", "replace")
    if len(raw) <= limit:
        return text
    return raw[:limit - 3].decode("utf-8", "ignore") + "..."


def quoted(text: str | bytes, limit: int = QUOTEMAX) -> str:
    """The peer's input as an error text quotes it: repr of a short prefix."""
    if len(text) <= limit:
        return repr(text)
    return repr(text[:limit]) + "..."


class NinePError(Exception):
    """A request failed; `ename` is the Rerror string the peer sees (cut to ERRMAX
    bytes, so that any text can be answered)."""

    def __init__(self, ename: str) -> None:
        ename = cut(ename)
        super().__init__(ename)
        self.ename = ename


# Error strings, named once (lib9p srv.c / Inferno styxservers.m style).
EBADFID = "unknown fid"
EDUPFID = "fid already in use"
EDUPTAG = "tag already in use"
ENOTFOUND = "file does not exist"
EPERM = "permission denied"
ENOTDIR = "not a directory"
EISDIR = "is a directory"
EOPEN = "fid already open"
ENOTOPEN = "fid not open"
EBADOFFSET = "bad offset in directory read"
EBADMODE = "bad open mode"
EWALKOPEN = "cannot walk an open fid"
ETOOMANYWALK = "too many names in walk"
EEXIST = "file already exists"
ENOAUTH = "authentication not required"
ENOVERSION = "version not negotiated"
EBADMSG = "unexpected message"
ETOOMANYFIDS = "too many fids"
ENOTEMPTY = "directory not empty"
EBADNAME = "bad file name"
EBADWSTAT = "wstat not allowed"
EREADONLY = "file is read-only"
EINTERRUPTED = "interrupted"
EIO = "i/o error"
ELEAVES = "permission denied: path leaves the exported tree"
ENAMETOOLONG = "file name too long"
EBADNAMECHAR = "bad file name: it holds a NUL byte"
EBADOFFSETRANGE = "offset out of range (a file offset is less than 2^63)"
EBADLENGTH = "length out of range (a file length is less than 2^63)"
EINTERNAL = "internal error (the server logged it)"
