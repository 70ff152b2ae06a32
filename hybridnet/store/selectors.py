"""Kubernetes label selectors (equality- and set-based), parsed once and matched in memory."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping

_KEY = r"[A-Za-z0-9]([-A-Za-z0-9_./]*[A-Za-z0-9])?"
_VALUE = r"([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)?"
_REQUIREMENT = re.compile(
    rf"^\s*(?:(?P<not>!)\s*(?P<absent>{_KEY})"
    rf"|(?P<key>{_KEY})\s*(?:(?P<op>==|=|!=)\s*(?P<value>{_VALUE})"
    rf"|\s+(?P<setop>in|notin)\s*\((?P<values>[^)]*)\))?)\s*$"
)


class SelectorError(ValueError):
    """The selector text is not a valid label selector."""


@dataclasses.dataclass(frozen=True)
class Requirement:
    key: str
    operator: str  # "in", "notin", "exists", "!exists"
    values: frozenset[str] = frozenset()

    def matches(self, labels: Mapping[str, str]) -> bool:
        if self.operator == "exists":
            return self.key in labels
        if self.operator == "!exists":
            return self.key not in labels
        if self.operator == "in":
            return labels.get(self.key) in self.values
        return labels.get(self.key) not in self.values


@dataclasses.dataclass(frozen=True)
class Selector:
    requirements: tuple[Requirement, ...] = ()

    def matches(self, labels: Mapping[str, str]) -> bool:
        return all(r.matches(labels) for r in self.requirements)


def _split_top_level(text: str) -> list[str]:
    parts, depth, current = [], 0, ""
    for char in text:
        depth += {"(": 1, ")": -1}.get(char, 0)
        if char == "," and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += char
    parts.append(current)
    return parts


def parse(text: str | None) -> Selector:
    """Parse ``a=b,c!=d,e in (x,y),!f``; an empty or None selector matches everything."""
    if not text or not text.strip():
        return Selector()
    requirements = []
    for part in _split_top_level(text):
        match = _REQUIREMENT.match(part)
        if not match:
            raise SelectorError(f"invalid label selector requirement {part.strip()!r} in {text!r}")
        if match["absent"]:
            requirements.append(Requirement(match["absent"], "!exists"))
        elif match["op"]:
            operator = "notin" if match["op"] == "!=" else "in"
            requirements.append(Requirement(match["key"], operator, frozenset([match["value"]])))
        elif match["setop"]:
            values = frozenset(v.strip() for v in match["values"].split(",") if v.strip())
            requirements.append(Requirement(match["key"], match["setop"], values))
        else:
            requirements.append(Requirement(match["key"], "exists"))
    return Selector(tuple(requirements))


def from_labels(labels: Mapping[str, str]) -> str:
    """The equality selector text that matches exactly these labels."""
    return ",".join(f"{k}={v}" for k, v in sorted(labels.items()))
