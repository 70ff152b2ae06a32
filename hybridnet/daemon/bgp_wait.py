"""What a BGP pod's ADD waits for, and how it says why it gave up.

A pod of a BGP or GlobalBGP network is reachable only once the fabric has its /32 (/128):
the leading manager marks its IPInstance ``bgp-announced`` (hybridnet.ipamstore.ipinstances)
when ExaBGP holds the route for every peer and the peers without ``allowNotEstablished``
have their sessions up. When the mark does not come in time, ADD fails (try again later)
naming the peers' states as the manager last wrote them on the Network's status, so that
``kubectl describe pod`` says which session is down and why.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from hybridnet.api import constants
from hybridnet.api.resources import IPInstance, Network
from hybridnet.daemon.placement import underlay_of
from hybridnet.ipamstore import ipinstances


def advertised(network: Network | None) -> bool:
    """Whether the manager announces routes for this network's pods."""
    if network is None:
        return False
    bgp = network.spec.type == constants.TYPE_UNDERLAY and network.spec.mode == constants.MODE_BGP
    return bgp or network.spec.type == constants.TYPE_GLOBAL_BGP


def awaited(instances: Sequence[IPInstance], networks: Mapping[str, Network]) -> set[str]:
    """The IPInstances (by name) whose route ADD waits for."""
    return {i.name for i in instances if advertised(networks.get(i.spec.network))}


def unannounced(
    instances: Sequence[IPInstance], networks: Mapping[str, Network], node: str
) -> list[str]:
    """What CHECK reports of a BGP pod: each address whose route the manager has not marked
    announced towards this node."""
    return [
        f"the manager has not announced the BGP route of {ipinstances.address_of(i)} via {node}"
        for i in instances
        if advertised(networks.get(i.spec.network)) and ipinstances.bgp_announced_for(i) != node
    ]


def speaking_network(
    network: Network, networks: Sequence[Network], labels: Mapping[str, str]
) -> Network | None:
    """The BGP network whose peers carry this network's routes from this node: itself, or
    for a GlobalBGP network the BGP network that attaches the node."""
    if network.spec.type != constants.TYPE_GLOBAL_BGP:
        return network
    return underlay_of(networks, labels)


def describe(
    waiting: Sequence[IPInstance],
    networks: Sequence[Network],
    labels: Mapping[str, str],
    timeout: float,
) -> str:
    addresses = ", ".join(ipinstances.address_of(i) for i in waiting)
    lines = [f"the manager has not announced the BGP route of {addresses} within {timeout:g}s"]
    by_name = {n.name: n for n in networks}
    told: set[str] = set()
    for instance in waiting:
        network = by_name.get(instance.spec.network)
        speaking = speaking_network(network, networks, labels) if network else None
        if speaking is None or speaking.name in told:
            continue
        told.add(speaking.name)
        peers = speaking.status.bgp_peers
        if not peers:
            lines.append(
                f"network {speaking.name} reports no BGP peer state (is a manager leading?)"
            )
            continue
        states = []
        for peer in peers:
            state = f"{peer.address} {peer.state}"
            if peer.last_error:
                state += f" (last error: {peer.last_error})"
            if peer.message:
                state += f" ({peer.message})"
            states.append(state)
        lines.append(f"network {speaking.name}'s peers: " + "; ".join(states))
    return "; ".join(lines)
