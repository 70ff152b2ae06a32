"""Node labels the scheduler and the webhook rely on, kept current by the leader.

* ``underlay-network-attachment: "true"`` on nodes an Underlay network selects, and
  ``overlay-network-attachment: "true"`` on every node while an Overlay network exists;
* ``ipv4-address-quota`` / ``ipv6-address-quota`` / ``dualstack-address-quota``:
  ``nonempty`` while the node's Underlay network still has free addresses of that family, so
  the webhook's node selector keeps new underlay pods off nodes whose network is full.

Labels of ours that no longer apply are removed; every other label is left alone.
"""

from __future__ import annotations

import contextlib
import logging

from hybridnet.api import constants as c
from hybridnet.api.builtin import Node
from hybridnet.api.resources import Network
from hybridnet.ipamcore.allocator import Allocator
from hybridnet.logs import fields
from hybridnet.manager.periodic import Periodic
from hybridnet.store.errors import Conflict, NotFound, StoreError
from hybridnet.store.interface import Store

log = logging.getLogger(__name__)

OWNED_LABELS = (
    c.LABEL_UNDERLAY_ATTACHMENT,
    c.LABEL_OVERLAY_ATTACHMENT,
    c.LABEL_IPV4_QUOTA,
    c.LABEL_IPV6_QUOTA,
    c.LABEL_DUALSTACK_QUOTA,
)


def _selects(network: Network, labels: dict[str, str]) -> bool:
    selector = network.spec.node_selector
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def desired_labels(node: Node, networks: list[Network], allocator: Allocator) -> dict[str, str]:
    """Our labels for ``node``, computed from the networks and the allocator's counters."""
    wanted: dict[str, str] = {}
    if any(n.spec.type == c.TYPE_OVERLAY for n in networks):
        wanted[c.LABEL_OVERLAY_ATTACHMENT] = "true"
    attached = sorted(
        (
            n
            for n in networks
            if n.spec.type == c.TYPE_UNDERLAY and _selects(n, node.metadata.labels)
        ),
        key=lambda n: n.name,
    )
    if not attached:
        return wanted
    wanted[c.LABEL_UNDERLAY_ATTACHMENT] = "true"
    free = {4: 0, 6: 0}
    for subnet in allocator.subnets_of(attached[0].name):
        pool = allocator.pool(subnet)
        free[pool.version] += max(pool.available, 0)
    quota = {4: c.LABEL_IPV4_QUOTA, 6: c.LABEL_IPV6_QUOTA}
    for version, label in quota.items():
        wanted[label] = c.QUOTA_NONEMPTY if free[version] else c.QUOTA_EMPTY
    both = free[4] and free[6]
    wanted[c.LABEL_DUALSTACK_QUOTA] = c.QUOTA_NONEMPTY if both else c.QUOTA_EMPTY
    return wanted


class NodeLabeler:
    """Re-labels nodes every ``interval`` seconds (only the ones that differ are written)."""

    def __init__(self, store: Store, allocator: Allocator, interval: float = 2.0):
        self.store = store
        self.allocator = allocator
        self._loop = Periodic("node-labeler", interval, self._tick, tick_at_start=True)

    def start(self) -> None:
        self._loop.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._loop.stop(timeout)

    def _tick(self) -> None:
        try:
            self.reconcile()
        except StoreError as exc:
            log.warning("node labels not updated", extra=fields(error=str(exc)))

    def reconcile(self) -> int:
        """Bring every node's labels of ours to what they should be; returns nodes changed."""
        networks = self.store.list(Network).items
        changed = 0
        for node in self.store.list(Node).items:
            wanted = desired_labels(node, networks, self.allocator)
            current = {k: v for k, v in node.metadata.labels.items() if k in OWNED_LABELS}
            if current == wanted:
                continue
            labels = {k: v for k, v in node.metadata.labels.items() if k not in OWNED_LABELS}
            node.metadata.labels = {**labels, **wanted}
            # Changed or gone meanwhile: the next round reads it again.
            with contextlib.suppress(Conflict, NotFound):
                self.store.update(node)
                changed += 1
        return changed
