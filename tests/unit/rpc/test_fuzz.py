"""Fuzzing the plugin's own gRPC client with what a broken or hostile daemon could send.

Whatever comes back, the plugin must answer the runtime with CNI error JSON, so every layer may
fail only with its own typed error: the HPACK decoder with HpackError, the protobuf decoder with
WireError, the HTTP/2 client with Unreachable / StreamReset / ProtocolError, and DaemonClient
(what the plugin calls) only with DaemonError. And none may hang: the server below always hangs
up after its bytes, so a client still waiting has missed the end of the stream.

Inputs are built in layers so that they reach deep code, not just the first length check:
valid HPACK integer and string encodings (Huffman too) with random indexes and lengths, valid
protobuf fields of every wire type with random numbers and nesting, valid HTTP/2 frame headers
with random types, flags, lengths and stream ids, and gRPC responses that are plausible up to a
mutation. Raw bytes go in too. Two oracles go beyond "no crash": what protobuf's generated code
reads from some bytes, protowire reads alike, and an answer any conforming server could send is
read back exactly. Runs are derandomized, without an example database, so CI sees the same
examples every time; defects found are kept as @example regressions.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import tempfile
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from google.protobuf.message import DecodeError
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from hybridnet.rpc import hpack, http2, protowire
from hybridnet.rpc import messages as m
from hybridnet.rpc.client import DaemonClient, DaemonError
from tests.unit.rpc.test_protowire import generated, strategy

FUZZ = settings(
    max_examples=400,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
CALL_TIMEOUT = 30.0
"""The client's own deadline. The server has always hung up long before it."""
HANG_BOUND = 60.0
"""How long the test waits for a client that is neither done nor blocked on the socket (a loop
that never ends); far beyond the few milliseconds an exchange takes, to say 'hung'."""

# --- HPACK, as a server's encoder could write it ---------------------------------------------

_CODE_OF = {symbol: (length, code) for (length, code), symbol in hpack._HUFFMAN.items()}


def one_in(n: int) -> st.SearchStrategy[bool]:
    """True once in ``n`` draws (``st.integers(0, n - 1) == 0`` is far likelier: Hypothesis
    favours small integers)."""
    return st.sampled_from([True] + [False] * (n - 1))


def huffman_encode(data: bytes) -> bytes:
    """RFC 7541 5.2: each octet's code, padded to a whole octet with the start of EOS."""
    out = bytearray()
    bits = length = 0
    for byte in data:
        code_length, code = _CODE_OF[byte]
        bits, length = (bits << code_length) | code, length + code_length
        while length >= 8:
            length -= 8
            out.append((bits >> length) & 0xFF)
        bits &= (1 << length) - 1
    if length:
        out.append(((bits << (8 - length)) | ((1 << (8 - length)) - 1)) & 0xFF)
    return bytes(out)


NAMES = [":status", "content-type", "grpc-status", "grpc-message", "cni-code", "te", "x-y"]
VALUES = ["200", "404", "503", "application/grpc", "0", "2", "4", "5", "13", "14", "11"]
header_name = st.sampled_from(NAMES) | st.text(max_size=12)
header_value = st.sampled_from(VALUES) | st.text(max_size=20) | st.integers(0, 10**6).map(str)
latin1 = st.text(st.characters(max_codepoint=255), max_size=24)
long_text = st.integers(100, 4200).map(lambda n: "v" * n)
"""Values that fill the 4096-octet dynamic table in a few entries, so entries get evicted."""
static_index = st.integers(1, len(hpack.STATIC_TABLE))
table_index = static_index | static_index | st.integers(62, 66) | st.integers(0, 2**31)
"""Mostly entries that exist (static, or the newest few dynamic ones), sometimes not."""
table_size = st.sampled_from([0, 32, 100, 4096, 4097]) | st.integers(0, 5000)
overlong_integer = st.integers(5, 9).map(lambda n: b"\xff" + b"\xff" * n + b"\x01")
"""An integer with more continuation octets than any sane value needs."""


