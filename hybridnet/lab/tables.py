"""Plain-text tables for the lab's reports (``cluster status``, ``make demo``)."""

from __future__ import annotations

from collections.abc import Sequence


def render(title: str, headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """``title`` over left-aligned columns as wide as their widest cell; "(none)" when empty."""
    widths = [len(h) for h in headers]
    for row in rows:
        if len(row) != len(headers):
            raise ValueError(f"row {row!r} has {len(row)} cells for {len(headers)} columns")
        widths = [max(w, len(cell)) for w, cell in zip(widths, row, strict=True)]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)).rstrip()

    body = [line(row) for row in rows] or ["(none)"]
    return "\n".join([title, line(headers), *body])
