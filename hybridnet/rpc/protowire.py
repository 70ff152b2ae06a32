"""The protobuf (proto3) wire format for the plugin's light message classes.

The plugin is exec'd once per CNI call; importing the protobuf runtime and building the
generated descriptors costs more than the rest of its start-up together. The daemon API uses four
field kinds (string, uint32, int32, bool), singular or repeated, and nested messages; this module
encodes and decodes exactly those, following the proto3 rules: default scalars are not written,
unknown fields (and known ones of another wire type) are skipped, a scalar seen twice keeps the
last value, a message seen twice is merged. ``tests/unit/rpc`` checks it byte for byte against
the generated code.
"""

from __future__ import annotations

from typing import Any, NamedTuple

STRING = "string"
UINT32 = "uint32"
INT32 = "int32"
BOOL = "bool"

_VARINT = 0
_FIXED64 = 1
_LENGTH_DELIMITED = 2
_START_GROUP = 3
_END_GROUP = 4
_FIXED32 = 5
MAX_GROUP_DEPTH = 100
"""Groups nested in groups that are skipped; protobuf's own parsers stop at 100 too."""


class Field(NamedTuple):
    number: int
    name: str
    kind: Any
    """One of the scalar kinds above, or a message class (which must be in the schema)."""
    repeated: bool = False


Schema = dict[type, tuple[Field, ...]]


class WireError(Exception):
    """Bytes that are not a valid encoding of the expected message."""


def encode(message: Any, schema: Schema) -> bytes:
    out = bytearray()
    _encode_into(out, message, schema)
    return bytes(out)


def _encode_into(out: bytearray, message: Any, schema: Schema) -> None:
    for field in schema[type(message)]:
        value = getattr(message, field.name)
        if field.repeated:
            for item in value:
                _encode_field(out, field, item, schema)
        elif value is not None and value != _default(field.kind):
            _encode_field(out, field, value, schema)


def _default(kind: Any) -> object:
    """proto3 does not write a scalar holding its default; a message has none (None = unset)."""
    return {STRING: "", UINT32: 0, INT32: 0, BOOL: False}.get(kind)


def _encode_field(out: bytearray, field: Field, value: Any, schema: Schema) -> None:
    if field.kind == STRING:
        raw = value.encode()
        _varint(out, field.number << 3 | _LENGTH_DELIMITED)
        _varint(out, len(raw))
        out += raw
    elif field.kind in (UINT32, INT32, BOOL):
        _varint(out, field.number << 3 | _VARINT)
        _varint(out, int(value) & 0xFFFFFFFFFFFFFFFF)  # negative int32: ten-byte two's complement
    else:
        nested = encode(value, schema)
        _varint(out, field.number << 3 | _LENGTH_DELIMITED)
        _varint(out, len(nested))
        out += nested


def _varint(out: bytearray, value: int) -> None:
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)


def decode(cls: type, data: bytes, schema: Schema) -> Any:
    fields = {field.number: field for field in schema[cls]}
    values: dict[str, Any] = {}
    nested_raw: dict[str, bytes] = {}
    at = 0
    while at < len(data):
        tag, at = _read_varint(data, at)
        field = fields.get(tag >> 3)
        if field is None or tag & 7 != _wire_type(field.kind):
            at = _skip(data, at, tag)  # unknown, or known with another type: protobuf skips it
            continue
        raw, at = _read_value(data, at, f"{cls.__name__}.{field.name}", field.kind)
        if isinstance(raw, int):
            value: Any = _scalar(field.kind, raw)
        elif field.kind == STRING:
            value = _text(raw, f"{cls.__name__}.{field.name}")
        elif not field.repeated:
            nested_raw[field.name] = nested_raw.get(field.name, b"") + raw  # merge
            continue
        else:
            value = decode(field.kind, raw, schema)
        if field.repeated:
            values.setdefault(field.name, []).append(value)
        else:
            values[field.name] = value
    for field in schema[cls]:
        if field.repeated and field.name in values:
            values[field.name] = tuple(values[field.name])
        if field.name in nested_raw:
            values[field.name] = decode(field.kind, nested_raw[field.name], schema)
    return cls(**values)


def _wire_type(kind: Any) -> int:
    return _VARINT if kind in (UINT32, INT32, BOOL) else _LENGTH_DELIMITED


def _read_value(data: bytes, at: int, where: str, kind: Any) -> tuple[Any, int]:
    """A varint (int) for the scalar kinds, the bytes of a length-delimited value otherwise."""
    if _wire_type(kind) == _VARINT:
        return _read_varint(data, at)
    length, at = _read_varint(data, at)
    if at + length > len(data):
        raise WireError(f"{where} runs past the message")
    return data[at : at + length], at + length


def _scalar(kind: str, raw: int) -> int | bool:
    if kind == BOOL:
        return raw != 0
    value = raw & 0xFFFFFFFF
    if kind == INT32 and value & 0x80000000:
        return value - (1 << 32)
    return value


def _text(chunk: bytes, where: str) -> str:
    try:
        return chunk.decode()
    except UnicodeDecodeError:
        raise WireError(f"{where} is not UTF-8") from None


def _read_varint(data: bytes, at: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if at >= len(data):
            raise WireError("message ends inside a varint")
        byte = data[at]
        at += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, at
        shift += 7
        if shift >= 70:
            raise WireError("varint longer than ten bytes")


def _skip(data: bytes, at: int, tag: int) -> int:
    """Past the value of ``tag``, a field this schema does not read. Groups (proto2) are
    skipped up to their matching end, groups inside them too, without recursing: a peer could
    nest thousands in a few kilobytes."""
    open_groups: list[int] = []  # field numbers, innermost last
    while True:
        wire_type = tag & 7
        if wire_type == _START_GROUP:
            if len(open_groups) == MAX_GROUP_DEPTH:
                raise WireError(f"groups nested deeper than {MAX_GROUP_DEPTH}")
            open_groups.append(tag >> 3)
        elif wire_type == _END_GROUP and open_groups and open_groups[-1] == tag >> 3:
            open_groups.pop()
        else:
            at = _skip_value(data, at, wire_type)
        if not open_groups:
            return at
        if at >= len(data):
            raise WireError("group without its end")
        tag, at = _read_varint(data, at)


def _skip_value(data: bytes, at: int, wire_type: int) -> int:
    """Past one value that is not a group."""
    if wire_type == _VARINT:
        return _read_varint(data, at)[1]
    if wire_type == _FIXED64:
        end = at + 8
    elif wire_type == _FIXED32:
        end = at + 4
    elif wire_type == _LENGTH_DELIMITED:
        length, at = _read_varint(data, at)
        end = at + length
    else:  # an end of group that no group opened, or no wire type at all (6, 7)
        raise WireError(f"unexpected wire type {wire_type}")
    if end > len(data):
        raise WireError("unknown field runs past the message")
    return end
