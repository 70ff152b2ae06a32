"""The pure compiler: policies, every pod, namespaces -> rule sets for this node's pods.

For each local pod (a :class:`PodEndpoint` with ``host_interface``) and each direction: which
policies isolate it and which of their rules allow traffic. A rule's peers depend only on the
policy, not on the pod it protects, so they are compiled once per rule (:class:`PeerRule`)
and shared by every pod the policy selects (the renderer gives each its own named set, so a
pod coming or going is a few element changes, not a new chain). Ports are compiled per pod
(:class:`PodAllow`), because upstream resolves a named port on the destination pod: for
ingress that is the protected pod itself; for egress it is each peer pod, so an egress named
port becomes (peer address, port) pairs on the shared rule (``PeerRule.peer_ports``).

Two upstream exceptions are not rules here but fixed parts of every isolated pod's chain,
kept by the renderer and the evaluator alike: traffic between a pod and its own node
(``node_addresses``), and a pod's traffic to itself.

The output is sorted tuples of frozen dataclasses: two compilations compare, hash and diff
cheaply, and the same inputs always give the same output.
"""

from __future__ import annotations

import dataclasses
import hashlib
import ipaddress
from collections.abc import Iterable, Mapping, Sequence

from hybridnet.policy.model import (
    MAX_PORT,
    Direction,
    IPAddress,
    IPNetwork,
    LabelSelector,
    NamespaceInfo,
    Peer,
    PodEndpoint,
    Policy,
    PortSpec,
    Problem,
    Protocol,
    Rule,
)

NAMESPACE_NAME_LABEL = "kubernetes.io/metadata.name"


@dataclasses.dataclass(frozen=True, order=True, slots=True)
class RuleRef:
    """Which rule of which policy: ``ns/name ingress[0]``."""

    namespace: str
    name: str
    direction: Direction
    index: int

    @property
    def policy(self) -> str:
        return f"{self.namespace}/{self.name}"

    def describe(self) -> str:
        return f"{self.policy} {self.direction.lower()}[{self.index}]"


@dataclasses.dataclass(frozen=True, order=True, slots=True)
class PortRange:
    """Destination ports ``first``..``last`` (inclusive) of one protocol; 0-65535 is every
    port of it."""

    protocol: Protocol
    first: int
    last: int

    def contains(self, protocol: Protocol, port: int) -> bool:
        return protocol is self.protocol and self.first <= port <= self.last

    def describe(self) -> str:
        if (self.first, self.last) == (0, MAX_PORT):
            return f"{self.protocol} (every port)"
        span = str(self.first) if self.first == self.last else f"{self.first}-{self.last}"
        return f"{span}/{self.protocol}"


@dataclasses.dataclass(frozen=True, slots=True)
class PeerRule:
    """The peers of one rule. ``peers`` None: any address; else pod addresses (/32, /128) and
    ipBlocks without their excepts, merged, sorted. ``peer_ports``: egress named ports
    resolved on each peer pod, as (pod address, port) pairs."""

    ref: RuleRef
    peers: tuple[IPNetwork, ...] | None
    peer_ports: tuple[tuple[IPAddress, PortRange], ...] = ()
    named_ports: bool = False
    """Whether the rule has egress named ports (then ``peer_ports`` is kept, even empty)."""
    peer_key: str = ""
    """Names the peer definition (the peers as written, and the policy's namespace where
    they depend on it): rules with the same one share ``peers`` and one set in the kernel."""
    named_key: str = ""
    """Names the peer definition and the named ports: rules with the same one share
    ``peer_ports``."""
    peer_text: str = ""
    """The peer definition for people (``ns x: pods app=web``)."""

    def matches_peer(self, address: IPAddress) -> bool:
        return self.peers is None or any(address in n for n in self.peers)

    def matches_peer_port(self, address: IPAddress, protocol: Protocol, port: int) -> bool:
        return any(a == address and r.contains(protocol, port) for a, r in self.peer_ports)


@dataclasses.dataclass(frozen=True, order=True, slots=True)
class PodAllow:
    """One rule as it applies to one pod: ``ports`` None is any port and protocol; an empty
    tuple allows only what the rule's ``peer_ports`` allow (or nothing)."""

    ref: RuleRef
    ports: tuple[PortRange, ...] | None

    def matches_port(self, protocol: Protocol, port: int) -> bool:
        return self.ports is None or any(r.contains(protocol, port) for r in self.ports)


@dataclasses.dataclass(frozen=True, slots=True)
class DirectionRules:
    isolated_by: tuple[str, ...] = ()
    """Keys of the policies that isolate the pod in this direction; none: all is allowed."""
    allows: tuple[PodAllow, ...] = ()

    @property
    def isolated(self) -> bool:
        return bool(self.isolated_by)


