"""The codec alone: a (message, bytes) table both ways, round trips, strictness, fuzz."""

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from styxgrid.ninep import (NEED_DATA, Decoder, LocalProtocolError, RemoteProtocolError,
                            decode_message, decode_stats, encode, encode_stat)
from styxgrid.ninep import messages as M

QID = M.Qid(M.QTDIR, 7, 0x1122334455667788)
STAT = M.Stat(0, 0, QID, M.DMDIR | 0o755, 1, 2, 0, "dir", "glenda", "sys", "glenda")

# One table drives both directions (h11's test_io style).
CASES = [
    (M.Tversion(M.NOTAG, 8192, "9P2000"),
     b"\x13\x00\x00\x00\x64\xff\xff\x00\x20\x00\x00\x06\x009P2000"),
    (M.Rerror(1, "no"), b"\x0b\x00\x00\x00\x6b\x01\x00\x02\x00no"),
    (M.Twalk(2, 1, 2, ("a", "b")),
     b"\x17\x00\x00\x00\x6e\x02\x00\x01\x00\x00\x00\x02\x00\x00\x00\x02\x00\x01\x00a\x01\x00b"),
    (M.Tread(3, 5, 1 << 40, 4096),
     b"\x17\x00\x00\x00\x74\x03\x00\x05\x00\x00\x00" + struct.pack("<QI", 1 << 40, 4096)),
    (M.Rread(3, b"hi"), b"\x0d\x00\x00\x00\x75\x03\x00\x02\x00\x00\x00hi"),
    (M.Rclunk(9), b"\x07\x00\x00\x00\x79\x09\x00"),
    (M.Tflush(4, 3), b"\x09\x00\x00\x00\x6c\x04\x00\x03\x00"),
]


@pytest.mark.parametrize("msg,wire", CASES)
def test_table_encode(msg, wire):
    assert encode(msg) == wire


@pytest.mark.parametrize("msg,wire", CASES)
def test_table_decode(msg, wire):
    assert decode_message(wire) == msg


def test_stat_and_directory_data():
    raw = encode_stat(STAT)
    assert struct.unpack_from("<H", raw)[0] == len(raw) - 2
    assert decode_stats(raw + raw) == [STAT, STAT]
    msg = M.Rstat(1, STAT)
    assert decode_message(encode(msg)) == msg


u8, u16, u32, u64 = (st.integers(0, 2 ** n - 1) for n in (8, 16, 32, 64))
names = st.text(max_size=20)
qids = st.builds(M.Qid, u8, u32, u64)
stats = st.builds(M.Stat, u16, u32, qids, u32, u32, u32, u64, names, names, names, names)
KINDS = {"u8": u8, "u16": u16, "u32": u32, "u64": u64, "s": names, "qid": qids, "stat": stats,
         "data": st.binary(max_size=300),
         "wnames": st.lists(names, max_size=16).map(tuple),
         "wqids": st.lists(qids, max_size=16).map(tuple)}


def message_strategy(cls):
    return st.builds(cls, u16, *[KINDS[kind] for _, kind in cls.FIELDS])


ANY_MESSAGE = st.one_of([message_strategy(cls) for cls in M.MESSAGE_TYPES.values()])


@settings(max_examples=600)
@given(ANY_MESSAGE)
def test_every_message_round_trips(msg):
    assert decode_message(encode(msg)) == msg


@settings(max_examples=200)
@given(st.lists(ANY_MESSAGE, min_size=1, max_size=5), st.integers(1, 50))
def test_decoder_reassembles_any_chunking(msgs, chunk):
    wire = b"".join(encode(m) for m in msgs)
    dec, out = Decoder(msize=1 << 20), []
    for i in range(0, len(wire), chunk):
        dec.feed(wire[i:i + chunk])
        while (m := dec.next_message()) is not NEED_DATA:
            out.append(m)
    assert out == msgs and dec.buffered == 0


def drain(data: bytes, msize: int = 8192) -> None:
    dec = Decoder(msize)
    dec.feed(data)
    while dec.next_message() is not NEED_DATA:
        pass


@settings(max_examples=1500)
@given(st.binary(max_size=200))
def test_random_bytes_only_raise_protocol_error(data):
    try:
        drain(data)
    except RemoteProtocolError:
        pass


@settings(max_examples=1500)
@given(ANY_MESSAGE, st.data())
def test_mutated_messages_only_raise_protocol_error(msg, data):
    wire = bytearray(encode(msg))
    for _ in range(data.draw(st.integers(1, 4))):
        i = data.draw(st.integers(0, len(wire) - 1))
        wire[i] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(wire)))
    try:
        drain(bytes(wire[:cut]) + bytes(wire[cut:]) if cut % 2 else bytes(wire[:cut]))
    except RemoteProtocolError:
        pass


def frame(code: int, body: bytes, tag: int = 1) -> bytes:
    return struct.pack("<IBH", 7 + len(body), code, tag) + body


@pytest.mark.parametrize("wire,why", [
    (struct.pack("<IBH", 6, 100, 0), "less than 7"),
    (struct.pack("<IBH", 9000, 100, 0), "more than msize"),
    (frame(106, b""), "unknown message type"),            # Terror does not exist
    (frame(99, b""), "unknown message type"),
    (frame(120, b"\x01\x00"), "truncated"),                # Tclunk with half a fid
    (frame(120, b"\x01\x00\x00\x00\x00"), "trailing"),      # overlong Tclunk
    (frame(110, b"\x01\x00\x00\x00\x02\x00\x00\x00\x11\x00"), "more than 16"),
    (frame(111, b"\x11\x00"), "more than 16"),
    (frame(107, b"\x02\x00\xff\xfe"), "not UTF-8"),
    (frame(107, b"\x09\x00ab"), "truncated"),              # string longer than message
])
def test_strictness(wire, why):
    with pytest.raises(RemoteProtocolError, match=why):
        drain(wire)


def test_invalid_messages_cannot_be_built():
    with pytest.raises(LocalProtocolError):
        M.Tclunk(70000, 1)
    with pytest.raises(LocalProtocolError):
        M.Twalk(1, 1, 2, tuple("x" * 17))
    with pytest.raises(LocalProtocolError):
        M.Topen(1, 1, 256)
    with pytest.raises(LocalProtocolError):
        M.Rread(1, "text")
