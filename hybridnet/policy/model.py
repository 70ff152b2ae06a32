"""NetworkPolicy (``networking.k8s.io/v1``) as typed, validated, immutable data.

The API server validates what it stores; the embedded store does not, so the same checks run
here, with the API server's field paths. What a broken part costs follows upstream's allowlist
semantics and fails closed:

* an unreadable ``podSelector`` or ``policyTypes`` raises :class:`InvalidPolicy` (nothing can
  be said about which pods the policy isolates);
* an unreadable ingress or egress rule is dropped and reported: the policy still isolates the
  pods it selects, and a dropped rule allows nothing, exactly like a rule that matches nothing.

``policyTypes`` defaults the way upstream documents: Ingress always, Egress when the policy has
egress rules. Pods and namespaces come in as :class:`PodEndpoint` and :class:`NamespaceInfo`,
built by the caller (the daemon from its informers, the CLI from the store).
"""

from __future__ import annotations

import dataclasses
import enum
import ipaddress
import re
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from hybridnet.policy.errors import InvalidPolicy

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

MAX_PORT = 65535


class Protocol(enum.StrEnum):
    TCP = "TCP"
    UDP = "UDP"
    SCTP = "SCTP"


class Direction(enum.StrEnum):
    INGRESS = "Ingress"
    EGRESS = "Egress"


class Operator(enum.StrEnum):
    IN = "In"
    NOT_IN = "NotIn"
    EXISTS = "Exists"
    DOES_NOT_EXIST = "DoesNotExist"


# --------------------------------------------------------------------------- selectors


@dataclasses.dataclass(frozen=True, order=True, slots=True)
class Requirement:
    """One ``matchExpressions`` entry; ``values`` sorted and without duplicates."""

    key: str
    operator: Operator
    values: tuple[str, ...] = ()

    def matches(self, labels: Mapping[str, str]) -> bool:
        if self.operator is Operator.EXISTS:
            return self.key in labels
        if self.operator is Operator.DOES_NOT_EXIST:
            return self.key not in labels
        present = self.key in labels and labels[self.key] in self.values
        return present if self.operator is Operator.IN else not present

    def describe(self) -> str:
        if self.operator is Operator.EXISTS:
            return self.key
        if self.operator is Operator.DOES_NOT_EXIST:
            return f"!{self.key}"
        word = "in" if self.operator is Operator.IN else "notin"
        return f"{self.key} {word} ({','.join(self.values)})"


@dataclasses.dataclass(frozen=True, order=True, slots=True)
class LabelSelector:
    """``matchLabels`` and ``matchExpressions``, all ANDed; empty selects everything."""

    match_labels: tuple[tuple[str, str], ...] = ()
    expressions: tuple[Requirement, ...] = ()

    @property
    def selects_all(self) -> bool:
        return not self.match_labels and not self.expressions

    def matches(self, labels: Mapping[str, str]) -> bool:
        for key, value in self.match_labels:
            if labels.get(key) != value:
                return False
        return all(r.matches(labels) for r in self.expressions)

    def describe(self) -> str:
        """kubectl's selector text (``app=web,tier in (a,b)``); ``<all>`` when empty."""
        parts = [f"{k}={v}" for k, v in self.match_labels]
        parts += [r.describe() for r in self.expressions]
        return ",".join(parts) or "<all>"


# --------------------------------------------------------------------------- rules


@dataclasses.dataclass(frozen=True, slots=True)
class IPBlock:
    cidr: IPNetwork
    excepts: tuple[IPNetwork, ...] = ()

    def networks(self) -> tuple[IPNetwork, ...]:
        """The block without its excepts, as non-overlapping prefixes, sorted."""
        remaining: list[IPNetwork] = [self.cidr]
        for hole in self.excepts:
            next_round: list[IPNetwork] = []
            for network in remaining:
                if hole.subnet_of(network):  # type: ignore[arg-type]
                    next_round.extend(network.address_exclude(hole))  # type: ignore[arg-type]
                elif not network.subnet_of(hole):  # type: ignore[arg-type]
                    next_round.append(network)
            remaining = next_round
        return tuple(sorted(ipaddress.collapse_addresses(remaining)))  # type: ignore[type-var]

    def contains(self, address: IPAddress) -> bool:
        if address.version != self.cidr.version or address not in self.cidr:
            return False
        return not any(address in hole for hole in self.excepts)

    def describe(self) -> str:
        holes = f" except {', '.join(str(h) for h in self.excepts)}" if self.excepts else ""
        return f"{self.cidr}{holes}"


