"""How read commands print: a table (``table``, or ``wide`` with more columns) for people, JSON
or YAML of the same records for programs.

A command builds records (plain dicts with the API's lowerCamelCase keys) and says which of
their values its table shows; JSON and YAML carry every key of every record, so nothing a table
leaves out is lost to a script. A list prints a JSON array (a YAML sequence), a single object
an object.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal

from hybridnet.ctl import yamltext

Format = Literal["table", "wide", "json", "yaml"]
FORMATS: tuple[Format, ...] = ("table", "wide", "json", "yaml")
Record = dict[str, Any]


@dataclasses.dataclass(frozen=True)
class Column:
    header: str
    value: Callable[[Record], Any]
    wide: bool = False
    """Shown only with ``-o wide``."""


def cell(value: Any) -> str:
    """One table cell: ``-`` for nothing, lists joined by commas."""
    if value is None or value in ("", [], {}):
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, Mapping):
        return ",".join(f"{k}={v}" for k, v in value.items())
    if isinstance(value, list | tuple):
        return ",".join(cell(v) for v in value)
    return str(value)


def table(records: Sequence[Record], columns: Sequence[Column], *, wide: bool = False) -> str:
    """Columns separated by at least two spaces, headers in capitals, as kubectl prints."""
    chosen = [c for c in columns if wide or not c.wide]
    rows = [[c.header.upper() for c in chosen]]
    rows += [[cell(c.value(record)) for c in chosen] for record in records]
    widths = [max(len(row[i]) for row in rows) for i in range(len(chosen))]
    lines = ["  ".join(text.ljust(width) for text, width in zip(row, widths, strict=True)).rstrip()
             for row in rows]  # fmt: skip
    return "\n".join(lines) + "\n"


def render(
    data: Sequence[Record] | Record,
    columns: Sequence[Column],
    fmt: Format,
) -> str:
    """``data`` (a list of records, or one) in the chosen format."""
    if fmt == "json":
        return json.dumps(data, indent=2) + "\n"
    if fmt == "yaml":
        return yamltext.dump(data)
    records = [data] if isinstance(data, Mapping) else list(data)
    return table(records, columns, wide=fmt == "wide")


def percent(used: int, total: int) -> float:
    """Share of ``total`` in use, in percent with one decimal (0 for an empty range)."""
    return round(100.0 * used / total, 1) if total else 0.0
