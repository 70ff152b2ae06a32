"""Node labels the scheduler and the webhook rely on, and no NodeInfo without its Node, kept
current by the leader.

* ``underlay-network-attachment: "true"`` on nodes an Underlay network selects, and
  ``overlay-network-attachment: "true"`` on every node while an Overlay network exists;
* ``ipv4-address-quota`` / ``ipv6-address-quota`` / ``dualstack-address-quota``:
  ``nonempty`` while the node's Underlay network still has free addresses of that family, so
  the webhook's node selector keeps new underlay pods off nodes whose network is full.

Labels of ours that no longer apply are removed; every other label is left alone. Driven by
changes, from the informers' caches: a Node event marks that node, a Network event every node,
and so does an allocation or release that turns a network's quota from free to full or back.
A marked node whose labels differ is written with the cached resourceVersion (on Conflict the
newer version's event marks it again).

A NodeInfo lives as long as the Node of its name: every daemon puts every NodeInfo's VTEP into
its VXLAN device, so a departed node's NodeInfo would keep it in every other node's FDB for
good (the reference makes the Node its owner and leaves it to Kubernetes' garbage collector;
the manager does the same job on any store). A Node's DELETED event marks its name, and a
marked name without a Node loses its NodeInfo, once a GET confirms the Node is really gone
(the two caches can lag each other). With ``nodes_registered`` (Kubernetes, where every node
running a daemon is a registered Node) the leader also deletes any NodeInfo whose Node does
not exist, seen at start, at every resync (a Node deleted while no manager led) or in a
NodeInfo's event (a daemon that wrote it again before it saw its Node go). On the embedded
store Node objects are optional, so only deletions of a Node count there.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
from collections.abc import Iterator

from hybridnet.api import constants as c
from hybridnet.api.builtin import Node
from hybridnet.api.resources import Network, NodeInfo
from hybridnet.ipamstore.service import IPAMUsage
from hybridnet.logs import fields
from hybridnet.manager.batches import BatchLoop, OwnWrites
from hybridnet.manager.caches import ClusterCache
from hybridnet.store.errors import Conflict, NotFound
from hybridnet.store.interface import Store, WatchEvent

log = logging.getLogger(__name__)

OWNED_LABELS = (
    c.LABEL_UNDERLAY_ATTACHMENT,
    c.LABEL_OVERLAY_ATTACHMENT,
    c.LABEL_IPV4_QUOTA,
    c.LABEL_IPV6_QUOTA,
    c.LABEL_DUALSTACK_QUOTA,
)

RESYNC_SECONDS = 300.0
"""Every node is compared again this often (from the caches, so it costs no request)."""

Quota = tuple[bool, bool]
"""Whether a network still has free IPv4, IPv6 addresses."""


def _selects(network: Network, labels: dict[str, str]) -> bool:
    selector = network.spec.node_selector
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def quota_of(network: str, usage: IPAMUsage) -> Quota:
    free = {4: 0, 6: 0}
    for subnet in usage.subnets_of(network):
        free[subnet.version] += max(subnet.available, 0)
    return free[4] > 0, free[6] > 0


def desired_labels(node: Node, networks: list[Network], usage: IPAMUsage) -> dict[str, str]:
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
    free4, free6 = quota_of(attached[0].name, usage)
    wanted[c.LABEL_IPV4_QUOTA] = c.QUOTA_NONEMPTY if free4 else c.QUOTA_EMPTY
    wanted[c.LABEL_IPV6_QUOTA] = c.QUOTA_NONEMPTY if free6 else c.QUOTA_EMPTY
    wanted[c.LABEL_DUALSTACK_QUOTA] = c.QUOTA_NONEMPTY if free4 and free6 else c.QUOTA_EMPTY
    return wanted


class NodeLabeler:
    def __init__(
        self,
        store: Store,
        cache: ClusterCache,
        usage: IPAMUsage,
        *,
        interval: float = 1.0,
        resync: float = RESYNC_SECONDS,
        nodes_registered: bool = False,
    ):
        self.store = store
        self._nodes = cache.nodes
        self._node_infos = cache.node_infos
        self._nodes_registered = nodes_registered
        self._networks = cache.networks
        self._usage = usage
        self._quota: dict[str, Quota] = {}
        self._attachment: dict[str, tuple[str, dict[str, str]]] = {}
        """Network -> (type, node selector): what of a network decides node labels."""
        self._lock = threading.Lock()
        self._own = OwnWrites()
        self._loop = BatchLoop(
            "node-labeler", self._sync, self._every_node, interval=interval, resync=resync
        )
        usage.subscribe(self._usage_changed)
        cache.nodes.subscribe(self._node_event)
        cache.networks.subscribe(self._network_event)
        if nodes_registered:
            cache.node_infos.subscribe(self._node_info_event)

    def start(self) -> None:
        """Start syncing; call it once the caches are synced (the orphans are read there)."""
        if self._nodes_registered:
            for name in self._orphans():
                self._loop.mark(name)
        self._loop.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._loop.stop(timeout)

    # ----------------------------------------------------------------- what changed

    def _node_event(self, event: WatchEvent[Node]) -> None:
        self._loop.mark(event.object.name)  # also when deleted: its NodeInfo goes

    def _node_info_event(self, event: WatchEvent[NodeInfo]) -> None:
        if event.type != "DELETED" and self._nodes.get(event.object.name) is None:
            self._loop.mark(event.object.name)

    def _network_event(self, event: WatchEvent[Network]) -> None:
        """Every node, when a network's type or node selector changed (not its status)."""
        name = event.object.name
        spec = event.object.spec
        with self._lock:
            before = self._attachment.pop(name, None)
            if event.type != "DELETED":
                self._attachment[name] = (spec.type, dict(spec.node_selector))
            changed = before != self._attachment.get(name)
        if changed:
            self._mark_every_node()

    def _usage_changed(self, network: str, subnet: str | None) -> None:
        with self._lock:  # in order, so the last quota recorded is the latest one
            quota = quota_of(network, self._usage)
            flipped = self._quota.get(network) != quota
            self._quota[network] = quota
        if flipped:
            self._mark_every_node()

    def _mark_every_node(self) -> None:
        for name in self._every_node():
            self._loop.mark(name)

    def _every_node(self) -> Iterator[str]:
        for node in self._nodes.items():
            yield node.name
        if self._nodes_registered:
            yield from self._orphans()

    def _orphans(self) -> Iterator[str]:
        """Names of the cached NodeInfos whose Node is not cached."""
        for info in self._node_infos.items():
            if self._nodes.get(info.name) is None:
                yield info.name

    # ----------------------------------------------------------------- writing

    def _sync(self, name: str) -> None:
        node = self._nodes.get(name)
        if node is None:
            self._delete_node_info(name)
            return
        if self._own.cache_is_behind(name, node.metadata.resource_version):
            return
        wanted = desired_labels(node, self._networks.items(), self._usage)
        current = {k: v for k, v in node.metadata.labels.items() if k in OWNED_LABELS}
        if current == wanted:
            return
        labels = {k: v for k, v in node.metadata.labels.items() if k not in OWNED_LABELS}
        metadata = dataclasses.replace(node.metadata, labels={**labels, **wanted})
        try:
            self.store.update(dataclasses.replace(node, metadata=metadata))
        except (Conflict, NotFound):
            # Conflict: the cache is behind someone else's write, whose event marks the node
            # again. NotFound: deleted meanwhile.
            self._own.failed(name)
            return
        except BaseException:
            self._own.failed(name)
            raise
        self._own.wrote(name, node.metadata.resource_version)

    def _delete_node_info(self, name: str) -> None:
        """Delete the NodeInfo of ``name`` if its Node is gone from the store itself."""
        if self._node_infos.get(name) is None:
            return
        try:
            self.store.get(Node, name)
        except NotFound:
            pass
        else:
            return  # only this cache lags: the Node's event marks the name again
        try:
            self.store.delete(NodeInfo, name)
        except NotFound:
            return
        log.info("nodeinfo of a departed node deleted", extra=fields(node=name))