@st.composite
def hpack_string(draw: st.DrawFn, text: str | None = None) -> bytes:
    """A string literal: raw or Huffman-coded, its length right or (sometimes) not."""
    raw = (draw(latin1 | long_text) if text is None else text).encode("latin-1", "replace")
    huffman = draw(st.booleans())
    body = huffman_encode(raw) if huffman else raw
    if draw(one_in(20)):  # garbled: often invalid Huffman, or a coded EOS
        body = draw(st.binary(max_size=len(body) + 2) | st.just(b"\xff\xff\xff\xff"))
    length = len(body) if not draw(one_in(10)) else draw(st.integers(0, 2**32))
    return hpack.encode_integer(length, 7, 0x80 if huffman else 0) + body


@st.composite
def hpack_field(draw: st.DrawFn) -> bytes:
    """One field representation (RFC 7541 6), with plausible names and values mostly."""
    kind = draw(st.sampled_from(["indexed", "incremental", "without", "never", "size", "long"]))
    if kind == "indexed":
        return hpack.encode_integer(draw(table_index), 7, 0x80)
    if kind == "size":
        return hpack.encode_integer(draw(table_size), 5, 0x20)
    if kind == "long":
        return draw(st.sampled_from([b"\x80", b"\x40", b"\x20"])) + draw(overlong_integer)
    prefix, flags = {"incremental": (6, 0x40), "without": (4, 0x00), "never": (4, 0x10)}[kind]
    if draw(st.booleans()):  # a literal name
        name = hpack.encode_integer(0, prefix, flags) + draw(hpack_string(draw(header_name)))
    else:
        name = hpack.encode_integer(draw(table_index), prefix, flags)
    return name + draw(hpack_string(draw(header_value | long_text)))


@st.composite
def hpack_fields(draw: st.DrawFn, headers: list[tuple[str, str]]) -> bytes:
    """A valid block for ``headers``, each field in a representation chosen at random."""
    out = bytearray()
    for name, value in headers:
        static = hpack._STATIC_NAMES.get(name, 0)
        exact = hpack._STATIC_EXACT.get((name, value))
        if exact and draw(st.booleans()):
            out += hpack.encode_integer(exact, 7, 0x80)
            continue
        prefix, flags = draw(st.sampled_from([(6, 0x40), (4, 0x00), (4, 0x10)]))
        if static and draw(st.booleans()):
            out += hpack.encode_integer(static, prefix, flags)
        else:
            out += hpack.encode_integer(0, prefix, flags) + _literal(draw, name)
        out += _literal(draw, value)
    return bytes(out)


def _literal(draw: st.DrawFn, text: str) -> bytes:
    raw = text.encode("latin-1", "replace")
    if draw(st.booleans()):
        coded = huffman_encode(raw)
        return hpack.encode_integer(len(coded), 7, 0x80) + coded
    return hpack.encode_integer(len(raw), 7, 0) + raw


hpack_block = st.lists(hpack_field(), max_size=10).map(b"".join) | st.binary(max_size=48)


@FUZZ
@given(st.lists(hpack_block, min_size=1, max_size=6))
def test_hpack_decoder_fails_only_with_hpack_error(blocks: list[bytes]) -> None:
    decoder = hpack.Decoder()
    for block in blocks:  # one connection: the blocks share the dynamic table
        try:
            headers = decoder.decode(block)
        except hpack.HpackError:
            return  # a connection error: nothing more is decoded on it
        assert all(isinstance(n, str) and isinstance(v, str) for n, v in headers)
        entries, size = decoder.table
        assert size == sum(len(n) + len(v) + hpack.ENTRY_OVERHEAD for n, v in entries)
        assert size <= 4096


@FUZZ
@given(st.binary(max_size=200))
def test_huffman_decodes_what_it_encodes(data: bytes) -> None:
    assert hpack.huffman_decode(huffman_encode(data)) == data


