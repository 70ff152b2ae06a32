"""Whether a virtual cluster's node has built what its networks ask of it, read from the store
and the node's kernel with iproute2 (never through hybridnet's own netlink code)."""

from __future__ import annotations

from collections.abc import Sequence

from hybridnet.api.resources import Network, NodeInfo, Subnet
from hybridnet.lab.cluster_model import FABRIC_LABELS, OVERLAY, UNDERLAY, VXLAN_DEVICE, ClusterNode
from hybridnet.store.interface import Store


def underlay_attaches(node: ClusterNode) -> bool:
    """Whether the cluster's underlay network selects ``node`` (by its labels)."""
    return all(node.labels.get(k) == v for k, v in FABRIC_LABELS.items())


def missing(store: Store, node: ClusterNode, nodes: Sequence[ClusterNode]) -> list[str]:
    """What ``node`` still lacks (empty: nothing): with the overlay, its VTEP published, a
    VXLAN forwarding entry for every other node of ``nodes`` and the VXLAN device's IPv6
    link-local address past duplicate address detection (a new device resolves no IPv6
    neighbour before); with the underlay, where it attaches, a rule per underlay subnet."""
    lacking = []
    vteps = {info.name: info.spec.vtep_info for info in store.list(NodeInfo).items}
    networks = {n.name for n in store.list(Network).items}
    subnets = store.list(Subnet).items
    if OVERLAY in networks:
        if vteps.get(node.name) is None:
            lacking.append("its NodeInfo has no VTEP")
        fdb = node.host.exec(["bridge", "fdb", "show", "dev", VXLAN_DEVICE], check=False).stdout
        for other in (n for n in nodes if n is not node):
            vtep = vteps.get(other.name)
            if vtep is None or f"{vtep.mac} dst {vtep.ip}" not in fdb:
                lacking.append(f"no VXLAN forwarding entry for {other.name}")
        if any(s.spec.network == OVERLAY and s.spec.range.version == "6" for s in subnets):
            shown = node.host.ip("-6", "addr", "show", "dev", VXLAN_DEVICE, check=False).stdout
            if "fe80::" not in shown or "tentative" in shown:
                lacking.append(f"{VXLAN_DEVICE} has no usable IPv6 link-local address")
    if UNDERLAY in networks and underlay_attaches(node):
        rules = node.host.ip("rule", "show", check=False).stdout
        rules += node.host.ip("-6", "rule", "show", check=False).stdout
        for subnet in (s for s in subnets if s.spec.network == UNDERLAY):
            if f"from {subnet.spec.range.cidr} lookup" not in rules:
                lacking.append(f"no rule for underlay subnet {subnet.name}")
    return lacking