@dataclasses.dataclass(frozen=True, slots=True)
class Peer:
    """One ``from``/``to`` entry: an ipBlock, or pods by selectors. With only
    ``pod_selector``: pods of the policy's namespace; with only ``namespace_selector``: every
    pod of the namespaces it selects; with both: the pods matching the pod selector in those
    namespaces."""

    pod_selector: LabelSelector | None = None
    namespace_selector: LabelSelector | None = None
    ip_block: IPBlock | None = None

    def describe(self) -> str:
        if self.ip_block is not None:
            return f"ipBlock {self.ip_block.describe()}"
        parts = []
        if self.namespace_selector is not None:
            parts.append(f"namespaces {self.namespace_selector.describe()}")
        if self.pod_selector is not None:
            parts.append(f"pods {self.pod_selector.describe()}")
        return " and ".join(parts)


@dataclasses.dataclass(frozen=True, order=True, slots=True)
class PortSpec:
    """One ``ports`` entry. ``port`` None: every port of the protocol; a str: a named container
    port, resolved on the destination pod; ``end_port``: the inclusive end of a range."""

    protocol: Protocol = Protocol.TCP
    port: int | str | None = None
    end_port: int | None = None

    def describe(self) -> str:
        if self.port is None:
            return f"{self.protocol} (every port)"
        if self.end_port is not None:
            return f"{self.port}-{self.end_port}/{self.protocol}"
        return f"{self.port}/{self.protocol}"


@dataclasses.dataclass(frozen=True, slots=True)
class Rule:
    """An ingress or egress rule: traffic matching one of ``peers`` (none: any peer) AND one of
    ``ports`` (none: any port and protocol)."""

    peers: tuple[Peer, ...] = ()
    ports: tuple[PortSpec, ...] = ()


@dataclasses.dataclass(frozen=True, slots=True)
class Policy:
    namespace: str
    name: str
    pod_selector: LabelSelector
    policy_types: frozenset[Direction]
    ingress: tuple[Rule, ...] = ()
    egress: tuple[Rule, ...] = ()

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"

    def rules(self, direction: Direction) -> tuple[Rule, ...]:
        return self.ingress if direction is Direction.INGRESS else self.egress

    def isolates(self, direction: Direction) -> bool:
        return direction in self.policy_types


# --------------------------------------------------------------------------- pods


@dataclasses.dataclass(frozen=True, order=True, slots=True)
class NamedPort:
    name: str
    protocol: Protocol
    port: int


@dataclasses.dataclass(frozen=True, slots=True)
class PodEndpoint:
    """A pod as policy sees it. ``host_interface`` (the host end of its veth) is set for the
    pods of the node being compiled for: those get rule sets."""

    namespace: str
    name: str
    labels: Mapping[str, str]
    addresses: tuple[IPAddress, ...]
    named_ports: tuple[NamedPort, ...] = ()
    host_interface: str | None = None

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"

    def port_named(self, name: str, protocol: Protocol) -> int | None:
        for named in self.named_ports:
            if named.name == name and named.protocol is protocol:
                return named.port
        return None


@dataclasses.dataclass(frozen=True, slots=True)
class NamespaceInfo:
    name: str
    labels: Mapping[str, str]


@dataclasses.dataclass(frozen=True, order=True, slots=True)
class Problem:
    """Something a policy says that cannot be enforced as written (enforced as upstream
    specifies, reported): ``code`` is stable for logs and Events."""

    policy: str
    code: str
    message: str


@dataclasses.dataclass(frozen=True, slots=True)
class ParsedPolicy:
    policy: Policy
    problems: tuple[Problem, ...] = ()


# --------------------------------------------------------------------------- parsing

