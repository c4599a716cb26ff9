"""9P2000 (Styx) for styxgrid: a sans-IO codec, a trio server framework and a trio client.

Knows nothing about grids.  The codec (messages, codec) does no I/O; the server
serves a tree of `Node`s (tree); the client multiplexes many requests on one
connection (client).
"""

from . import messages
from .codec import NEED_DATA, Decoder, decode_message, decode_stats, encode, encode_stat
from .errors import LocalProtocolError, NinePError, ProtocolError, RemoteProtocolError
from .messages import *  # noqa: F403 - the message classes and constants
from .server import FileServer, Limits, serve_listeners, serve_stream
from .tree import Handle, Node, Session, SyntheticNode

__all__ = [
    "NEED_DATA", "Decoder", "decode_message", "decode_stats", "encode", "encode_stat",
    "LocalProtocolError", "NinePError", "ProtocolError", "RemoteProtocolError",
    "FileServer", "Limits", "serve_listeners", "serve_stream",
    "Handle", "Node", "Session", "SyntheticNode",
    *[name for name in dir(messages) if name[:1].isupper() and not name.startswith("_")],
]
