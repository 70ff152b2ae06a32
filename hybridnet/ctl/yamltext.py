"""Plain data (what ``json`` would write) as block-style YAML, for ``-o yaml``.

The package does not depend on a YAML library, and output needs only the simplest part of the
language: mappings, sequences and scalars. A string is written plain only when YAML cannot read
it as anything else (a number, a boolean, null, an address such as ``198.19.0.0/24``); every
other string is double-quoted with JSON's escapes, which YAML's double-quoted style shares.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

_PLAIN = re.compile(r"^[A-Za-z_][A-Za-z0-9_./-]*$")
_RESERVED = {"true", "false", "yes", "no", "on", "off", "null", "y", "n"}


def scalar(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return json.dumps(value)
    text = str(value)
    if _PLAIN.match(text) and text.lower() not in _RESERVED:
        return text
    return json.dumps(text)


def _is_collection(value: Any) -> bool:
    return isinstance(value, Mapping) or (
        isinstance(value, Sequence) and not isinstance(value, str | bytes)
    )


def _inline(value: Any) -> str:
    """A scalar, or the flow form of an empty collection."""
    if isinstance(value, Mapping):
        return "{}"
    if _is_collection(value):
        return "[]"
    return scalar(value)


def _lines(value: Any, indent: int) -> list[str]:
    """A non-empty collection's lines, each indented by ``indent`` spaces or more."""
    pad = " " * indent
    out: list[str] = []
    if isinstance(value, Mapping):
        for key, item in value.items():
            if _is_collection(item) and item:
                out.append(f"{pad}{scalar(str(key))}:")
                out.extend(_lines(item, indent + 2))
            else:
                out.append(f"{pad}{scalar(str(key))}: {_inline(item)}")
        return out
    for item in value:
        if _is_collection(item) and item:
            nested = _lines(item, indent + 2)
            out.append(f"{pad}- {nested[0][indent + 2 :]}")
            out.extend(nested[1:])
        else:
            out.append(f"{pad}- {_inline(item)}")
    return out


def dump(value: Any) -> str:
    """``value`` as a YAML document (ending in a newline)."""
    if _is_collection(value) and value:
        return "\n".join(_lines(value, 0)) + "\n"
    return _inline(value) + "\n"
