"""What the leader advertises over BGP, computed from its caches. Pure.

From every Network, Subnet, IPInstance (of the IPAM namespace) and Node: the peers ExaBGP
speaks to, the routes each peer should have, and for each pod address its route and the
peers its ``bgp-announced`` mark waits for (hybridnet.ipamstore.ipinstances).

* A **BGP network** (Underlay, mode BGP) speaks to its ``config.bgpPeers`` as AS ``netID``.
  A peer carries the family of its own address: an IPv4 peer gets the IPv4 routes, an IPv6
  peer the IPv6 ones (a dual-stack network lists the router's address of each family). Each
  peer gets every subnet CIDR of its network (next hop: the speaker itself, no community)
  and every pod address of the network as a /32 or /128 tagged NO_EXPORT, via the pod's node.
* A **GlobalBGP network**'s pod addresses (/32 /128, no community, no subnet route) go to the
  peers of the BGP network that attaches the pod's node (its nodeSelector; the oldest when
  several do, as the node's datapath picks). Its own peer list, if any, is not used: as in
  the reference, a node's BGP network speaks for every BGP pod on it.
* **Next hop**: the node's first ``InternalIP`` of the pod address's family in the Node's
  ``status.addresses``: the node's address on the fabric, where its BGP pods' traffic leaves
  and arrives. A pod whose Node is missing, being deleted, NotReady (its ``Ready`` condition
  is not True) or without such an address gets no route, so its route is withdrawn.
* A peer listed by several networks (or twice) is one session: the oldest network's
  settings are used, and a listing with other settings gets a note on its network's status.
* ``allowNotEstablished`` (the reference's meaning): a pod's ADD does not wait for that
  peer's session to be Established; it still waits for ExaBGP to hold the route for it.
"""

from __future__ import annotations

import dataclasses
import ipaddress
from collections.abc import Callable, Container, Iterable, Mapping

from hybridnet.api import constants as c
from hybridnet.api.builtin import Node
from hybridnet.api.ordering import oldest_first
from hybridnet.api.resources import BGPPeer, IPInstance, Network, Subnet
from hybridnet.bgp.errors import BGPError
from hybridnet.bgp.model import (
    DEFAULT_GRACEFUL_RESTART_SECONDS,
    Family,
    IPAddress,
    IPNetwork,
    Peer,
    Route,
    SessionState,
    pod_route,
)


@dataclasses.dataclass(frozen=True)
class SpeakerSettings:
    """What the manager's flags say about every session."""

    local_addresses: Mapping[int, IPAddress] = dataclasses.field(default_factory=dict)
    """IP version -> the source address of the sessions to peers of that family."""
    multihop: int | None = None
    """Hops to eBGP peers that are not directly connected (None: single hop)."""


@dataclasses.dataclass(frozen=True)
class PeerListing:
    """One network's entry for a peer, as its status shows it."""

    address: str
    """As the network spells it."""
    peer: str | None
    """The session's name in the speaker (the canonical address); None when unusable."""
    note: str | None = None


@dataclasses.dataclass(frozen=True)
class PodRoute:
    """A pod address's route and what its ``bgp-announced`` mark waits for."""

    instance: str
    node: str
    route: Route
    peers: frozenset[str]
    """Peers that must hold the route (ExaBGP acknowledged it for them)."""
    established: frozenset[str]
    """Of those, the peers whose session must be Established (not ``allowNotEstablished``)."""


@dataclasses.dataclass(frozen=True)
class Plan:
    network: NetworkPlan
    peers: tuple[Peer, ...]
    routes: Mapping[str, frozenset[Route]]
    """Peer name -> every route it should have."""
    pods: Mapping[str, PodRoute]
    """IPInstance name -> its route."""
    listings: Mapping[str, tuple[PeerListing, ...]]
    """BGP network -> its peers, in its order."""
    problems: tuple[str, ...]

    @property
    def empty(self) -> bool:
        return not self.peers


# --------------------------------------------------------------------------- nodes


def node_ready(node: Node) -> bool:
    """The Node's ``Ready`` condition is True and it is not being deleted."""
    if node.metadata.deletion_timestamp:
        return False
    conditions = node.body.get("status", {}).get("conditions") or []
    return any(
        isinstance(each, dict) and each.get("type") == "Ready" and each.get("status") == "True"
        for each in conditions
    )


def internal_ip(node: Node, version: int) -> IPAddress | None:
    """The Node's first ``InternalIP`` of IP ``version``."""
    for each in node.body.get("status", {}).get("addresses") or []:
        if not isinstance(each, dict) or each.get("type") != "InternalIP":
            continue
        try:
            address = ipaddress.ip_address(str(each.get("address")))
        except ValueError:
            continue
        if address.version == version:
            return address
    return None


