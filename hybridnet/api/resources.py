"""The four hybridnet kinds, field for field compatible with alibaba/hybridnet's v1 API.

Field names follow the API's JSON (see codec.py for the naming rule); ``tests/unit/api``
checks them against ``deploy/crds/`` so the models and the CRDs cannot drift apart.
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

from hybridnet.api.constants import GROUP, VERSION
from hybridnet.api.meta import Resource, ResourceKind


def _field(json: str) -> dict[str, str]:
    return {"json": json}


# --------------------------------------------------------------------------- shared pieces


@dataclasses.dataclass
class Count:
    """Address statistics. IPv6 totals beyond int64 are capped at 2**63-1 by the writer."""

    total: int = 0
    used: int = 0
    available: int = 0


# --------------------------------------------------------------------------- Network


@dataclasses.dataclass
class BGPPeer:
    address: str
    asn: int
    password: str | None = None
    graceful_restart_seconds: int | None = None
    hold_time: int | None = None
    does_not_route_traffic: bool | None = None
    allow_not_established: bool | None = None


@dataclasses.dataclass
class NetworkConfig:
    bgp_peers: list[BGPPeer] = dataclasses.field(default_factory=list, metadata=_field("bgpPeers"))


@dataclasses.dataclass
class NetworkSpec:
    type: str = "Underlay"
    mode: str | None = None
    net_id: int | None = dataclasses.field(default=None, metadata=_field("netID"))
    node_selector: dict[str, str] = dataclasses.field(default_factory=dict)
    config: NetworkConfig | None = None


@dataclasses.dataclass
class BGPPeerStatus:
    """One BGP peer's session as the leading manager's speaker sees it (an extension of the
    reference's API: older readers ignore it). Written only when it changes."""

    address: str
    state: str
    """Stopped (no ExaBGP runs), Idle, Connect, Active, OpenSent, OpenConfirm, Established;
    Invalid when the peer cannot be configured (``message`` says why)."""
    last_transition_time: str | None = None
    last_error: str | None = None
    """The latest reason the session went down (a NOTIFICATION, a refused connection)."""
    announced_routes: int = 0
    """Routes ExaBGP holds for this peer (sent whenever the session is Established)."""
    message: str | None = None
    """What hybridnet itself has to say about the peer (a setting it could not use)."""


@dataclasses.dataclass
class NetworkStatus:
    last_allocated_subnet: str | None = None
    last_allocated_ipv6_subnet: str | None = dataclasses.field(
        default=None, metadata=_field("lastAllocatedIPv6Subnet")
    )
    subnet_list: list[str] = dataclasses.field(default_factory=list)
    node_list: list[str] = dataclasses.field(default_factory=list)
    statistics: Count | None = None
    ipv6_statistics: Count | None = dataclasses.field(
        default=None, metadata=_field("ipv6Statistics")
    )
    dual_stack_statistics: Count | None = None
    bgp_peers: list[BGPPeerStatus] = dataclasses.field(
        default_factory=list, metadata=_field("bgpPeers")
    )


@dataclasses.dataclass
class Network(Resource):
    """An L2/L3 domain pods attach to: Underlay (VLAN/BGP) or Overlay (VXLAN). Cluster-scoped."""

    KIND: ClassVar[ResourceKind] = ResourceKind(GROUP, VERSION, "Network", "networks", False)

    spec: NetworkSpec = dataclasses.field(default_factory=NetworkSpec)
    status: NetworkStatus = dataclasses.field(default_factory=NetworkStatus)


# --------------------------------------------------------------------------- Subnet


@dataclasses.dataclass
class AddressRange:
    version: str
    cidr: str
    gateway: str | None = None
    start: str | None = None
    end: str | None = None
    reserved_ips: list[str] = dataclasses.field(
        default_factory=list, metadata=_field("reservedIPs")
    )
    exclude_ips: list[str] = dataclasses.field(default_factory=list, metadata=_field("excludeIPs"))


@dataclasses.dataclass
class SubnetConfig:
    gateway_type: str | None = None
    gateway_node: str | None = None
    auto_nat_outgoing: bool | None = None
    private: bool | None = None
    allow_subnets: list[str] = dataclasses.field(default_factory=list)


@dataclasses.dataclass
class SubnetSpec:
    network: str
    range: AddressRange
    net_id: int | None = dataclasses.field(default=None, metadata=_field("netID"))
    config: SubnetConfig | None = None


@dataclasses.dataclass
class SubnetStatus:
    total: int = 0
    used: int = 0
    available: int = 0
    last_allocated_ip: str | None = dataclasses.field(
        default=None, metadata=_field("lastAllocatedIP")
    )


@dataclasses.dataclass
class Subnet(Resource):
    """A CIDR of a Network from which pod addresses are allocated. Cluster-scoped."""

    KIND: ClassVar[ResourceKind] = ResourceKind(GROUP, VERSION, "Subnet", "subnets", False)

    spec: SubnetSpec = dataclasses.field(
        default_factory=lambda: SubnetSpec(network="", range=AddressRange(version="4", cidr=""))
    )
    status: SubnetStatus = dataclasses.field(default_factory=SubnetStatus)


# --------------------------------------------------------------------------- IPInstance


@dataclasses.dataclass
class Address:
    version: str
    ip: str
    """The address in CIDR form, with the subnet's prefix length (``198.19.0.5/24``)."""
    mac: str
    gateway: str | None = None
    net_id: int | None = dataclasses.field(default=None, metadata=_field("netID"))


@dataclasses.dataclass
class ReferredObject:
    kind: str | None = None
    name: str | None = None
    uid: str | None = None


@dataclasses.dataclass
class StatefulInfo:
    index: int | None = None


@dataclasses.dataclass
class Binding:
    referred_object: ReferredObject | None = None
    node_name: str | None = None
    pod_uid: str | None = dataclasses.field(default=None, metadata=_field("podUID"))
    pod_name: str | None = None
    stateful: StatefulInfo | None = None


@dataclasses.dataclass
class IPInstanceSpec:
    network: str
    subnet: str
    address: Address
    binding: Binding | None = None


@dataclasses.dataclass
class IPInstanceStatus:
    node_name: str | None = None
    phase: str | None = None
    pod_name: str | None = None
    pod_namespace: str | None = None
    sandbox_id: str | None = dataclasses.field(default=None, metadata=_field("sandboxID"))
    update_timestamp: str | None = None


@dataclasses.dataclass
class IPInstance(Resource):
    """One allocated address, bound to a pod and a node. Namespaced (the pod's namespace)."""

    KIND: ClassVar[ResourceKind] = ResourceKind(GROUP, VERSION, "IPInstance", "ipinstances", True)

    spec: IPInstanceSpec = dataclasses.field(
        default_factory=lambda: IPInstanceSpec(
            network="", subnet="", address=Address(version="4", ip="", mac="")
        )
    )
    status: IPInstanceStatus = dataclasses.field(default_factory=IPInstanceStatus)


# --------------------------------------------------------------------------- NodeInfo


@dataclasses.dataclass
class VTEPInfo:
    ip: str | None = None
    mac: str | None = None
    local_ips: list[str] = dataclasses.field(default_factory=list, metadata=_field("localIPs"))


@dataclasses.dataclass
class NodeInfoSpec:
    vtep_info: VTEPInfo | None = dataclasses.field(default=None, metadata=_field("vtepInfo"))


@dataclasses.dataclass
class NodeProblem:
    """Something the node's datapath could not build, as its daemon reports it (an extension
    of the reference's API: older readers ignore it)."""

    code: str
    subject: str
    message: str


@dataclasses.dataclass
class NodeInfoStatus:
    update_timestamp: str | None = None
    problems: list[NodeProblem] = dataclasses.field(default_factory=list)


@dataclasses.dataclass
class NodeInfo(Resource):
    """A node's overlay endpoint (VTEP address and MAC), published by its daemon."""

    KIND: ClassVar[ResourceKind] = ResourceKind(GROUP, VERSION, "NodeInfo", "nodeinfos", False)

    spec: NodeInfoSpec = dataclasses.field(default_factory=NodeInfoSpec)
    status: NodeInfoStatus = dataclasses.field(default_factory=NodeInfoStatus)


HYBRIDNET_KINDS: tuple[type[Resource], ...] = (Network, Subnet, IPInstance, NodeInfo)