@FUZZ
@given(st.lists(st.tuples(latin1, latin1), max_size=8), st.data())
def test_valid_blocks_decode_to_their_headers(
    headers: list[tuple[str, str]], data: st.DataObject
) -> None:
    assert hpack.Decoder().decode(data.draw(hpack_fields(headers))) == headers


# --- protobuf wire format --------------------------------------------------------------------


def varint(value: int) -> bytes:
    out = bytearray()
    _varint_into(out, value)
    return bytes(out)


def _varint_into(out: bytearray, value: int) -> None:
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)


field_number = st.integers(1, 6) | st.integers(0, 2**29)


@st.composite
def wire_field(draw: st.DrawFn, inner: st.SearchStrategy[bytes]) -> bytes:
    """One field of any wire type; length-delimited ones and groups hold ``inner``."""
    number = draw(field_number)
    wire_type = draw(st.sampled_from(range(8)))
    tag = varint(number << 3 | wire_type)
    if wire_type == 0:
        value = varint(draw(st.integers(0, 2**64 - 1)))
        if draw(one_in(10)):  # overlong: zero continuation bytes protobuf accepts
            value = bytes(b | 0x80 for b in value) + b"\x00"
        return tag + value
    if wire_type in (1, 5):
        return tag + draw(st.binary(min_size=8 if wire_type == 1 else 4, max_size=8))
    if wire_type == 2:
        payload = draw(inner | st.text(max_size=16).map(str.encode) | st.binary(max_size=16))
        length = len(payload) if not draw(one_in(10)) else draw(st.integers(0, 2**35))
        return tag + varint(length) + payload
    if wire_type == 3:
        closing = number if not draw(one_in(10)) else draw(field_number)
        return tag + draw(inner) + varint(closing << 3 | 4)
    return tag + draw(st.binary(max_size=4))  # 4 (a stray group end), 6 and 7 (no such type)


protobuf_bytes = st.recursive(
    st.binary(max_size=12),
    lambda inner: st.lists(wire_field(inner), max_size=6).map(b"".join),
    max_leaves=16,
)
"""Fields of every wire type with no regard to any message's schema."""
deep_nesting = st.integers(1, 5000).flatmap(
    lambda depth: st.sampled_from(
        [b"\x0b" * depth + b"\x0c" * depth, b"\x0b" * depth, b"\x1a\x02\x0b\x0c" * depth]
    )
)
"""Groups inside groups (field 1, wire type 3) far deeper than any real message."""
SCALAR_VALUES = {
    protowire.UINT32: st.integers(0, 2**32 - 1) | st.integers(0, 2**64 - 1),
    protowire.INT32: st.integers(-(2**31), 2**31 - 1).map(lambda v: v & (2**64 - 1)),
    protowire.BOOL: st.sampled_from([0, 1, 2, 2**63]),
}


@st.composite
def message_bytes(draw: st.DrawFn, cls: type) -> bytes:
    """Bytes for ``cls``: its own fields, each with its wire type and a value of its kind
    (nested messages likewise), repeated or merged at random, among random unknown fields;
    now and then one of the wrong wire type, invalid UTF-8 or an overlong varint."""
    out = bytearray()
    for _ in range(draw(st.integers(0, 6))):
        fields = m.SCHEMA[cls]
        if not fields or draw(one_in(5)):
            out += draw(wire_field(protobuf_bytes))
            continue
        field = draw(st.sampled_from(fields))
        if field.kind in SCALAR_VALUES:
            value = varint(draw(SCALAR_VALUES[field.kind]))
            if draw(one_in(20)):
                value = b"\xff" * 10 + b"\x01"  # eleven octets: no varint is that long
            out += varint(field.number << 3) + value
            continue
        if field.kind == protowire.STRING:
            payload = draw(st.text(max_size=16)).encode()
            if draw(one_in(10)):
                payload = draw(st.binary(max_size=8))  # often not UTF-8
        else:
            payload = draw(message_bytes(field.kind))
        wire_type = 2 if not draw(one_in(10)) else draw(st.integers(0, 7))
        out += varint(field.number << 3 | wire_type) + varint(len(payload)) + payload
    return bytes(out)