_LABEL_NAME = re.compile(r"^([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)$")
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_PORT_NAME = re.compile(r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?$")
MAX_LABEL_NAME = 63
MAX_PREFIX = 253
MAX_PORT_NAME = 15


class _RuleError(ValueError):
    def __init__(self, path: str, message: str):
        super().__init__(f"{path}: {message}")
        self.path = path


def _check_key(key: object, path: str) -> str:
    if not isinstance(key, str):
        raise _RuleError(path, "must be a string")
    prefix, _, name = key.rpartition("/")
    if "/" in key and (not prefix or len(prefix) > MAX_PREFIX or not _DNS_SUBDOMAIN.match(prefix)):
        raise _RuleError(path, f"{key!r}: prefix must be a DNS subdomain")
    if len(name) > MAX_LABEL_NAME or not _LABEL_NAME.match(name):
        raise _RuleError(path, f"{key!r}: not a valid label key")
    return key


def _check_value(value: object, path: str) -> str:
    if not isinstance(value, str):
        raise _RuleError(path, "must be a string")
    if value and (len(value) > MAX_LABEL_NAME or not _LABEL_NAME.match(value)):
        raise _RuleError(path, f"{value!r}: not a valid label value")
    return value


def _mapping(value: object, path: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise _RuleError(path, "must be an object")
    return value


def _list(value: object, path: str) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise _RuleError(path, "must be a list")
    return value


def parse_selector(data: object, path: str) -> LabelSelector:
    """A metav1.LabelSelector; raises ValueError naming the field."""
    body = _mapping(data, path)
    labels = body.get("matchLabels") or {}
    labels_path = f"{path}.matchLabels"
    pairs = tuple(
        sorted(
            (_check_key(k, f"{labels_path}.{k}"), _check_value(v, f"{labels_path}.{k}"))
            for k, v in _mapping(labels, labels_path).items()
        )
    )
    expressions = []
    for index, item in enumerate(_list(body.get("matchExpressions"), f"{path}.matchExpressions")):
        where = f"{path}.matchExpressions[{index}]"
        entry = _mapping(item, where)
        key = _check_key(entry.get("key"), f"{where}.key")
        try:
            operator = Operator(str(entry.get("operator")))
        except ValueError:
            choices = ", ".join(o.value for o in Operator)
            raise _RuleError(f"{where}.operator", f"must be one of {choices}") from None
        values = tuple(
            sorted(
                {
                    _check_value(v, f"{where}.values[{i}]")
                    for i, v in enumerate(_list(entry.get("values"), f"{where}.values"))
                }
            )
        )
        if operator in (Operator.IN, Operator.NOT_IN) and not values:
            raise _RuleError(f"{where}.values", f"must be non-empty for {operator}")
        if operator in (Operator.EXISTS, Operator.DOES_NOT_EXIST) and values:
            raise _RuleError(f"{where}.values", f"must be empty for {operator}")
        expressions.append(Requirement(key, operator, values))
    return LabelSelector(pairs, tuple(sorted(set(expressions))))


def _network(text: object, path: str) -> IPNetwork:
    if not isinstance(text, str):
        raise _RuleError(path, "must be a CIDR string")
    try:
        return ipaddress.ip_network(text, strict=False)
    except ValueError:
        raise _RuleError(path, f"{text!r} is not a valid CIDR") from None


def _ip_block(data: object, path: str) -> IPBlock:
    body = _mapping(data, path)
    cidr = _network(body.get("cidr"), f"{path}.cidr")
    excepts = []
    for index, item in enumerate(_list(body.get("except"), f"{path}.except")):
        where = f"{path}.except[{index}]"
        hole = _network(item, where)
        if hole.version != cidr.version or not hole.subnet_of(cidr) or hole == cidr:  # type: ignore[arg-type]
            raise _RuleError(where, f"{hole} must be a strict subset of {cidr}")
        excepts.append(hole)
    return IPBlock(
        cidr, tuple(sorted(set(excepts), key=lambda n: (int(n.network_address), n.prefixlen)))
    )


def _peer(data: object, path: str) -> Peer:
    body = _mapping(data, path)
    pods = body.get("podSelector")
    namespaces = body.get("namespaceSelector")
    block = body.get("ipBlock")
    if block is not None:
        if pods is not None or namespaces is not None:
            raise _RuleError(
                path, "ipBlock may not be combined with podSelector or namespaceSelector"
            )
        return Peer(ip_block=_ip_block(block, f"{path}.ipBlock"))
    if pods is None and namespaces is None:
        raise _RuleError(path, "must specify a peer (podSelector, namespaceSelector or ipBlock)")
    return Peer(
        pod_selector=None if pods is None else parse_selector(pods, f"{path}.podSelector"),
        namespace_selector=(
            None if namespaces is None else parse_selector(namespaces, f"{path}.namespaceSelector")
        ),
    )


def _port_number(value: object, path: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_PORT:
        raise _RuleError(path, f"must be a port number between 1 and {MAX_PORT}")
    return value


def _port(data: object, path: str) -> PortSpec:
    body = _mapping(data, path)
    try:
        protocol = Protocol(body.get("protocol") or Protocol.TCP)
    except ValueError:
        raise _RuleError(f"{path}.protocol", "must be TCP, UDP or SCTP") from None
    raw, end = body.get("port"), body.get("endPort")
    port: int | str | None
    if raw is None:
        port = None
    elif isinstance(raw, str):
        if len(raw) > MAX_PORT_NAME or not _PORT_NAME.match(raw) or "--" in raw:
            raise _RuleError(f"{path}.port", f"{raw!r} is not a valid port name")
        if not any(ch.isalpha() for ch in raw):
            raise _RuleError(f"{path}.port", f"{raw!r}: a port name must contain a letter")
        port = raw
    else:
        port = _port_number(raw, f"{path}.port")
    end_port = None
    if end is not None:
        if not isinstance(port, int):
            raise _RuleError(f"{path}.endPort", "may only be set with a numeric port")
        end_port = _port_number(end, f"{path}.endPort")
        if end_port < port:
            raise _RuleError(f"{path}.endPort", f"must be at least port ({port})")
    return PortSpec(protocol, port, end_port)


def _rule(data: object, path: str, peers_field: str) -> Rule:
    body = _mapping(data, path)
    peers = tuple(
        _peer(item, f"{path}.{peers_field}[{i}]")
        for i, item in enumerate(_list(body.get(peers_field), f"{path}.{peers_field}"))
    )
    ports = tuple(
        _port(item, f"{path}.ports[{i}]")
        for i, item in enumerate(_list(body.get("ports"), f"{path}.ports"))
    )
    return Rule(peers, ports)


def _rules(
    key: str, spec: Mapping[str, Any], field: str, peers_field: str
) -> Iterator[Rule | Problem]:
    try:
        items = _list(spec.get(field), f"spec.{field}")
    except _RuleError as exc:
        yield Problem(key, "InvalidRule", f"{exc}: no {field} rule is enforced")
        return
    for index, item in enumerate(items):
        try:
            yield _rule(item, f"spec.{field}[{index}]", peers_field)
        except _RuleError as exc:
            yield Problem(key, "InvalidRule", f"{exc}: this rule allows nothing")


def _policy_types(key: str, spec: Mapping[str, Any], has_egress: bool) -> frozenset[Direction]:
    raw = spec.get("policyTypes")
    if raw is None or raw == []:
        return frozenset({Direction.INGRESS, *((Direction.EGRESS,) if has_egress else ())})
    if not isinstance(raw, list):
        raise InvalidPolicy(key, "spec.policyTypes", "must be a list")
    types = set()
    for index, item in enumerate(raw):
        try:
            types.add(Direction(item))
        except ValueError:
            raise InvalidPolicy(
                key, f"spec.policyTypes[{index}]", f"{item!r}: must be Ingress or Egress"
            ) from None
    return frozenset(types)


def parse_policy(namespace: str, name: str, spec: Mapping[str, Any]) -> ParsedPolicy:
    """The policy and what of it cannot be enforced; raises InvalidPolicy when it cannot
    select pods at all."""
    key = f"{namespace}/{name}"
    if not isinstance(spec, Mapping):
        raise InvalidPolicy(key, "spec", "must be an object")
    try:
        selector = parse_selector(spec.get("podSelector") or {}, "spec.podSelector")
    except _RuleError as exc:
        raise InvalidPolicy(key, exc.path, str(exc).removeprefix(f"{exc.path}: ")) from None
    problems: list[Problem] = []
    parsed: dict[str, list[Rule]] = {"ingress": [], "egress": []}
    for field, peers_field in (("ingress", "from"), ("egress", "to")):
        for item in _rules(key, spec, field, peers_field):
            if isinstance(item, Problem):
                problems.append(item)
            else:
                parsed[field].append(item)
    egress_given = bool(_list_or_empty(spec.get("egress")))
    return ParsedPolicy(
        Policy(
            namespace=namespace,
            name=name,
            pod_selector=selector,
            policy_types=_policy_types(key, spec, egress_given),
            ingress=tuple(parsed["ingress"]),
            egress=tuple(parsed["egress"]),
        ),
        tuple(problems),
    )


def _list_or_empty(value: object) -> Sequence[Any]:
    return value if isinstance(value, list) else []
