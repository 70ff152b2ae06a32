"""What ``desired`` could not build, and why: typed, so the daemon can publish them (NodeInfo
status, Events) and tests can assert them. A problem never stops the rest of the datapath:
only the objects that depend on the bad input are left out."""

from __future__ import annotations

import dataclasses
import enum


class ProblemCode(enum.StrEnum):
    UNDERLAY_CONFLICT = "UnderlayNetworkConflict"
    """More than one underlay network selects this node; the oldest is used."""
    OVERLAY_CONFLICT = "OverlayNetworkConflict"
    """More than one overlay network exists; the oldest is used."""
    GLOBAL_BGP_CONFLICT = "GlobalBGPNetworkConflict"
    """More than one GlobalBGP network exists; the oldest is used."""
    INTERFACE_NOT_CONFIGURED = "InterfaceNotConfigured"
    PARENT_MISSING = "ParentInterfaceMissing"
    VLAN_ID_INVALID = "InvalidVLANID"
    VNI_INVALID = "InvalidVNI"
    VTEP_ADDRESS_NOT_ON_NODE = "VTEPAddressNotOnNode"
    MTU_TOO_SMALL = "MTUTooSmall"
    LINK_NAME_TAKEN = "LinkNameTaken"
    """A link that is not hybridnet's already has the name the datapath needs."""
    SUBNET_INVALID = "InvalidSubnet"
    SUBNET_WITHOUT_GATEWAY = "SubnetWithoutGateway"
    TABLES_EXHAUSTED = "SubnetTablesExhausted"
    REMOTE_NODE_INVALID = "InvalidRemoteNode"
    IPV6_UNAVAILABLE = "IPv6Unavailable"
    PACKET_FILTER_UNAVAILABLE = "PacketFilterUnavailable"
    """No nftables on this node: overlay subnets with autoNatOutgoing are not masqueraded,
    NetworkPolicies not enforced."""
    POLICY_NOT_COMPILED = "NetworkPolicyNotCompiled"
    """Compiling the NetworkPolicies failed (a bug): the policy table stays as it was."""
    CONFLICTING_OBJECTS = "ConflictingObjects"
    """Two inputs (e.g. two subnets with one CIDR) ask for different versions of one object."""


@dataclasses.dataclass(frozen=True)
class Problem:
    code: ProblemCode
    subject: str
    """What the problem is about, as ``kind/name`` (``network/vlan100``, ``link/eth0.100``)."""
    message: str

    def __str__(self) -> str:
        return f"{self.code} {self.subject}: {self.message}"
