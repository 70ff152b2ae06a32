"""A leader that stops on purpose (a rolling update, a drain) hands its BGP routes over.

Closing ExaBGP leaves the routes at every peer, stale, for their graceful-restart time, and
the replica that replaces this one may start on another node (another source address), so
nothing would drop them early: a pod released meanwhile would stay routed for minutes. So the
stopping leader keeps its sessions and its routes until the next leader says, on the Lease,
that its own routes are out (:data:`ANNOTATION_BGP_SPEAKER` naming the holder), then withdraws
everything and closes. The peers switch to the new leader's paths without a gap. When nobody
takes the Lease soon, or the new leader does not get its routes out in time, the old leader
closes as it did before (graceful restart keeps the routes for the next one).
"""

from __future__ import annotations

import dataclasses

from hybridnet.api.builtin import Lease
from hybridnet.store.errors import StoreError
from hybridnet.store.interface import Store

ANNOTATION_BGP_SPEAKER = "networking.alibaba.com/bgp-speaker"
"""On the manager's Lease: the identity of the leader whose BGP routes are all out."""


@dataclasses.dataclass(frozen=True)
class Successor:
    """What the Lease says of the replica after this one."""

    holder: str
    """Who holds the Lease now ('' while nobody does, or when it cannot be read)."""
    speaking: bool
    """The holder has written that its routes are out."""


class LeaseSuccessor:
    """Reads the manager's Lease to see who took over from ``identity``."""

    def __init__(self, store: Store, namespace: str, name: str, identity: str):
        self._store = store
        self._namespace = namespace
        self._name = name
        self._identity = identity

    def __call__(self) -> Successor:
        try:
            lease = self._store.get(Lease, self._name, self._namespace)
        except StoreError:
            return Successor("", False)
        holder = str((lease.body.get("spec") or {}).get("holderIdentity") or "")
        if holder == self._identity:
            return Successor("", False)
        speaker = lease.metadata.annotations.get(ANNOTATION_BGP_SPEAKER)
        return Successor(holder, bool(holder) and speaker == holder)
