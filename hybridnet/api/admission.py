"""Validation of Networks and Subnets against the rest of the cluster, without I/O: the
admission webhook's rules, which hybridnet-ctl also runs before it sends anything.

Single-object rules live in hybridnet.api.validation; these need other objects (overlap between
subnets, one overlay network, underlay networks sharing nodes, deletes of things in use). Each
function takes plain lists so the webhook, the CLI and the tests can all call it; it returns
messages, and an empty list means allowed.

Cross-object rules are enforced when the fields they read are set or changed, not on every
update: an object that predates the webhook (or a rule) can still have its finalizers or labels
edited instead of being stuck.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping, Sequence

from hybridnet.api import constants as c
from hybridnet.api import validation
from hybridnet.api.builtin import Node
from hybridnet.api.meta import Resource
from hybridnet.api.resources import IPInstance, Network, Subnet


def single_object(new: Resource, old: Resource | None = None) -> list[str]:
    """The object's own rules (hybridnet.api.validation), as messages."""
    try:
        validation.validate(new, old)
    except validation.ValidationFailed as exc:
        return [str(exc)]
    return []


def _cidr(subnet: Subnet) -> validation.IPNetwork | None:
    try:
        return ipaddress.ip_network(subnet.spec.range.cidr, strict=False)
    except ValueError:
        return None


# --------------------------------------------------------------------------- Subnet


def overlapping(subnet: Subnet, subnets: Iterable[Subnet]) -> list[str]:
    """Every other subnet (of any network) whose CIDR shares an address with ``subnet``'s."""
    mine = _cidr(subnet)
    if mine is None:
        return []
    problems = []
    for other in subnets:
        theirs = _cidr(other)
        if other.name == subnet.name or theirs is None or theirs.version != mine.version:
            continue
        if mine.overlaps(theirs):
            problems.append(
                f'subnet "{subnet.name}" ({mine}) overlaps subnet "{other.name}" ({theirs})'
            )
    return problems


def fits_network(subnet: Subnet, networks: Iterable[Network]) -> list[str]:
    """The subnet's network exists, and the subnet's netID is one that network can use."""
    network = next((n for n in networks if n.name == subnet.spec.network), None)
    if network is None:
        return [f'subnet "{subnet.name}": network "{subnet.spec.network}" does not exist']
    mode = validation.effective_mode(network)
    if subnet.spec.net_id is not None and mode != c.MODE_VLAN:
        return [
            f'subnet "{subnet.name}": spec.netID overrides the VLAN id and is only for VLAN '
            f'networks; network "{network.name}" is {network.spec.type}/{mode}'
        ]
    return []


def subnet_conflicts(
    new: Subnet,
    old: Subnet | None,
    networks: Sequence[Network],
    subnets: Sequence[Subnet],
) -> list[str]:
    """Why a Subnet create (``old`` None) or update clashes with the rest of the cluster."""
    problems: list[str] = []
    changed_placement = old is None or (
        (old.spec.network, old.spec.net_id) != (new.spec.network, new.spec.net_id)
    )
    if changed_placement:
        problems += fits_network(new, networks)
    if old is None or old.spec.range.cidr != new.spec.range.cidr:
        problems += overlapping(new, subnets)
    return problems


def subnet_problems(
    new: Subnet,
    old: Subnet | None,
    networks: Sequence[Network],
    subnets: Sequence[Subnet],
) -> list[str]:
    """Why a Subnet create (``old`` None) or update must be refused: its own rules first."""
    return single_object(new, old) or subnet_conflicts(new, old, networks, subnets)


def subnet_delete_problems(subnet: Subnet, instances: Iterable[IPInstance]) -> list[str]:
    """A subnet whose addresses are still in use must stay."""
    holders = sorted(
        f"{i.namespace}/{i.name}" if i.namespace else i.name
        for i in instances
        if i.spec.subnet == subnet.name
    )
    if holders:
        shown = ", ".join(holders[:5]) + (
            f" and {len(holders) - 5} more" if len(holders) > 5 else ""
        )
        return [f'subnet "{subnet.name}" still has {len(holders)} address(es) in use: {shown}']
    if subnet.status.used > 0:
        return [f'subnet "{subnet.name}" still has {subnet.status.used} address(es) in use']
    return []


