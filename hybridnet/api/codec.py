"""Dataclasses <-> the API's JSON, driven by type hints, so every model converts the same way.

A field's JSON name is its ``json`` metadata when given (``netID``, ``reservedIPs``) and the
lowerCamelCase of its Python name otherwise. ``None`` is never written. Decoding checks every
value's type and reports the offending field's path (``spec.range.cidr``) so a user's YAML
mistake reads like the API server's own messages. Unknown fields are ignored on decode: the API
server prunes them, and a newer writer must not break an older reader.
"""

from __future__ import annotations

import dataclasses
import functools
import types
import typing
from collections.abc import Mapping
from typing import Any, TypeVar, Union, get_args, get_origin

T = TypeVar("T")


class DecodeError(ValueError):
    """A JSON value does not fit the model; ``path`` names the field."""

    def __init__(self, path: str, message: str):
        super().__init__(f"{path or '<root>'}: {message}")
        self.path = path
        self.message = message


def json_name(field: dataclasses.Field[Any]) -> str:
    explicit = field.metadata.get("json")
    if explicit:
        return str(explicit)
    head, *rest = field.name.split("_")
    return head + "".join(part.capitalize() for part in rest)


@functools.cache
def field_types(cls: type) -> dict[str, Any]:
    """Resolved type hints of a dataclass (cached: decoding runs on every watch event)."""
    return typing.get_type_hints(cls)


def codec_fields(cls: type) -> list[tuple[dataclasses.Field[Any], str, Any]]:
    """(field, JSON name, type) for every serialised field of a dataclass."""
    hints = field_types(cls)
    return [
        (f, json_name(f), hints[f.name])
        for f in dataclasses.fields(cls)
        if not f.metadata.get("skip", False)
    ]


def encode(value: Any) -> Any:
    """A dataclass tree to plain JSON-ready data."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        out: dict[str, Any] = {}
        extra = getattr(value, "extra", None)
        if isinstance(extra, Mapping):
            out.update(extra)
        for field, name, _ in codec_fields(type(value)):
            item = getattr(value, field.name)
            if item is not None:
                out[name] = encode(item)
        return out
    if isinstance(value, list | tuple):
        return [encode(v) for v in value]
    if isinstance(value, dict):
        return {k: encode(v) for k, v in value.items()}
    return value


def decode(cls: type[T], data: Any, path: str = "") -> T:
    """Plain JSON data to an instance of the dataclass ``cls``; raises DecodeError."""
    result: T = _decode_value(cls, data, path)
    return result


def _decode_value(hint: Any, data: Any, path: str) -> Any:
    origin = get_origin(hint)
    if origin in (Union, types.UnionType):
        options = [a for a in get_args(hint) if a is not type(None)]
        if data is None:
            return None
        return _decode_value(options[0], data, path)
    if hint is Any:
        return data
    if origin is list:
        if not isinstance(data, list):
            raise DecodeError(path, f"must be a list, not {_kind(data)}")
        (item,) = get_args(hint)
        return [_decode_value(item, v, f"{path}[{i}]") for i, v in enumerate(data)]
    if origin is dict:
        if not isinstance(data, dict):
            raise DecodeError(path, f"must be an object, not {_kind(data)}")
        _, item = get_args(hint)
        return {str(k): _decode_value(item, v, f"{path}.{k}") for k, v in data.items()}
    if dataclasses.is_dataclass(hint) and isinstance(hint, type):
        return _decode_dataclass(hint, data, path)
    return _decode_scalar(hint, data, path)


def _decode_dataclass(cls: type, data: Any, path: str) -> Any:
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise DecodeError(path, f"must be an object, not {_kind(data)}")
    kwargs: dict[str, Any] = {}
    known = set()
    for field, name, hint in codec_fields(cls):
        known.add(name)
        if name in data:
            kwargs[field.name] = _decode_value(hint, data[name], f"{path}.{name}".lstrip("."))
    if "extra" in {f.name for f in dataclasses.fields(cls)}:
        kwargs["extra"] = {k: v for k, v in data.items() if k not in known}
    try:
        return cls(**kwargs)
    except TypeError as exc:  # a required field is missing
        missing = [
            name
            for field, name, _ in codec_fields(cls)
            if field.default is dataclasses.MISSING
            and field.default_factory is dataclasses.MISSING
            and field.name not in kwargs
        ]
        where = f"{path}.{missing[0]}".lstrip(".") if missing else path
        raise DecodeError(where, "is required") from exc


def _decode_scalar(hint: Any, data: Any, path: str) -> Any:
    if hint is bool:
        if not isinstance(data, bool):
            raise DecodeError(path, f"must be true or false, not {_kind(data)}")
        return data
    if hint is int:
        if isinstance(data, bool) or not isinstance(data, int):
            if isinstance(data, float) and data.is_integer():
                return int(data)
            raise DecodeError(path, f"must be an integer, not {_kind(data)}")
        return data
    if hint is float:
        if isinstance(data, bool) or not isinstance(data, int | float):
            raise DecodeError(path, f"must be a number, not {_kind(data)}")
        return float(data)
    if hint is str:
        if not isinstance(data, str):
            raise DecodeError(path, f"must be a string, not {_kind(data)}")
        return data
    raise TypeError(f"codec: unsupported type {hint!r} at {path}")


def _kind(data: Any) -> str:
    if data is None:
        return "null"
    return {bool: "a boolean", int: "an integer", float: "a number", str: "a string"}.get(
        type(data), "a list" if isinstance(data, list) else "an object"
    )
