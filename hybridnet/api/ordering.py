"""Which of several objects wins when only one may: the oldest, everywhere.

The webhook, the manager's IPAM and every daemon's datapath each pick "the" Overlay network,
"the" Underlay network of a node, a GlobalBGP pod's BGP network. When validation was bypassed
and several qualify, they must all pick the same one (a pod allocated from one overlay network
and routed as if in another reaches nothing), and the oldest is the one that served first, so
a newcomer never takes over running pods.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TypeVar

from hybridnet.api.meta import Resource

T = TypeVar("T", bound=Resource)


def age_key(obj: Resource) -> tuple[str, str]:
    """Oldest first (RFC 3339 timestamps sort as text); without a timestamp last; then name."""
    return (obj.metadata.creation_timestamp or "~", obj.metadata.name)


def oldest_first(objects: Iterable[T]) -> list[T]:
    return sorted(objects, key=age_key)
