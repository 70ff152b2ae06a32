"""nft's JSON listing of a rule, read back into nft's own syntax. Pure.

The renderer (hybridnet.policy.render) writes rules as text; nft lists them as JSON. What the
daemon wrote in this process it recognises exactly (policy_table.KernelForms); a table written
before a restart is read through :func:`rule_text` instead, which covers the few statement
forms the renderer uses (matches on ct state, addresses, sets and concatenations; counter,
drop, return, accept, jump; a comment). Both sides are compared as :func:`canonical` text,
which orders the elements of anonymous sets (nft lists them in its own order). A form it does
not know reads as None: the chain then counts as changed and is written again, which is only
ever a refill, never a wrong verdict.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Iterable, Mapping
from typing import Any

from hybridnet.policy import render
from hybridnet.policy.model import Direction

_ANONYMOUS_SET = re.compile(r"\{ ([^{}]*) \}")
UNQUALIFIED_META = frozenset({"iifname", "oifname", "iif", "oif", "mark"})
"""Meta keys nft's syntax (and so the renderer) writes without ``meta``."""


def canonical(rule: str) -> str:
    """The rule with each anonymous set's elements sorted."""
    return _ANONYMOUS_SET.sub(
        lambda m: "{ " + ", ".join(sorted(m.group(1).split(", "))) + " }", rule
    )


def canonical_rules(rules: Iterable[str]) -> tuple[str, ...]:
    return tuple(canonical(r) for r in rules)


@functools.cache
def base_rules() -> tuple[str, ...]:
    """The base chain's rules as the renderer writes them (read off an empty table's
    script: the renderer keeps them fixed)."""
    empty = render.Ruleset(render.DEFAULT_TABLE, (), {d: frozenset() for d in Direction}, (), ())
    lines = render.full_script(empty).splitlines()
    start = lines.index(f"\tchain {render.BASE_CHAIN} {{")
    body = []
    for line in lines[start + 2 :]:  # after the hook declaration
        if line == "\t}":
            break
        body.append(line.strip())
    return tuple(body)


def rule_text(body: Mapping[str, Any]) -> str | None:
    """One listed rule (``{"expr": [...], "comment": ...}``) as canonical text; None for a
    form the renderer does not write."""
    try:
        parts = [_statement(expr) for expr in body.get("expr") or []]
    except _Unknown:
        return None
    comment = body.get("comment")
    if isinstance(comment, str):
        parts.append(f"comment {json.dumps(comment)}")
    return canonical(" ".join(parts))


class _Unknown(ValueError):
    pass


def _statement(expr: Mapping[str, Any]) -> str:
    if not isinstance(expr, Mapping) or len(expr) != 1:
        raise _Unknown(str(expr))
    ((key, value),) = expr.items()
    if key == "match":
        return _match(value)
    if key == "counter":
        return f"counter name {json.dumps(value)}" if isinstance(value, str) else "counter"
    if key in ("drop", "return", "accept") and value is None:
        return key
    if key == "jump" and isinstance(value, Mapping):
        return f"jump {value['target']}"
    if key == "vmap" and isinstance(value, Mapping):
        return f"{_left(value['key'])} vmap {_right(value['data'])}"
    raise _Unknown(key)


def _match(value: Mapping[str, Any]) -> str:
    op = value.get("op")
    left, right = _left(value["left"]), _right(value["right"])
    if op in ("==", "in"):
        return f"{left} {right}"
    if op == "!=":
        return f"{left} != {right}"
    raise _Unknown(str(op))


def _left(value: Any) -> str:
    if isinstance(value, Mapping) and len(value) == 1:
        ((key, body),) = value.items()
        if key == "payload":
            return f"{body['protocol']} {body['field']}"
        if key == "meta" and body["key"] in UNQUALIFIED_META:
            return str(body["key"])
        if key in ("meta", "ct"):
            return f"{key} {body['key']}"
        if key == "concat":
            return " . ".join(_left(part) for part in body)
    raise _Unknown(str(value))


def _right(value: Any) -> str:
    if isinstance(value, str | int) and not isinstance(value, bool):
        return str(value)
    if isinstance(value, list):
        return ",".join(_right(v) for v in value)  # ct state flags
    if isinstance(value, Mapping) and len(value) == 1:
        ((key, body),) = value.items()
        if key == "set":
            items = body if isinstance(body, list) else [body]
            return "{ " + ", ".join(_right(item) for item in items) + " }"
        if key == "concat":
            return " . ".join(_right(part) for part in body)
        if key == "range":
            return f"{_right(body[0])}-{_right(body[1])}"
        if key == "prefix":
            return f"{body['addr']}/{body['len']}"
    raise _Unknown(str(value))
