"""The inputs of ``desired``: the cluster as this node sees it, and facts about the host.

Both are plain values. ``NodeView`` comes from the daemon's informers; ``HostFacts`` from
``observe`` (the parent interfaces' MTUs, MACs and addresses are the kernel's to know).
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Mapping

from hybridnet.api.builtin import Namespace, NetworkPolicy, Pod
from hybridnet.api.resources import IPInstance, Network, NodeInfo, Subnet


@dataclasses.dataclass(frozen=True)
class PolicyView:
    """What NetworkPolicy enforcement reads, cluster-wide (hybridnet.daemon.policy_cache)."""

    pods: tuple[Pod, ...] = ()
    namespaces: tuple[Namespace, ...] = ()
    policies: tuple[NetworkPolicy, ...] = ()
    addresses: tuple[IPInstance, ...] = ()
    """Every pod's IPInstances (the IPAM namespace's), not only this node's."""

    def digest(self) -> str:
        """Which versions of which objects this is, in 16 hex digits: the daemon logs it when
        it has enforced them, so a reader who lists the same objects can tell it is done."""
        versions = sorted(
            f"{obj.KIND.plural}/{obj.metadata.namespace or ''}/{obj.name}@"
            f"{obj.metadata.resource_version or ''}"
            for group in (self.pods, self.namespaces, self.policies, self.addresses)
            for obj in group
        )
        return hashlib.sha256("\n".join(versions).encode()).hexdigest()[:16]


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
    policy: PolicyView | None = None
    """None while the policy informers have not listed (or enforcement is off): the policy
    table is then left as the kernel holds it, never rebuilt from a partial picture."""


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