@dataclasses.dataclass(frozen=True, slots=True)
class PodRules:
    namespace: str
    name: str
    interface: str
    addresses: tuple[IPAddress, ...]
    ingress: DirectionRules
    egress: DirectionRules

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"

    def direction(self, direction: Direction) -> DirectionRules:
        return self.ingress if direction is Direction.INGRESS else self.egress


@dataclasses.dataclass(frozen=True, slots=True)
class Compilation:
    node_addresses: tuple[IPAddress, ...]
    pods: tuple[PodRules, ...]
    """Every local pod, isolated or not, sorted by namespace and name."""
    rules: tuple[PeerRule, ...]
    """The rules some local pod uses, sorted by reference."""
    problems: tuple[Problem, ...] = ()

    def rule_index(self) -> dict[RuleRef, PeerRule]:
        return {rule.ref: rule for rule in self.rules}

    def pod_of(self, address: IPAddress) -> PodRules | None:
        for pod in self.pods:
            if address in pod.addresses:
                return pod
        return None


# --------------------------------------------------------------------------- selection


class _Cluster:
    """Pods indexed by namespace and label, namespaces by name; selector results cached (the
    same selector in many policies is matched once)."""

    def __init__(self, pods: Sequence[PodEndpoint], namespaces: Sequence[NamespaceInfo]):
        self.pods = sorted(pods, key=lambda p: (p.namespace, p.name))
        self.by_namespace: dict[str, list[int]] = {}
        self.by_label: dict[tuple[str, str, str], set[int]] = {}
        for position, pod in enumerate(self.pods):
            self.by_namespace.setdefault(pod.namespace, []).append(position)
            for item in pod.labels.items():
                self.by_label.setdefault((pod.namespace, *item), set()).add(position)
        self.namespace_labels: dict[str, Mapping[str, str]] = {
            name: {NAMESPACE_NAME_LABEL: name} for name in self.by_namespace
        }
        for namespace in namespaces:
            self.namespace_labels[namespace.name] = {
                NAMESPACE_NAME_LABEL: namespace.name,
                **namespace.labels,
            }
        self._selected: dict[tuple[str, LabelSelector | None], tuple[int, ...]] = {}
        self._namespaces: dict[LabelSelector, tuple[str, ...]] = {}

    def select(self, namespace: str, selector: LabelSelector | None) -> tuple[int, ...]:
        """Positions of the pods of ``namespace`` the selector matches (None: all)."""
        cache_key = (namespace, selector)
        found = self._selected.get(cache_key)
        if found is not None:
            return found
        members = self.by_namespace.get(namespace, [])
        if selector is None or selector.selects_all:
            found = tuple(members)
        elif selector.match_labels:
            candidates = set.intersection(
                *(self.by_label.get((namespace, k, v), set()) for k, v in selector.match_labels)
            )
            found = tuple(sorted(p for p in candidates if selector.matches(self.pods[p].labels)))
        else:
            found = tuple(p for p in members if selector.matches(self.pods[p].labels))
        self._selected[cache_key] = found
        return found

    def namespaces(self, selector: LabelSelector) -> tuple[str, ...]:
        found = self._namespaces.get(selector)
        if found is None:
            found = tuple(
                sorted(n for n, labels in self.namespace_labels.items() if selector.matches(labels))
            )
            self._namespaces[selector] = found
        return found

    def peer_pods(self, peer: Peer, policy_namespace: str) -> Iterable[int]:
        if peer.ip_block is not None:
            block = peer.ip_block
            return (
                p
                for p, pod in enumerate(self.pods)
                if any(block.contains(a) for a in pod.addresses)
            )
        if peer.namespace_selector is None:
            return self.select(policy_namespace, peer.pod_selector)
        return (
            p
            for namespace in self.namespaces(peer.namespace_selector)
            for p in self.select(namespace, peer.pod_selector)
        )


# --------------------------------------------------------------------------- compiling


def _host_network(address: IPAddress) -> IPNetwork:
    return ipaddress.ip_network(address)


def _merged(networks: Iterable[IPNetwork]) -> tuple[IPNetwork, ...]:
    """Without the networks another one covers, sorted: disjoint, as an interval set needs.
    Neighbours are not joined, so one pod coming or going is one element, not a reshuffle
    of merged prefixes."""
    ordered = sorted(set(networks), key=lambda n: (n.version, int(n.network_address), n.prefixlen))
    kept: list[IPNetwork] = []
    for network in ordered:
        if kept and kept[-1].version == network.version and network.subnet_of(kept[-1]):  # type: ignore[arg-type]
            continue
        kept.append(network)
    return tuple(kept)