message_class = st.sampled_from(list(m.SCHEMA))
message_and_bytes = message_class.flatmap(
    lambda cls: st.tuples(st.just(cls), message_bytes(cls) | protobuf_bytes | deep_nesting)
)


@FUZZ
@given(message_and_bytes)
@example((m.StatusReply, b"\x0b" * 2000 + b"\x0c" * 2000))  # once a RecursionError
def test_protobuf_decoder_fails_only_with_wire_error(case: tuple[type, bytes]) -> None:
    cls, data = case
    try:
        decoded = protowire.decode(cls, data, m.SCHEMA)
    except protowire.WireError:
        return
    assert isinstance(decoded, cls)


@FUZZ
@given(message_and_bytes)
def test_what_protobuf_reads_we_read_alike(case: tuple[type, bytes]) -> None:
    """Differential: bytes the generated code accepts, we accept, with the same values."""
    cls, data = case
    try:
        theirs = generated(cls).FromString(data)
    except DecodeError:
        return
    theirs.DiscardUnknownFields()
    ours = protowire.decode(cls, data, m.SCHEMA)
    assert protowire.encode(ours, m.SCHEMA) == theirs.SerializeToString(deterministic=True)


# --- HTTP/2 and the client, against a server that sends the generated bytes -------------------

KINDS = list(range(10))


def frame(kind: int, flags: int, stream: int, payload: bytes, length: int | None = None) -> bytes:
    declared = len(payload) if length is None else length
    return declared.to_bytes(3, "big") + struct.pack(">BBI", kind, flags, stream) + payload


stream_id = st.sampled_from([0, 1, 1, 1, 3]) | st.integers(0, 2**32 - 1)
flag_bits = st.integers(0, 255) | st.sampled_from([0, 0x1, 0x4, 0x5, 0x8, 0x20, 0x2D])


@st.composite
def padded(draw: st.DrawFn, payload: bytes, flags: int, hostile: bool = True) -> bytes:
    """``payload`` behind a Pad Length octet when the PADDED flag is set (if ``hostile``,
    sometimes one that says more than the frame holds)."""
    if not flags & http2.PADDED:
        return payload
    padding = draw(st.integers(0, 20))
    wrong = hostile and draw(one_in(10))
    declared = draw(st.integers(0, 255)) if wrong else padding
    return bytes([declared]) + payload + bytes(padding)


@st.composite
def payload_for(draw: st.DrawFn, kind: int, flags: int) -> bytes:
    """A payload shaped like frame type ``kind``'s, mostly of the right size."""
    if draw(one_in(20)):
        return draw(st.binary(max_size=24))
    if kind == http2.SETTINGS:
        keys = st.integers(1, 6) | st.integers(0, 2**16 - 1)
        values = st.sampled_from([0, 16383, 16384, 65535, 2**31 - 1, 2**31]) | st.integers(
            0, 2**32 - 1
        )
        entries = draw(st.lists(st.tuples(keys, values), max_size=4))
        return b"".join(struct.pack(">HI", k, v) for k, v in entries)
    if kind in (http2.WINDOW_UPDATE, http2.RST_STREAM):
        return struct.pack(
            ">I", draw(st.sampled_from([0, 1, 7, 8, 2**31 - 1]) | st.integers(0, 2**32 - 1))
        )
    if kind == http2.PING:
        return draw(st.binary(min_size=8, max_size=8))
    if kind == http2.PRIORITY:
        return draw(st.binary(min_size=5, max_size=5))
    if kind == http2.GOAWAY:
        last = draw(st.sampled_from([0, 1, 3]) | st.integers(0, 2**32 - 1))
        return struct.pack(">II", last, draw(st.integers(0, 13))) + draw(st.binary(max_size=8))
    if kind in (http2.HEADERS, http2.CONTINUATION, http2.PUSH_PROMISE):
        block = draw(hpack_block)
        if kind == http2.HEADERS and flags & http2.PRIORITY_FLAG:
            block = draw(st.binary(min_size=5, max_size=5)) + block
        return draw(padded(block, flags)) if kind == http2.HEADERS else block
    if kind == http2.DATA:
        return draw(padded(draw(st.binary(max_size=32)), flags))
    return draw(st.binary(max_size=16))  # an unknown type, which must be ignored