# --------------------------------------------------------------------------- networks


def is_bgp(network: Network) -> bool:
    return network.spec.type == c.TYPE_UNDERLAY and network.spec.mode == c.MODE_BGP


def is_global_bgp(network: Network) -> bool:
    return network.spec.type == c.TYPE_GLOBAL_BGP


def _selects(network: Network, labels: Mapping[str, str]) -> bool:
    selector = network.spec.node_selector
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


@dataclasses.dataclass(frozen=True)
class NetworkPlan:
    """What the networks and subnets alone decide: the peers and the subnet routes. Pod
    routes are planned one by one against it (:func:`pod_plan`), so one pod's change costs
    one pod's work."""

    peers: tuple[Peer, ...]
    networks: Mapping[str, Network]
    bgp_networks: tuple[Network, ...]
    """Oldest first: a GlobalBGP pod's routes go to the first that attaches its node."""
    subnet_routes: Mapping[str, frozenset[Route]]
    """Peer name -> the subnet routes it gets."""
    listings: Mapping[str, tuple[PeerListing, ...]]
    waits: Mapping[str, Mapping[str, bool]]
    """BGP network -> its usable peers, in its order -> whether ADD waits for the session."""
    problems: tuple[str, ...]

    def peers_of(self, network: str, version: int) -> list[str]:
        family = {peer.name: peer.address.version for peer in self.peers}
        return [name for name in self.waits.get(network, {}) if family[name] == version]


def network_plan(
    networks: Iterable[Network], subnets: Iterable[Subnet], settings: SpeakerSettings
) -> NetworkPlan:
    by_name = {n.name: n for n in networks}
    bgp_networks = tuple(oldest_first(n for n in by_name.values() if is_bgp(n)))
    peers: dict[str, Peer] = {}
    owners: dict[str, str] = {}
    listings: dict[str, tuple[PeerListing, ...]] = {}
    waits: dict[str, dict[str, bool]] = {}
    for network in bgp_networks:
        entries = []
        waiting: dict[str, bool] = {}
        for listed in network.spec.config.bgp_peers if network.spec.config else []:
            entry = _listing(network, listed, settings, peers, owners)
            entries.append(entry)
            if entry.peer is not None:
                wait = not listed.allow_not_established
                waiting[entry.peer] = waiting.get(entry.peer, False) or wait
        listings[network.name] = tuple(entries)
        waits[network.name] = waiting
    partial = NetworkPlan(tuple(peers[n] for n in sorted(peers)), by_name, bgp_networks, {},
                          listings, waits, ())  # fmt: skip
    table = RouteTable()
    problems: list[str] = []
    for subnet in sorted(subnets, key=lambda s: s.name):
        owner = by_name.get(subnet.spec.network)
        if owner is None or not is_bgp(owner):
            continue
        try:
            prefix = ipaddress.ip_network(subnet.spec.range.cidr)
        except ValueError:
            problems.append(f"subnet {subnet.name}: {subnet.spec.range.cidr} is no CIDR")
            continue
        clash = table.add(partial.peers_of(owner.name, prefix.version), Route(prefix))
        if clash is not None:
            problems.append(f"subnet {subnet.name}: {clash}")
    return dataclasses.replace(partial, subnet_routes=table.snapshot(), problems=tuple(problems))


def _listing(
    network: Network,
    listed: BGPPeer,
    settings: SpeakerSettings,
    peers: dict[str, Peer],
    owners: dict[str, str],
) -> PeerListing:
    if network.spec.net_id is None:
        return PeerListing(listed.address, None, "the network has no netID (its local AS)")
    try:
        address = ipaddress.ip_address(listed.address)
        grace = listed.graceful_restart_seconds
        peer = Peer(
            address,
            listed.asn,
            network.spec.net_id,
            password=listed.password or None,
            hold_time=listed.hold_time,
            graceful_restart_seconds=DEFAULT_GRACEFUL_RESTART_SECONDS if grace is None else grace,
            multihop=settings.multihop,
            local_address=settings.local_addresses.get(address.version),
            families=frozenset({Family.of(address)}),
        )
    except (ValueError, BGPError) as exc:
        return PeerListing(listed.address, None, str(exc))
    known = peers.setdefault(peer.name, peer)
    if known == peer:
        owners.setdefault(peer.name, network.name)
        return PeerListing(listed.address, peer.name)
    note = (
        f"listed with other settings by network {owners[peer.name]}, whose settings the "
        "session uses"
    )
    return PeerListing(listed.address, peer.name, note)


