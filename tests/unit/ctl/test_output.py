"""Output: tables as kubectl prints them, JSON and YAML that parse back to the records."""

from __future__ import annotations

import json
from typing import Any

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from hybridnet.ctl.output import Column, cell, percent, render, table
from hybridnet.ctl.yamltext import dump

COLUMNS = [Column("name", lambda r: r["name"]), Column("cidr", lambda r: r["cidr"]),
           Column("extra", lambda r: r.get("extra"), wide=True)]  # fmt: skip
RECORDS: list[dict[str, Any]] = [{"name": "a", "cidr": "198.19.0.0/24", "extra": ["x", "y"]},
           {"name": "long-name", "cidr": None, "extra": {"k": "v"}}]  # fmt: skip


def test_table_aligns_columns_and_hides_wide_ones() -> None:
    assert table(RECORDS, COLUMNS) == (
        "NAME       CIDR\n"
        "a          198.19.0.0/24\n"
        "long-name  -\n"
    )  # fmt: skip
    assert table(RECORDS, COLUMNS, wide=True).splitlines()[1:] == [
        "a          198.19.0.0/24  x,y",
        "long-name  -              k=v",
    ]


def test_cells() -> None:
    values: tuple[Any, ...] = (None, "", [], True, False, 3, 0.5)
    assert [cell(v) for v in values] == [
        "-", "-", "-", "yes", "no", "3", "0.5"
    ]  # fmt: skip
    assert percent(1, 3) == 33.3 and percent(0, 0) == 0.0


@pytest.mark.parametrize("fmt", ["json", "yaml"])
def test_machine_formats_carry_every_field(fmt: str) -> None:
    text = render(RECORDS, COLUMNS, fmt)  # type: ignore[arg-type]
    parsed = json.loads(text) if fmt == "json" else yaml.safe_load(text)
    assert parsed == RECORDS
    one = render(RECORDS[0], COLUMNS, fmt)  # type: ignore[arg-type]
    assert (json.loads(one) if fmt == "json" else yaml.safe_load(one)) == RECORDS[0]


TRICKY = ["yes", "No", "null", "~", "", " lead", "a: b", "#x", "- x", "1e3", "0x1f", "2001:db8::",
          "198.19.0.0/24", "line\nbreak", 'quote"', "é", "[x]", "{x}", "*a", "&a", "!t", "%p",
          "@x", "`x`", "x #y", "True", "on", "name\n"]  # fmt: skip

scalars = st.one_of(
    st.none(), st.booleans(), st.integers(), st.text(), st.sampled_from(TRICKY),
    st.floats(allow_nan=False, allow_infinity=False),
)  # fmt: skip
documents = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)


@given(documents)
def test_yaml_reads_back_as_written(document: Any) -> None:
    assert yaml.safe_load(dump(document)) == document


def test_yaml_quotes_a_string_that_ends_in_a_line_break() -> None:
    """Written plain, a key or value's last line break would be lost (or break the document)."""
    assert dump({"name\n": "value\n"}) == '"name\\n": "value\\n"\n'