@st.composite
def any_frame(draw: st.DrawFn) -> bytes:
    """Any frame: a random type (also unknown ones), flags, stream id and declared length."""
    kind = draw(st.sampled_from(KINDS) | st.integers(0, 255))
    flags = draw(flag_bits)
    payload = draw(payload_for(kind, flags))
    length = None if not draw(one_in(15)) else draw(st.integers(0, 2**24 - 1))
    return frame(kind, flags, draw(stream_id), payload, length)


@st.composite
def control_frame(draw: st.DrawFn) -> bytes:
    """A frame a well-behaved server may send at any time: SETTINGS, PING, WINDOW_UPDATE,
    PRIORITY, a type this client does not know, or a frame for another stream."""
    choice = draw(st.sampled_from(range(6)))
    if choice == 0:
        values = st.sampled_from([0, 100, 16384, 65535, 2**20, 2**24 - 1])
        entries = draw(
            st.lists(
                st.tuples(st.sampled_from([1, 3, 4, 6, 0x99]), values)
                | st.tuples(st.just(5), st.sampled_from([16384, 2**24 - 1])),
                max_size=3,
            )
        )
        return frame(http2.SETTINGS, 0, 0, b"".join(struct.pack(">HI", k, v) for k, v in entries))
    if choice == 1:
        return frame(http2.PING, draw(st.sampled_from([0, http2.ACK])), 0, bytes(8))
    if choice == 2:
        increment = struct.pack(">I", draw(st.integers(1, 2**20)))
        return frame(http2.WINDOW_UPDATE, 0, draw(st.sampled_from([0, 1, 5])), increment)
    if choice == 3:
        return frame(http2.PRIORITY, 0, draw(st.sampled_from([1, 3])), bytes(5))
    if choice == 4:
        return frame(draw(st.integers(10, 255)), draw(flag_bits), 1, draw(st.binary(max_size=8)))
    return frame(http2.DATA, 0, 3, draw(st.binary(max_size=8)))


@st.composite
def hostile_frame(draw: st.DrawFn) -> bytes:
    """A well-formed frame that ends the call or breaks a rule: RST_STREAM, GOAWAY,
    PUSH_PROMISE, flow-control or SETTINGS values out of range, a header block where none may
    be, a CONTINUATION without its HEADERS, a frame of a fixed size with another size."""
    choice = draw(st.sampled_from(range(8)))
    if choice == 0:
        return frame(http2.RST_STREAM, 0, 1, struct.pack(">I", draw(st.integers(0, 13))))
    if choice == 1:
        last = draw(st.sampled_from([0, 1, 2**31 + 1]))
        return frame(http2.GOAWAY, 0, 0, struct.pack(">II", last, draw(st.integers(0, 13))))
    if choice == 2:
        return frame(http2.PUSH_PROMISE, http2.END_HEADERS, 1, struct.pack(">I", 2))
    if choice == 3:
        increment = draw(st.sampled_from([0, 2**31 - 1]))
        return frame(
            http2.WINDOW_UPDATE, 0, draw(st.sampled_from([0, 1])), struct.pack(">I", increment)
        )
    if choice == 4:
        key, value = draw(st.sampled_from([(4, 2**31), (5, 0), (5, 2**24), (4, 0)]))
        return frame(http2.SETTINGS, 0, 0, struct.pack(">HI", key, value))
    if choice == 5:
        flags = http2.END_HEADERS | draw(
            st.sampled_from([0, http2.END_STREAM, http2.PRIORITY_FLAG])
        )
        return frame(http2.HEADERS, flags, 1, draw(hpack_block))
    if choice == 6:
        return frame(http2.CONTINUATION, http2.END_HEADERS, 1, draw(hpack_block))
    kind = draw(st.sampled_from([http2.PING, http2.RST_STREAM, http2.PRIORITY, http2.GOAWAY]))
    return frame(kind, 0, draw(st.sampled_from([0, 1])), draw(st.binary(max_size=12)))