def pod_plan(
    instance: IPInstance, net: NetworkPlan, node_of: Callable[[str], Node | None]
) -> PodRoute | str | None:
    """The IPInstance's route (a PodRoute), why it cannot have one (a problem), or None when
    it has none to have (not a BGP pod, released, its node away or not ready)."""
    network = net.networks.get(instance.spec.network)
    if network is None or not (is_bgp(network) or is_global_bgp(network)):
        return None
    binding = instance.spec.binding
    node_name = binding.node_name if binding else None
    if not node_name or instance.metadata.deletion_timestamp:
        return None
    what = f"ipinstance {instance.name}"
    try:
        address = ipaddress.ip_interface(instance.spec.address.ip).ip
    except ValueError:
        return f"{what}: {instance.spec.address.ip} is no address"
    node = node_of(node_name)
    if node is None or not node_ready(node):
        return None
    next_hop = internal_ip(node, address.version)
    if next_hop is None:
        return f"{what}: node {node_name} has no IPv{address.version} InternalIP"
    speaking = network
    if is_global_bgp(network):
        attaching = [n for n in net.bgp_networks if _selects(n, node.metadata.labels)]
        if not attaching:
            return f"{what}: node {node_name} is attached to no BGP network"
        speaking = attaching[0]
    peers = net.peers_of(speaking.name, address.version)
    if not peers:
        return f"{what}: network {speaking.name} has no usable IPv{address.version} peer"
    waits = net.waits[speaking.name]
    return PodRoute(
        instance.name,
        node_name,
        pod_route(address, next_hop, no_export=is_bgp(network)),
        frozenset(peers),
        frozenset(peer for peer in peers if waits[peer]),
    )


class RouteTable:
    """Each peer's routes by prefix; a route whose prefix a peer already has another route
    for is refused (a problem), so one prefix never has two routes."""

    def __init__(self, routes: Mapping[str, frozenset[Route]] | None = None):
        self._by_peer: dict[str, dict[object, Route]] = {
            peer: {route.prefix: route for route in held} for peer, held in (routes or {}).items()
        }

    def add(self, peers: Iterable[str], route: Route) -> str | None:
        """Give ``route`` to every one of ``peers``; the clash instead, and to none, when one
        of them has another route for its prefix."""
        wanted = list(peers)
        for peer in wanted:
            current = self._by_peer.get(peer, {}).get(route.prefix)
            if current is not None and current != route:
                return f"{route.prefix} is already announced as {current}"
        for peer in wanted:
            self._by_peer.setdefault(peer, {})[route.prefix] = route
        return None

    def remove(self, peers: Iterable[str], route: Route) -> None:
        for peer in peers:
            held = self._by_peer.get(peer, {})
            if held.get(route.prefix) == route:
                del held[route.prefix]

    def routes(self, peer: str) -> frozenset[Route]:
        return frozenset(self._by_peer.get(peer, {}).values())

    def get(self, peer: str, prefix: IPNetwork) -> Route | None:
        """The route ``peer`` has for ``prefix``, if any."""
        return self._by_peer.get(peer, {}).get(prefix)

    def count(self, peer: str) -> int:
        return len(self._by_peer.get(peer, {}))

    def snapshot(self) -> dict[str, frozenset[Route]]:
        return {peer: frozenset(held.values()) for peer, held in self._by_peer.items()}


def plan(
    networks: Iterable[Network],
    subnets: Iterable[Subnet],
    instances: Iterable[IPInstance],
    nodes: Iterable[Node],
    settings: SpeakerSettings | None = None,
) -> Plan:
    """Everything at once (the start, and any change of a network or subnet)."""
    net = network_plan(networks, subnets, settings or SpeakerSettings())
    table = RouteTable(net.subnet_routes)
    node_by_name = {n.name: n for n in nodes}
    pods: dict[str, PodRoute] = {}
    problems = list(net.problems)
    for instance in sorted(instances, key=lambda i: i.name):
        planned = pod_plan(instance, net, node_by_name.get)
        if isinstance(planned, str):
            problems.append(planned)
        elif planned is not None:
            clash = table.add(planned.peers, planned.route)
            if clash is None:
                pods[instance.name] = planned
            else:
                problems.append(f"ipinstance {instance.name}: {clash}")
    return Plan(
        net,
        peers=net.peers,
        routes={peer.name: table.routes(peer.name) for peer in net.peers},
        pods=pods,
        listings=net.listings,
        problems=tuple(problems),
    )


def announced(
    pod: PodRoute,
    states: Mapping[str, SessionState],
    acked: Mapping[str, Container[Route]],
) -> bool:
    """Whether ``pod``'s route is announced: every peer it goes to holds it (ExaBGP
    acknowledged it), and every one of them its ADD waits for is Established."""
    return all(pod.route in acked.get(peer, frozenset()) for peer in pod.peers) and all(
        states.get(peer) is SessionState.ESTABLISHED for peer in pod.established
    )