def _fixed_range(spec: PortSpec) -> PortRange | None:
    """The ports of a spec that needs no pod to resolve; None for a named port."""
    if spec.port is None:
        return PortRange(spec.protocol, 0, MAX_PORT)
    if isinstance(spec.port, int):
        return PortRange(spec.protocol, spec.port, spec.end_port or spec.port)
    return None


class _Compiler:
    def __init__(
        self,
        policies: Sequence[Policy],
        pods: Sequence[PodEndpoint],
        namespaces: Sequence[NamespaceInfo],
    ):
        self.cluster = _Cluster(pods, namespaces)
        self.policies_by_namespace: dict[str, list[Policy]] = {}
        for policy in sorted(policies, key=lambda p: (p.namespace, p.name)):
            self.policies_by_namespace.setdefault(policy.namespace, []).append(policy)
        self.rules: dict[RuleRef, PeerRule] = {}
        self.problems: set[Problem] = set()
        self.peer_cache: dict[str, tuple[IPNetwork, ...]] = {}
        self.named_cache: dict[
            tuple[str, tuple[Peer, ...], str, Protocol], set[tuple[IPAddress, PortRange]]
        ] = {}

    def pod_rules(self, pod: PodEndpoint, interface: str) -> PodRules:
        selecting = [
            policy
            for policy in self.policies_by_namespace.get(pod.namespace, ())
            if policy.pod_selector.matches(pod.labels)
        ]
        return PodRules(
            namespace=pod.namespace,
            name=pod.name,
            interface=interface,
            addresses=pod.addresses,
            ingress=self.direction(pod, selecting, Direction.INGRESS),
            egress=self.direction(pod, selecting, Direction.EGRESS),
        )

    def direction(
        self, pod: PodEndpoint, selecting: Sequence[Policy], direction: Direction
    ) -> DirectionRules:
        isolating = [p for p in selecting if p.isolates(direction)]
        allows = []
        for policy in isolating:
            for index, rule in enumerate(policy.rules(direction)):
                ref = RuleRef(policy.namespace, policy.name, direction, index)
                if ref not in self.rules:
                    self.rules[ref] = self.peer_rule(policy, ref, rule)
                allows.append(PodAllow(ref, self.pod_ports(pod, policy, ref, rule)))
        return DirectionRules(tuple(p.key for p in isolating), tuple(sorted(allows)))

    def peer_rule(self, policy: Policy, ref: RuleRef, rule: Rule) -> PeerRule:
        scope = _scope(policy, rule)
        peer_key = _digest(("peers", scope, rule.peers)) if rule.peers else ""
        peers: tuple[IPNetwork, ...] | None = None
        if rule.peers:
            peers = self.peer_cache.get(peer_key)
            if peers is None:
                peers = self.peer_cache[peer_key] = self.peer_networks(policy, rule)
        named = tuple(
            (position, spec.port, spec.protocol)
            for position, spec in enumerate(rule.ports)
            if isinstance(spec.port, str)
        )
        if ref.direction is not Direction.EGRESS:
            named = ()
        pairs: set[tuple[IPAddress, PortRange]] = set()
        for position, name, protocol in named:
            found = self.egress_named(policy, rule, name, protocol)
            if not found:
                self.unresolved(ref, position, rule.ports[position], "no peer pod of this rule")
            pairs |= found
        peer_text = "; ".join(p.describe() for p in rule.peers) or "any peer"
        return PeerRule(
            ref=ref,
            peers=peers,
            peer_ports=tuple(sorted(pairs, key=_pair_order)),
            named_ports=bool(named),
            peer_key=peer_key,
            named_key=(
                _digest(("named", scope, rule.peers, tuple(sorted({n[1:] for n in named}))))
                if named
                else ""
            ),
            peer_text=f"ns {scope}: {peer_text}" if scope else peer_text,
        )

    def peer_networks(self, policy: Policy, rule: Rule) -> tuple[IPNetwork, ...]:
        networks: list[IPNetwork] = []
        for peer in rule.peers:
            if peer.ip_block is not None:
                networks.extend(peer.ip_block.networks())
            else:
                for position in self.cluster.peer_pods(peer, policy.namespace):
                    networks.extend(map(_host_network, self.cluster.pods[position].addresses))
        return _merged(networks)

    def egress_named(
        self, policy: Policy, rule: Rule, name: str, protocol: Protocol
    ) -> set[tuple[IPAddress, PortRange]]:
        """(address, port) for every peer pod of the rule that has the named port."""
        key = (_scope(policy, rule), rule.peers, name, protocol)
        cached = self.named_cache.get(key)
        if cached is not None:
            return cached
        pairs: set[tuple[IPAddress, PortRange]] = set()
        for peer_pod, addresses in self.peer_addresses(policy, rule):
            number = peer_pod.port_named(name, protocol)
            if number is not None:
                pairs |= {(a, PortRange(protocol, number, number)) for a in addresses}
        self.named_cache[key] = pairs
        return pairs

    def peer_addresses(
        self, policy: Policy, rule: Rule
    ) -> Iterable[tuple[PodEndpoint, tuple[IPAddress, ...]]]:
        """The pods a rule's peers name, each with its addresses the peers cover (an ipBlock
        covers only the addresses inside it); no peers: every pod, every address."""
        if not rule.peers:
            return ((pod, pod.addresses) for pod in self.cluster.pods)
        covered: dict[int, set[IPAddress]] = {}
        for peer in rule.peers:
            for position in self.cluster.peer_pods(peer, policy.namespace):
                addresses = self.cluster.pods[position].addresses
                if peer.ip_block is not None:
                    block = peer.ip_block
                    addresses = tuple(a for a in addresses if block.contains(a))
                covered.setdefault(position, set()).update(addresses)
        return (
            (self.cluster.pods[p], tuple(sorted(a, key=_address_order)))
            for p, a in sorted(covered.items())
        )

    def pod_ports(
        self, pod: PodEndpoint, policy: Policy, ref: RuleRef, rule: Rule
    ) -> tuple[PortRange, ...] | None:
        if not rule.ports:
            return None
        ranges = set()
        for position, spec in enumerate(rule.ports):
            fixed = _fixed_range(spec)
            if fixed is not None:
                ranges.add(fixed)
            elif ref.direction is Direction.INGRESS and isinstance(spec.port, str):
                number = pod.port_named(spec.port, spec.protocol)
                if number is not None:
                    ranges.add(PortRange(spec.protocol, number, number))
                elif not self.selected_pod_has(policy, spec.port, spec.protocol):
                    self.unresolved(ref, position, spec, "no pod this policy selects")
        return tuple(sorted(ranges))

    def selected_pod_has(self, policy: Policy, name: str, protocol: Protocol) -> bool:
        return any(
            self.cluster.pods[p].port_named(name, protocol) is not None
            for p in self.cluster.select(policy.namespace, policy.pod_selector)
        )

    def unresolved(self, ref: RuleRef, position: int, spec: PortSpec, who: str) -> None:
        self.problems.add(
            Problem(
                ref.policy,
                "NamedPortUnresolved",
                f"spec.{ref.direction.lower()}[{ref.index}].ports[{position}]: {who} has a "
                f"{spec.protocol} port named {spec.port!r}: it matches nothing",
            )
        )