def grpc_message(body: bytes, compressed: int = 0, length: int | None = None) -> bytes:
    return bytes([compressed]) + (len(body) if length is None else length).to_bytes(4, "big") + body


@st.composite
def header_frames(
    draw: st.DrawFn, headers: list[tuple[str, str]], end_stream: bool, hostile: bool = True
) -> list[bytes]:
    """One header block as HEADERS (sometimes padded or with priority fields), split into
    CONTINUATIONs at random points; if ``hostile``, now and then garbage instead."""
    garbage = hostile and draw(one_in(15))
    block = draw(hpack_block) if garbage else draw(hpack_fields(headers))
    cuts = sorted(draw(st.lists(st.integers(0, len(block)), max_size=2)))
    pieces = [block[a:b] for a, b in zip([0, *cuts], [*cuts, len(block)], strict=True)]
    flags = (http2.END_STREAM if end_stream else 0) | (http2.END_HEADERS if len(pieces) == 1 else 0)
    first = pieces[0]
    if draw(one_in(5)):
        flags |= http2.PRIORITY_FLAG
        first = bytes(5) + first
    if draw(one_in(5)):
        flags |= http2.PADDED
        first = draw(padded(first, flags, hostile))
    frames = [frame(http2.HEADERS, flags, 1, first)]
    for position, piece in enumerate(pieces[1:], 2):
        last = position == len(pieces)
        frames.append(frame(http2.CONTINUATION, http2.END_HEADERS if last else 0, 1, piece))
    return frames


HUGE = ["1" * 30, "7" * 4301]
"""Numbers no status has: beyond 64 bits, and beyond the 4300 digits int() converts at all."""


@st.composite
def grpc_response(draw: st.DrawFn, reply: st.SearchStrategy[bytes], hostile: bool = True) -> bytes:
    """A gRPC answer: headers, one message, trailers, with a server's control frames mixed in,
    in any legal encoding (HPACK representations, Huffman, CONTINUATION, padding).

    If ``hostile``, the statuses and metadata vary, and now and then a frame is replaced by
    anything at all or the stream is cut short: bytes that get far into the client before
    they go wrong. Otherwise it is an answer any gRPC client must read.
    """
    status = draw(st.sampled_from(["0"] * 8 + ["2", "4", "5", "13", "14", "x", "99", *HUGE]))
    trailers = [("grpc-status", status if hostile else "0")]
    if draw(st.booleans()):
        trailers.append(("grpc-message", draw(st.text(max_size=12) | st.just("a%20b%zz%"))))
    if hostile and draw(st.booleans()):
        trailers.append(("cni-code", draw(st.sampled_from(["11", "0", "-1", "7x", "999", *HUGE]))))
    http_status = draw(st.sampled_from(["200", "200", "200", "404", "503", "abc", *HUGE]))
    response = [
        (":status", http_status if hostile else "200"),
        ("content-type", "application/grpc"),
    ]
    # Units that other frames may come between: a header block's frames stay together.
    units = [frame(http2.SETTINGS, 0, 0, b"")]
    if hostile and draw(one_in(5)):  # trailers-only
        units.append(b"".join(draw(header_frames(response + trailers, True))))
    else:
        body = grpc_message(draw(reply))
        if hostile and draw(one_in(10)):
            body = grpc_message(draw(reply), draw(st.integers(0, 255)), draw(st.integers(0, 99)))
        cut = draw(st.integers(0, len(body)))
        units.append(b"".join(draw(header_frames(response, False, hostile))))
        units.append(draw(padded_data(body[:cut], hostile)))
        if hostile and draw(one_in(10)):  # the body ends the stream, without trailers
            units.append(frame(http2.DATA, http2.END_STREAM, 1, body[cut:]))
        else:
            units.append(draw(padded_data(body[cut:], hostile)))
            units.append(b"".join(draw(header_frames(trailers, True, hostile))))
    for _ in range(draw(st.integers(0, 4))):
        units.insert(draw(st.integers(1, len(units))), draw(control_frame()))
    if hostile and draw(one_in(4)):  # one unit replaced, or one frame more: anything at all
        at = draw(st.integers(0, len(units) - 1))
        units[at : at + draw(st.sampled_from([0, 1]))] = [draw(hostile_frame() | any_frame())]
    stream = b"".join(units)
    if hostile and draw(one_in(10)):
        stream = stream[: draw(st.integers(0, len(stream)))]
    return stream


