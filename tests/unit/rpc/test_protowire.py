"""The plugin's light messages agree with the .proto: same fields, and byte-compatible encoding
in both directions with the generated protobuf code."""

from __future__ import annotations

from typing import Any

import pytest
from google.protobuf import descriptor
from google.protobuf.message import Message
from hypothesis import given
from hypothesis import strategies as st

from hybridnet.rpc import daemon_pb2 as pb
from hybridnet.rpc import messages as m
from hybridnet.rpc import protowire

KIND_OF_TYPE = {
    descriptor.FieldDescriptor.TYPE_STRING: protowire.STRING,
    descriptor.FieldDescriptor.TYPE_UINT32: protowire.UINT32,
    descriptor.FieldDescriptor.TYPE_INT32: protowire.INT32,
    descriptor.FieldDescriptor.TYPE_BOOL: protowire.BOOL,
}


def generated(cls: type) -> Any:
    return getattr(pb, cls.__name__)


def test_schema_matches_the_proto_descriptors() -> None:
    assert {cls.__name__ for cls in m.SCHEMA} == set(pb.DESCRIPTOR.message_types_by_name)
    for cls, fields in m.SCHEMA.items():
        proto = generated(cls).DESCRIPTOR
        assert list(cls._fields) == [f.name for f in proto.fields], cls  # type: ignore[attr-defined]
        for field, proto_field in zip(fields, proto.fields, strict=True):
            assert (field.number, field.name) == (proto_field.number, proto_field.name)
            assert field.repeated == proto_field.is_repeated, field
            if proto_field.type == descriptor.FieldDescriptor.TYPE_MESSAGE:
                assert field.kind.__name__ == proto_field.message_type.name
            else:
                assert field.kind == KIND_OF_TYPE[proto_field.type], field
    assert pb.DESCRIPTOR.services_by_name["Daemon"].full_name == m.SERVICE


def strategy(cls: type) -> st.SearchStrategy[Any]:
    """Any value of a light message class."""
    text = st.text(max_size=40)
    scalars: dict[Any, st.SearchStrategy[Any]] = {
        protowire.STRING: text,
        protowire.UINT32: st.integers(0, 2**32 - 1),
        protowire.INT32: st.integers(-(2**31), 2**31 - 1),
        protowire.BOOL: st.booleans(),
    }
    fields: dict[str, st.SearchStrategy[Any]] = {}
    for field in m.SCHEMA[cls]:
        one = scalars[field.kind] if field.kind in scalars else strategy(field.kind)
        if field.repeated:
            fields[field.name] = st.lists(one, max_size=3).map(tuple)
        elif field.kind in m.SCHEMA:
            fields[field.name] = st.none() | one
        else:
            fields[field.name] = one
    return st.fixed_dictionaries(fields).map(lambda values: cls(**values))


def to_generated(message: Any) -> Message:
    """Build the generated message field by field (independently of protowire)."""
    values: dict[str, Any] = {}
    for field in m.SCHEMA[type(message)]:
        value = getattr(message, field.name)
        if field.kind in m.SCHEMA:
            if field.repeated:
                value = [to_generated(item) for item in value]
            elif value is None:
                continue
            else:
                value = to_generated(value)
        values[field.name] = list(value) if field.repeated else value
    result: Message = generated(type(message))(**values)
    return result


every_message = st.sampled_from(list(m.SCHEMA)).flatmap(strategy)


@given(every_message)
def test_our_bytes_are_protobufs_bytes(message: Any) -> None:
    ours = protowire.encode(message, m.SCHEMA)
    theirs = to_generated(message)
    assert ours == theirs.SerializeToString(deterministic=True)
    assert type(theirs).FromString(ours) == theirs


@given(every_message)
def test_we_read_what_protobuf_writes(message: Any) -> None:
    data = to_generated(message).SerializeToString()
    assert protowire.decode(type(message), data, m.SCHEMA) == message


def test_unknown_fields_are_skipped_and_messages_merge() -> None:
    unknown = bytes([0x78, 0x05]) + bytes([0x81, 0x01]) + bytes(8) + bytes([0x8D, 0x01]) + bytes(4)
    first = m.AddRequest(m.Attachment(container_id="c1", ifname="eth0"), mtu=1400)
    second = m.AddRequest(m.Attachment(netns="/run/netns/p", ifname="net1"))
    data = protowire.encode(first, m.SCHEMA) + unknown + protowire.encode(second, m.SCHEMA)
    decoded = protowire.decode(m.AddRequest, data, m.SCHEMA)
    assert decoded == m.AddRequest(
        m.Attachment(container_id="c1", netns="/run/netns/p", ifname="net1"), mtu=1400
    )
    assert decoded == protowire.decode(
        m.AddRequest, pb.AddRequest.FromString(data).SerializeToString(), m.SCHEMA
    )


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        (b"\x0a\x05abc", "runs past"),
        (b"\x10", "inside a varint"),
        (b"\x10" + b"\xff" * 11, "ten bytes"),
        (b"\x10\x05" + b"\x7b", "group without its end"),  # field 15 opens a group
        (b"\x10\x05" + b"\x7c", "unexpected wire type 4"),  # an end of group never opened
        (b"\x0a\x02\x0a\x05", "runs past"),  # the nested attachment's string is cut
    ],
)
def test_malformed_bytes_are_refused(data: bytes, problem: str) -> None:
    with pytest.raises(protowire.WireError, match=problem):
        protowire.decode(m.AddRequest, data, m.SCHEMA)


@pytest.mark.parametrize(
    "extra",
    [
        b"\x0d\x01\x00\x00\x00",  # field 1 (attachment) as fixed32: not ours, skipped
        b"\x10\x05",  # mtu twice: the last one counts
        b"\x7b\x08\x01\x7b\x7c\x7c",  # field 15 as a group, with a group inside
    ],
)
def test_what_protobuf_skips_we_skip(extra: bytes) -> None:
    data = protowire.encode(m.AddRequest(m.Attachment(container_id="c"), 1400), m.SCHEMA) + extra
    theirs = pb.AddRequest.FromString(data).SerializeToString()
    ours = protowire.decode(m.AddRequest, data, m.SCHEMA)
    assert ours == protowire.decode(m.AddRequest, theirs, m.SCHEMA)
    assert ours.attachment == m.Attachment(container_id="c")


def test_strings_must_be_utf8() -> None:
    with pytest.raises(protowire.WireError, match="UTF-8"):
        protowire.decode(m.StatusReply, b"\x12\x01\xff", m.SCHEMA)