def _scope(policy: Policy, rule: Rule) -> str:
    """The policy's namespace when the rule's peers depend on it (a pod selector without a
    namespace selector), else empty."""
    own = any(p.ip_block is None and p.namespace_selector is None for p in rule.peers)
    return policy.namespace if own else ""


def _digest(definition: object) -> str:
    """A short stable name for a definition made of frozen dataclasses and tuples (their
    repr is deterministic)."""
    return hashlib.sha256(repr(definition).encode()).hexdigest()[:16]


def _address_order(address: IPAddress) -> tuple[int, int]:
    return (address.version, int(address))


def _pair_order(pair: tuple[IPAddress, PortRange]) -> tuple[int, int, PortRange]:
    return (*_address_order(pair[0]), pair[1])


def compile_node(
    policies: Sequence[Policy],
    pods: Sequence[PodEndpoint],
    namespaces: Sequence[NamespaceInfo],
    node_addresses: Iterable[IPAddress] = (),
) -> Compilation:
    """Rule sets for the pods with a ``host_interface`` (this node's); ``pods`` is every pod
    of the cluster (peers), local ones included. A second local pod claiming an interface
    another already has is left out and reported."""
    compiler = _Compiler(policies, pods, namespaces)
    local: list[PodRules] = []
    interfaces: dict[str, str] = {}
    for pod in compiler.cluster.pods:
        if pod.host_interface is None:
            continue
        holder = interfaces.setdefault(pod.host_interface, pod.key)
        if holder != pod.key:
            compiler.problems.add(
                Problem(
                    pod.key,
                    "DuplicateInterface",
                    f"host interface {pod.host_interface} is already {holder}'s: not enforced",
                )
            )
            continue
        local.append(compiler.pod_rules(pod, pod.host_interface))
    used = {allow.ref for pod_rules in local for d in (pod_rules.ingress, pod_rules.egress)
            for allow in d.allows}  # fmt: skip
    return Compilation(
        node_addresses=tuple(sorted(set(node_addresses), key=_address_order)),
        pods=tuple(local),
        rules=tuple(compiler.rules[ref] for ref in sorted(used)),
        problems=tuple(sorted(compiler.problems)),
    )