@st.composite
def padded_data(draw: st.DrawFn, payload: bytes, hostile: bool = True) -> bytes:
    flags = draw(st.sampled_from([0, 0, 0, http2.PADDED]))
    return frame(http2.DATA, flags, 1, draw(padded(payload, flags, hostile)))


def server_bytes(reply: st.SearchStrategy[bytes]) -> st.SearchStrategy[bytes]:
    """What the server sends: mostly a gRPC answer carrying ``reply``, else any frames or
    bytes at all."""
    answer = grpc_response(reply)
    frames = st.lists(control_frame() | hostile_frame() | any_frame(), max_size=12)
    return st.one_of(answer, answer, answer, frames.map(b"".join), st.binary(max_size=256))


def reply_bytes(cls: type) -> st.SearchStrategy[bytes]:
    """A message for ``cls`` as the daemon would encode it, or as a broken one might."""
    encoded = strategy(cls).map(lambda reply: protowire.encode(reply, m.SCHEMA))
    return encoded | message_bytes(cls) | protobuf_bytes


class Peer:
    """A unix socket that answers each connection with given bytes and then hangs up."""

    def __init__(self, path: str):
        self.path = path
        self._listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._listener.bind(path)
        self._listener.listen(1)
        self._listener.settimeout(HANG_BOUND)

    def close(self) -> None:
        self._listener.close()

    def exchange(self, data: bytes, call: Callable[[], Any]) -> Any:
        """Run ``call`` (which connects here) on a thread while serving ``data``; its result or
        the exception it raised. Fails the test if the call does not end."""
        outcome: list[Any] = []

        def run() -> None:
            try:
                outcome.append(call())
            except BaseException as exc:  # the test judges what was raised
                outcome.append(exc)

        worker = threading.Thread(target=run, daemon=True)
        worker.start()
        conn, _ = self._listener.accept()
        with conn:
            conn.settimeout(HANG_BOUND)
            with contextlib.suppress(OSError):  # the client may give up before reading it all
                conn.sendall(data)
                conn.shutdown(socket.SHUT_WR)
            with contextlib.suppress(OSError):  # its request, until it closes the connection
                while conn.recv(65536):
                    pass
        worker.join(HANG_BOUND)
        assert not worker.is_alive(), "the client neither finished nor gave up"
        return outcome[0]


@pytest.fixture(scope="module")
def peer() -> Iterator[Peer]:
    with tempfile.TemporaryDirectory(prefix="hn-fuzz-") as directory:
        served = Peer(str(Path(directory) / "d.sock"))
        yield served
        served.close()


REQUEST = [(":method", "POST"), (":scheme", "http"), (":path", "/x/Y"), (":authority", "l")]
request_body = st.sampled_from([grpc_message(b"hi"), grpc_message(bytes(100_000))])
"""A small request, or one larger than the first flow-control window (65535 octets): the
client then reads while it sends, for the server's WINDOW_UPDATEs."""


