"""The difference between desired and observed state, as ordered operations. Pure.

Observed objects are only ever ours (``observe`` reads only what carries our marks), so only
they can be deleted. Objects with the same key but different attributes are updated in place
when the kernel allows (``KernelObject.updatable_to``), otherwise deleted and created again.
A deleted link takes every object on it along in the kernel: the plan schedules no delete for
those, and creates again whatever of them is still desired.

Order: every delete first, children before parents (packet filter, rules, routes,
neighbours, FDB entries, then links), then creates and updates, parents before children
(links, sysctls, FDB entries, neighbours, routes, rules, packet filter). Within a kind,
desired order for creates, kernel order for deletes.
"""

from __future__ import annotations

import collections
import dataclasses
import enum
from collections.abc import Hashable, Iterable

from hybridnet.daemon.datapath.model import CREATE_ORDER, DELETE_ORDER, KernelObject, Kind, Link


class Action(enum.StrEnum):
    CREATE = "create"
    UPDATE = "update"
    DELETE = "delete"


@dataclasses.dataclass(frozen=True)
class Operation:
    action: Action
    target: KernelObject
    """The object to create, the new version to update to, or the object to delete."""
    current: KernelObject | None = None
    """For an update: the object as the kernel has it."""

    def describe(self) -> str:
        return f"{self.action} {self.target.describe()}"

    def changes(self) -> str:
        """For an update, what the kernel holds differently: ``up False (wanted True)``."""
        if self.current is None:
            return ""
        summary = self.target.changes_from(self.current)
        if summary is not None:
            return summary
        differing = [
            f"{field.name} {getattr(self.current, field.name)} "
            f"(wanted {getattr(self.target, field.name)})"
            for field in dataclasses.fields(self.target)
            if getattr(self.current, field.name, None) != getattr(self.target, field.name)
        ]
        return ", ".join(differing)


@dataclasses.dataclass(frozen=True)
class Plan:
    operations: tuple[Operation, ...]

    @property
    def empty(self) -> bool:
        return not self.operations

    def counts(self) -> dict[tuple[Kind, Action], int]:
        """How many operations of each kind and action."""
        return dict(collections.Counter((op.target.kind, op.action) for op in self.operations))


def plan(desired: Iterable[KernelObject], observed: Iterable[KernelObject]) -> Plan:
    want, have = _by_key(desired), _by_key(observed)
    diff = _Diff()
    vanishing = diff.links(want, have)
    diff.others(want, have, vanishing)
    for key, wanted in want.items():
        found = have.get(key)
        if found is None or (found.kind is not Kind.LINK and vanishing.intersection(found.links)):
            diff.changes.append(Operation(Action.CREATE, wanted))
    return Plan(_ordered(diff.deletes, DELETE_ORDER) + _ordered(diff.changes, CREATE_ORDER))


@dataclasses.dataclass
class _Diff:
    deletes: list[Operation] = dataclasses.field(default_factory=list)
    changes: list[Operation] = dataclasses.field(default_factory=list)

    def replace_or_update(self, current: KernelObject, wanted: KernelObject) -> bool:
        """Schedule turning ``current`` into ``wanted``; True when that deletes it."""
        if current.updatable_to(wanted):
            self.changes.append(Operation(Action.UPDATE, wanted, current))
            return False
        self.deletes.append(Operation(Action.DELETE, current))
        self.changes.append(Operation(Action.CREATE, wanted))
        return True

    def links(
        self, want: dict[Hashable, KernelObject], have: dict[Hashable, KernelObject]
    ) -> set[str]:
        """Diff the links; returns the names of those this plan deletes (or replaces)."""
        vanishing = set()
        for key, current in have.items():
            if not isinstance(current, Link):
                continue
            wanted = want.get(key)
            if wanted is None:
                self.deletes.append(Operation(Action.DELETE, current))
                vanishing.add(current.name)
            elif wanted != current and self.replace_or_update(current, wanted):
                vanishing.add(current.name)
        return vanishing

    def others(
        self,
        want: dict[Hashable, KernelObject],
        have: dict[Hashable, KernelObject],
        vanishing: set[str],
    ) -> None:
        """Diff everything but links; what lives on a vanishing link goes with it."""
        for key, current in have.items():
            if current.kind is Kind.LINK or vanishing.intersection(current.links):
                continue
            wanted = want.get(key)
            if wanted is None:
                if current.kind is not Kind.SYSCTL:
                    self.deletes.append(Operation(Action.DELETE, current))
            elif wanted != current:
                self.replace_or_update(current, wanted)


def _by_key(objects: Iterable[KernelObject]) -> dict[Hashable, KernelObject]:
    found: dict[Hashable, KernelObject] = {}
    for obj in objects:
        found.setdefault(obj.key, obj)
    return found


def _ordered(operations: list[Operation], order: tuple[Kind, ...]) -> tuple[Operation, ...]:
    rank = {kind: position for position, kind in enumerate(order)}
    return tuple(sorted(operations, key=lambda op: rank[op.target.kind]))