# --------------------------------------------------------------------------- Network


def _selects(selector: Mapping[str, str], labels: Mapping[str, str]) -> bool:
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def shared_nodes(network: Network, networks: Iterable[Network], nodes: Sequence[Node]) -> list[str]:
    """Nodes that ``network`` (Underlay) would share with another Underlay network."""
    if network.spec.type != c.TYPE_UNDERLAY:
        return []
    mine = [n for n in nodes if _selects(network.spec.node_selector, n.metadata.labels)]
    problems = []
    for other in networks:
        if other.name == network.name or other.spec.type != c.TYPE_UNDERLAY:
            continue
        for node in mine:
            if _selects(other.spec.node_selector, node.metadata.labels):
                problems.append(
                    f'underlay network "{network.name}" would share node "{node.name}" with '
                    f'underlay network "{other.name}"; a node belongs to one underlay network'
                )
                break
    return problems


def second_overlay(network: Network, networks: Iterable[Network]) -> list[str]:
    """A cluster has at most one Overlay network."""
    return _second_of_type(network, networks, c.TYPE_OVERLAY, "an Overlay")


def second_global_bgp(network: Network, networks: Iterable[Network]) -> list[str]:
    """A cluster has at most one GlobalBGP network (its pods are routed on every node)."""
    return _second_of_type(network, networks, c.TYPE_GLOBAL_BGP, "a GlobalBGP")


def _second_of_type(
    network: Network, networks: Iterable[Network], network_type: str, spelled: str
) -> list[str]:
    if network.spec.type != network_type:
        return []
    others = [n.name for n in networks if n.spec.type == network_type and n.name != network.name]
    if others:
        return [
            f'network "{network.name}": there is already {spelled} network ("{others[0]}"); '
            "a cluster has at most one"
        ]
    return []


def peers_with_another_asn(network: Network, networks: Iterable[Network]) -> list[str]:
    """One BGP session per peer address: two networks may share a peer only with one local
    AS number (their netID), or the speaker would need two sessions to one address."""
    if network.spec.type == c.TYPE_GLOBAL_BGP:
        return []  # its own peers are not used (its pods go to the BGP networks' peers)
    mine = {p.address for p in (network.spec.config.bgp_peers if network.spec.config else [])}
    problems = []
    for other in networks:
        if other.name == network.name or other.spec.net_id == network.spec.net_id:
            continue
        if other.spec.type == c.TYPE_GLOBAL_BGP:
            continue
        theirs = {p.address for p in (other.spec.config.bgp_peers if other.spec.config else [])}
        for address in sorted(mine & theirs):
            problems.append(
                f'network "{network.name}" (AS {network.spec.net_id}) would peer with {address}, '
                f'already a peer of network "{other.name}" as AS {other.spec.net_id}; '
                "one peer address has one local AS"
            )
    return problems


def network_conflicts(
    new: Network,
    old: Network | None,
    networks: Sequence[Network],
    nodes: Sequence[Node],
) -> list[str]:
    """Why a Network create (``old`` None) or update clashes with the rest of the cluster."""
    problems: list[str] = []
    if old is None or old.spec.type != new.spec.type:
        problems += second_overlay(new, networks)
        problems += second_global_bgp(new, networks)
    if old is None or old.spec.config != new.spec.config:
        problems += peers_with_another_asn(new, networks)
    if old is None or old.spec.node_selector != new.spec.node_selector:
        problems += shared_nodes(new, networks, nodes)
    return problems


def network_problems(
    new: Network,
    old: Network | None,
    networks: Sequence[Network],
    nodes: Sequence[Node],
) -> list[str]:
    """Why a Network create (``old`` None) or update must be refused: its own rules first."""
    return single_object(new, old) or network_conflicts(new, old, networks, nodes)


def network_delete_problems(network: Network, subnets: Iterable[Subnet]) -> list[str]:
    """A network with subnets must stay (delete the subnets first)."""
    children = sorted(s.name for s in subnets if s.spec.network == network.name)
    if children:
        return [
            f'network "{network.name}" still has {len(children)} subnet(s): {", ".join(children)}'
        ]
    return []