@FUZZ
@given(request_body, server_bytes(protobuf_bytes))
def test_http2_client_answers_or_fails_typed(peer: Peer, body: bytes, data: bytes) -> None:
    outcome = peer.exchange(data, lambda: http2.request(peer.path, REQUEST, body, CALL_TIMEOUT))
    if isinstance(outcome, BaseException):
        # DeadlineExceeded is not among them: the server had hung up, nothing was left to wait for.
        assert isinstance(outcome, http2.Unreachable | http2.StreamReset | http2.ProtocolError), (
            repr(outcome)
        )
        return
    assert isinstance(outcome, http2.Response)
    assert all(isinstance(k, str) and isinstance(v, str) for k, v in outcome.headers.items())
    assert len(outcome.body) <= http2.MAX_BODY


ATTACHMENT = m.Attachment("c1", "/run/netns/p", "eth0")
CALLS: dict[str, tuple[Callable[[DaemonClient], Any], type, Callable[[Any], Any]]] = {
    "Add": (lambda c: c.add(ATTACHMENT), m.AddReply, lambda reply: reply),
    "Delete": (lambda c: c.delete(ATTACHMENT), m.DeleteReply, lambda reply: None),
    "Check": (
        lambda c: c.check(ATTACHMENT, m.AddReply()),
        m.CheckReply,
        lambda reply: list(reply.differences),
    ),
    "Status": (lambda c: c.status(), m.StatusReply, lambda reply: reply),
    "GarbageCollect": (
        lambda c: c.garbage_collect([("c1", "eth0")]),
        m.GarbageCollectReply,
        lambda reply: list(reply.removed),
    ),
}
"""Each call, the message its answer carries, and what the call returns for that message."""


def answer_with(trailers: list[tuple[str, str]], reply: bytes = b"") -> bytes:
    """A plain answer (HPACK as this client encodes) with these trailers, for examples."""
    return (
        frame(http2.HEADERS, http2.END_HEADERS, 1, hpack.encode([(":status", "200")]))
        + frame(http2.DATA, 0, 1, grpc_message(reply))
        + frame(http2.HEADERS, http2.END_HEADERS | http2.END_STREAM, 1, hpack.encode(trailers))
    )


call_and_answer = st.sampled_from(sorted(CALLS)).flatmap(
    lambda method: st.tuples(st.just(method), server_bytes(reply_bytes(CALLS[method][1])))
)


@FUZZ
@given(call_and_answer)
# Once a ValueError: int() refuses strings of more than 4300 digits.
@example(("Status", answer_with([("grpc-status", "7" * 4301)])))
@example(("Status", answer_with([("grpc-status", "13"), ("cni-code", "9" * 4301)])))
@example(("Status", frame(http2.HEADERS, 5, 1, hpack.encode([(":status", "2" * 4301)]))))
def test_daemon_client_fails_only_with_daemon_error(peer: Peer, case: tuple[str, bytes]) -> None:
    method, answer = case
    call, reply_message, returned = CALLS[method]
    outcome = peer.exchange(answer, lambda: call(DaemonClient(peer.path, CALL_TIMEOUT)))
    if isinstance(outcome, BaseException):
        assert isinstance(outcome, DaemonError), repr(outcome)
        assert isinstance(outcome.cni_code, int) and outcome.cni_code > 0
        assert isinstance(outcome.msg, str) and isinstance(outcome.details, str)
        return
    assert type(outcome) is type(returned(reply_message()))


@FUZZ
@given(st.sampled_from(sorted(CALLS)), st.data())
def test_daemon_client_reads_every_valid_answer(
    peer: Peer, method: str, data: st.DataObject
) -> None:
    """The other side of the coin: however a conforming server encodes its answer, the client
    returns exactly the reply in it."""
    call, reply_message, returned = CALLS[method]
    reply = data.draw(strategy(reply_message), label="reply")
    encoded = st.just(protowire.encode(reply, m.SCHEMA))
    answer = data.draw(grpc_response(encoded, hostile=False), label="answer")
    outcome = peer.exchange(answer, lambda: call(DaemonClient(peer.path, CALL_TIMEOUT)))
    assert outcome == returned(reply)
