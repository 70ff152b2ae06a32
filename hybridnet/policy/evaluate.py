"""Would a new connection pass? The compiled rules read the way the rendered chains run them,
for tests (the truth table) and for ``hybridnet-ctl policy explain``.

A flow passes when the source pod's egress and the destination pod's ingress both let it
(each side only where that pod is in the compilation: a node judges only its own pods). A
side lets it when, in this order: the peer is the pod itself (a pod cannot block access to
itself), the peer is an address of the pod's node (always allowed upstream), no policy
isolates the pod in that direction, or a rule of an isolating policy matches peer and port.
Replies of an allowed connection pass by conntrack; this evaluates the first packet.
"""

from __future__ import annotations

import dataclasses
import ipaddress

from hybridnet.policy.compiler import Compilation, PeerRule, PodRules, RuleRef
from hybridnet.policy.errors import BadFlow
from hybridnet.policy.model import MAX_PORT, Direction, IPAddress, Protocol

SELF = "the pod itself"
NODE = "its own node"
NOT_ISOLATED = "no policy isolates it"
RULE = "allowed by a rule"
NO_RULE = "no rule allows it"


@dataclasses.dataclass(frozen=True, slots=True)
class SideVerdict:
    pod: str
    direction: Direction
    allowed: bool
    reason: str
    """One of SELF, NODE, NOT_ISOLATED, RULE, NO_RULE."""
    isolated_by: tuple[str, ...]
    allowed_by: tuple[RuleRef, ...] = ()


@dataclasses.dataclass(frozen=True, slots=True)
class FlowVerdict:
    egress: SideVerdict | None
    """The source pod's side; None when the source is not a pod of the compilation."""
    ingress: SideVerdict | None
    """The destination pod's side; None when the destination is not one."""

    @property
    def allowed(self) -> bool:
        return all(side.allowed for side in (self.egress, self.ingress) if side is not None)


def _address(value: IPAddress | str, what: str) -> IPAddress:
    if isinstance(value, ipaddress.IPv4Address | ipaddress.IPv6Address):
        return value
    try:
        return ipaddress.ip_address(value)
    except ValueError:
        raise BadFlow(f"{what} {value!r} is not an IP address") from None


def _protocol(value: Protocol | str) -> Protocol:
    try:
        return Protocol(str(value).upper())
    except ValueError:
        raise BadFlow(f"protocol {value!r}: must be TCP, UDP or SCTP") from None


def _side(
    *,
    compilation: Compilation,
    rules: dict[RuleRef, PeerRule],
    pod: PodRules,
    direction: Direction,
    peer: IPAddress,
    protocol: Protocol,
    port: int,
) -> SideVerdict:
    rule_set = pod.direction(direction)

    def verdict(allowed: bool, reason: str, by: tuple[RuleRef, ...] = ()) -> SideVerdict:
        return SideVerdict(pod.key, direction, allowed, reason, rule_set.isolated_by, by)

    if peer in pod.addresses:
        return verdict(True, SELF)
    if peer in compilation.node_addresses:
        return verdict(True, NODE)
    if not rule_set.isolated:
        return verdict(True, NOT_ISOLATED)
    matching = []
    for allow in rule_set.allows:
        shared = rules[allow.ref]
        if (shared.matches_peer(peer) and allow.matches_port(protocol, port)) or (
            shared.matches_peer_port(peer, protocol, port)
        ):
            matching.append(allow.ref)
    if matching:
        return verdict(True, RULE, tuple(matching))
    return verdict(False, NO_RULE)


def explain(
    compilation: Compilation,
    source: IPAddress | str,
    destination: IPAddress | str,
    port: int,
    protocol: Protocol | str = Protocol.TCP,
) -> FlowVerdict:
    """Both sides of a new connection from ``source`` to ``destination`` port ``port``."""
    src, dst = _address(source, "source"), _address(destination, "destination")
    if src.version != dst.version:
        raise BadFlow(f"{src} and {dst} are not of one IP version")
    if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= MAX_PORT:
        raise BadFlow(f"port {port!r}: must be 0-{MAX_PORT}")
    proto = _protocol(protocol)
    rules = compilation.rule_index()
    sender, receiver = compilation.pod_of(src), compilation.pod_of(dst)
    egress = ingress = None
    if sender is not None:
        egress = _side(
            compilation=compilation, rules=rules, pod=sender, direction=Direction.EGRESS,
            peer=dst, protocol=proto, port=port,
        )  # fmt: skip
    if receiver is not None:
        ingress = _side(
            compilation=compilation, rules=rules, pod=receiver, direction=Direction.INGRESS,
            peer=src, protocol=proto, port=port,
        )  # fmt: skip
    return FlowVerdict(egress, ingress)


def allowed(
    compilation: Compilation,
    source: IPAddress | str,
    destination: IPAddress | str,
    port: int,
    protocol: Protocol | str = Protocol.TCP,
) -> bool:
    return explain(compilation, source, destination, port, protocol).allowed
