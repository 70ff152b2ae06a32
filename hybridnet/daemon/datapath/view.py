"""The inputs of ``desired``: the cluster as this node sees it, and facts about the host.

Both are plain values. ``NodeView`` comes from the daemon's informers; ``HostFacts`` from
``observe`` (the parent interfaces' MTUs, MACs and addresses are the kernel's to know).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

from hybridnet.api.resources import IPInstance, Network, NodeInfo, Subnet


@dataclasses.dataclass(frozen=True)
class NodeView:
    node_name: str
    node_labels: Mapping[str, str] = dataclasses.field(default_factory=dict)
    networks: tuple[Network, ...] = ()
    subnets: tuple[Subnet, ...] = ()
    local_ips: tuple[IPInstance, ...] = ()
    """IPInstances of the pods on this node."""
    node_infos: tuple[NodeInfo, ...] = ()
    """Every node's NodeInfo, this node's included (it is skipped)."""


@dataclasses.dataclass(frozen=True)
class HostLink:
    name: str
    index: int
    kind: str | None
    mtu: int
    mac: str | None
    up: bool
    alias: str | None
    addresses: tuple[str, ...] = ()
    """Global addresses in CIDR form."""
    parent: str | None = None
    """The link a VLAN sits on (or a VXLAN sends by)."""
    vlan_id: int | None = None


@dataclasses.dataclass(frozen=True)
class HostFacts:
    links: Mapping[str, HostLink] = dataclasses.field(default_factory=dict)
    ipv6: bool = True
    """Whether the kernel has IPv6 (``/proc/sys/net/ipv6`` exists)."""
    packet_filter: bool = True
    """Whether nftables works here (the ``nft`` command and the kernel's nf_tables)."""
