"""Runs the first packet of a connection through a rendered Ruleset the way the forward hook
would, reading the rule text the renderer wrote: the truth table's second, independent
judge (the evaluator reads the compilation; this reads what nft would get).

Only the rule forms the renderer emits are understood; anything else fails the test, so a
new form cannot slip through unjudged.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import re

from hybridnet.policy.model import Direction, IPAddress
from hybridnet.policy.render import BASE_CHAIN, NftSet, Ruleset, full_script

_COMMENT = re.compile(r' comment "[^"]*"$')
_ADDRESS = re.compile(r"^(ip6?) (saddr|daddr) (@\S+|[0-9a-f.:]+) ")
_NAMED = re.compile(r"^(ip6?) (saddr|daddr) \. meta l4proto \. th dport @(\S+) ")
_PORTS = re.compile(r"^meta l4proto \. th dport \{ ([^}]*) \} ")


class UnknownRule(AssertionError):
    pass


@dataclasses.dataclass(frozen=True)
class Packet:
    source: IPAddress
    destination: IPAddress
    protocol: str
    """tcp, udp or sctp."""
    port: int
    in_interface: str
    out_interface: str


def _port_in(elements: str, protocol: str, port: int) -> bool:
    for element in elements.split(","):
        proto, _, span = (part.strip() for part in element.partition("."))
        first, _, last = span.partition("-")
        if proto == protocol and int(first) <= port <= int(last or first):
            return True
    return False


def _in_set(nft_set: NftSet, value: IPAddress) -> bool:
    return any(value in ipaddress.ip_network(e) for e in nft_set.elements)


def _in_named(nft_set: NftSet, value: IPAddress, protocol: str, port: int) -> bool:
    return f"{value} . {protocol} . {port}" in nft_set.elements


def _named_rule(
    rule: str, named: re.Match[str], packet: Packet, sets: dict[str, NftSet]
) -> str | None:
    family, field, set_name = named.groups()
    if (family == "ip") != (packet.source.version == 4):
        return None
    if _COMMENT.sub("", rule)[named.end() :] != "return":
        raise UnknownRule(rule)
    value = packet.source if field == "saddr" else packet.destination
    return "return" if _in_named(sets[set_name], value, packet.protocol, packet.port) else None


def _rule_matches(rule: str, packet: Packet, sets: dict[str, NftSet]) -> str | None:
    """The rule's verdict (``return``, ``drop``) when it matches, else None."""
    text = _COMMENT.sub("", rule)
    if text.startswith("ct state invalid "):
        return None  # the first packet of a connection is ``new``
    if text.startswith("counter name ") and text.endswith(" drop"):
        return "drop"
    version = packet.source.version
    if named := _NAMED.match(text):
        return _named_rule(rule, named, packet, sets)
    if address := _ADDRESS.match(text):
        family, field, operand = address.groups()
        if (family == "ip") != (version == 4):
            return None
        value = packet.source if field == "saddr" else packet.destination
        if operand.startswith("@"):
            if not _in_set(sets[operand[1:]], value):
                return None
        elif value != ipaddress.ip_address(operand):
            return None
        text = text[address.end() :]
    if ports := _PORTS.match(text):
        if not _port_in(ports.group(1), packet.protocol, packet.port):
            return None
        text = text[ports.end() :]
    if text != "return":
        raise UnknownRule(rule)
    return "return"


def _run_chain(rules: tuple[str, ...], packet: Packet, sets: dict[str, NftSet]) -> bool:
    for rule in rules:
        verdict = _rule_matches(rule, packet, sets)
        if verdict == "drop":
            return False
        if verdict == "return":
            return True
    return True


def forward(ruleset: Ruleset, packet: Packet) -> bool:
    """Whether the forward hook of the table accepts a new connection's first packet."""
    script = full_script(ruleset)
    base = ("ct state established,related accept", "iifname vmap", "oifname vmap")
    if not all(line in script for line in base) or f"chain {BASE_CHAIN} {{" not in script:
        raise UnknownRule("the base chain is not the one this simulator knows")
    sets = {s.name: s for s in ruleset.sets}
    chains = {c.name: c.rules for c in ruleset.chains}
    for direction, interface in (
        (Direction.EGRESS, packet.in_interface),
        (Direction.INGRESS, packet.out_interface),
    ):
        targets = [chain for name, chain in ruleset.maps[direction] if name == interface]
        if targets and not _run_chain(chains[targets[0]], packet, sets):
            return False
    return True
