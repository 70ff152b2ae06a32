"""Plain data (what ``json`` would write) as block-style YAML, for ``-o yaml``.

The package does not depend on a YAML library, and output needs only the simplest part of the
language: mappings, sequences and scalars. A string is written plain only when YAML cannot read
it as anything else (a number, a boolean, null, an address such as ``198.19.0.0/24``); every
other string is double-quoted, with escapes for what is not printable.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

_PLAIN = re.compile(r"[A-Za-z_][A-Za-z0-9_./-]*")
_RESERVED = {"true", "false", "yes", "no", "on", "off", "null", "y", "n"}


def scalar(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return json.dumps(value)
    if isinstance(value, float):
        return _float(value)
    text = str(value)
    if _PLAIN.fullmatch(text) and text.lower() not in _RESERVED:  # ($ would allow a last \n)
        return text
    return quoted(text)


def _float(value: float) -> str:
    """YAML 1.1 (what most readers speak) reads ``1e-05`` as a string: its floats need a dot
    before the exponent (``1.0e-05``)."""
    if math.isnan(value):
        return ".nan"
    if math.isinf(value):
        return ".inf" if value > 0 else "-.inf"
    text = repr(value)
    mantissa, exponent, power = text.partition("e")
    if exponent and "." not in mantissa:
        text = f"{mantissa}.0e{power}"
    return text


_ESCAPES = {"\\": "\\\\", '"': '\\"', "\n": "\\n", "\t": "\\t", "\r": "\\r"}


def _printable(char: str) -> bool:
    """YAML's printable set, less the characters it reads as line breaks or a BOM."""
    code = ord(char)
    return (
        0x20 <= code <= 0x7E
        or 0xA0 <= code <= 0xD7FF
        or (0xE000 <= code <= 0xFFFD and code != 0xFEFF)
        or code >= 0x10000
    ) and char not in "\u2028\u2029"


def quoted(text: str) -> str:
    """A double-quoted YAML scalar: every character that is not printable escaped."""
    out = []
    for char in text:
        if char in _ESCAPES:
            out.append(_ESCAPES[char])
        elif _printable(char):
            out.append(char)
        elif ord(char) < 0x100:
            out.append(f"\\x{ord(char):02x}")
        elif ord(char) < 0x10000:
            out.append(f"\\u{ord(char):04x}")
        else:
            out.append(f"\\U{ord(char):08x}")
    return '"' + "".join(out) + '"'


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
