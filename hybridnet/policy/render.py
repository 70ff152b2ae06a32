"""A compilation as one nftables table hybridnet owns, in nft's own syntax (``nft -f``).

The table (family ``inet``, one for IPv4 and IPv6)::

    chain forward   (filter hook forward; policy accept)
        ct state established,related accept       replies of allowed connections pass
        iifname vmap @egress-pods                 the pod's own veth: traffic it sends
        oifname vmap @ingress-pods                towards the pod's veth: traffic it gets
    map ingress-pods / egress-pods                host interface -> jump to the pod's chain
    chain ingress-<if> / egress-<if>              one per isolated pod and direction:
        ct state invalid: counted, dropped
        the pod's node, the pod itself: return    (upstream's exceptions)
        one rule per allowing policy rule and family: return
        everything else: counted (a named counter per chain), dropped
    set node-v4 / node-v6                         the node's addresses
    set peers-<rule>-v4 / -v6                     the peers of one policy rule (interval)
    set named-<rule>-v4 / -v6                     egress named ports: address . proto . port

A pod chain ends its allowed traffic with ``return``, so a flow between two pods of this node
passes the sender's egress chain and then the receiver's ingress chain. Only isolated pods are
in the maps: everything else passes untouched. Traffic the node itself sends to its pods
(kubelet probes) runs through ``output``, not ``forward``, and is never filtered here.

Peer sets are named after the policy rule, not the pod, and shared by every pod it protects;
a pod or label change is element changes in them (:func:`update_script`), a policy change a
few chains flushed and refilled, all in one ``nft -f`` transaction. The first apply (or a
recovery) is :func:`full_script`: the whole table replaced atomically.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from hybridnet.policy.compiler import Compilation, PeerRule, PodAllow, PodRules, PortRange
from hybridnet.policy.model import Direction, IPAddress, IPNetwork

FAMILY = "inet"
DEFAULT_TABLE = "hybridnet-policy"
BASE_CHAIN = "forward"
MAPS = {Direction.INGRESS: "ingress-pods", Direction.EGRESS: "egress-pods"}
NODE_SETS = {4: "node-v4", 6: "node-v6"}
ADDRESS_TYPES = {4: "ipv4_addr", 6: "ipv6_addr"}
ADDRESS_MATCH = {4: "ip", 6: "ip6"}
MAX_COMMENT = 127
"""nft keeps comments of at most 128 bytes, the terminating NUL included."""

_PLAIN_NAME = re.compile(r"^[A-Za-z0-9_]+$")
_TABLE_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_-]*$")


class RenderError(ValueError):
    """A table name nft would not take as a plain identifier."""


@dataclasses.dataclass(frozen=True, slots=True)
class NftSet:
    name: str
    type: str
    flags: tuple[str, ...]
    elements: frozenset[str]
    comment: str = ""

    def declaration(self) -> str:
        parts = [f"type {self.type};"]
        if self.flags:
            parts.append(f"flags {', '.join(self.flags)};")
        if self.comment:
            parts.append(f'comment "{self.comment}";')
        return " ".join(parts)


@dataclasses.dataclass(frozen=True, slots=True)
class NftChain:
    name: str
    rules: tuple[str, ...]


@dataclasses.dataclass(frozen=True, slots=True)
class DropCounter:
    """The named counter of a pod chain's drops, and whose it is (for metrics)."""

    name: str
    namespace: str
    pod: str
    direction: Direction


@dataclasses.dataclass(frozen=True, slots=True)
class Ruleset:
    """The table as data: what :func:`full_script` writes and :func:`update_script` diffs."""

    table: str
    sets: tuple[NftSet, ...]
    maps: Mapping[Direction, frozenset[tuple[str, str]]]
    """Per direction: (host interface, pod chain)."""
    chains: tuple[NftChain, ...]
    """The pod chains (the base chain is fixed)."""
    counters: tuple[DropCounter, ...]

    @property
    def rule_count(self) -> int:
        return len(_base_rules()) + sum(len(c.rules) for c in self.chains)

    @property
    def element_count(self) -> int:
        return sum(len(s.elements) for s in self.sets) + sum(len(m) for m in self.maps.values())


# --------------------------------------------------------------------------- naming


def _safe(text: str) -> str:
    """An interface name as an identifier: itself when plain, else hex (never colliding)."""
    return text if _PLAIN_NAME.match(text) else "x" + text.encode().hex()


def chain_name(direction: Direction, interface: str) -> str:
    return f"{direction.lower()}-{_safe(interface)}"


def counter_name(direction: Direction, interface: str) -> str:
    return f"drop-{chain_name(direction, interface)}"


def peer_set_name(rule: PeerRule, version: int) -> str:
    return f"peers-{rule.peer_key}-v{version}"


def named_set_name(rule: PeerRule, version: int) -> str:
    return f"named-{rule.named_key}-v{version}"


def _comment(text: str) -> str:
    clean = re.sub(r'["\\\n]', "_", text)
    return clean.encode()[:MAX_COMMENT].decode(errors="ignore")


# --------------------------------------------------------------------------- elements


@functools.lru_cache(maxsize=1 << 16)
def _network_text(network: IPNetwork) -> str:
    """nft's form (a host without its /32 or /128); cached: IPv6 text is slow to make, and
    the same pod addresses are written on every compilation."""
    if network.prefixlen == network.max_prefixlen:
        return str(network.network_address)
    return str(network)


@functools.lru_cache(maxsize=1 << 16)
def _address_text(address: IPAddress) -> str:
    return str(address)


def _protocol(port: PortRange) -> str:
    return port.protocol.lower()


def _port_text(port: PortRange) -> str:
    span = str(port.first) if port.first == port.last else f"{port.first}-{port.last}"
    return f"{_protocol(port)} . {span}"


def _of_version(version: int, networks: Iterable[IPNetwork]) -> frozenset[str]:
    return frozenset(_network_text(n) for n in networks if n.version == version)


# --------------------------------------------------------------------------- building


def _base_rules() -> tuple[str, ...]:
    return (
        "ct state established,related accept",
        f"iifname vmap @{MAPS[Direction.EGRESS]}",
        f"oifname vmap @{MAPS[Direction.INGRESS]}",
    )


def _rule_sets(rules: Iterable[PeerRule]) -> list[NftSet]:
    """The peer and named-port sets of the rules, each shared definition once."""
    sets: dict[str, NftSet] = {}
    for rule in rules:
        comment = _comment(rule.peer_text)
        for version in (4, 6):
            name = peer_set_name(rule, version)
            if rule.peers is not None and name not in sets:
                elements = _of_version(version, rule.peers)
                sets[name] = NftSet(name, ADDRESS_TYPES[version], ("interval",), elements, comment)
            name = named_set_name(rule, version)
            if rule.named_ports and name not in sets:
                pairs = frozenset(
                    f"{_address_text(address)} . {_port_text(port)}"
                    for address, port in rule.peer_ports
                    if address.version == version
                )
                kind = f"{ADDRESS_TYPES[version]} . inet_proto . inet_service"
                sets[name] = NftSet(name, kind, (), pairs, comment)
    return list(sets.values())


def _allow_rules(
    allow: PodAllow, rule: PeerRule, direction: Direction, versions: Sequence[int]
) -> list[str]:
    field = "saddr" if direction is Direction.INGRESS else "daddr"
    comment = f' comment "{_comment(allow.ref.describe())}"'
    ports = ""
    if allow.ports is not None:
        ports = "meta l4proto . th dport { " + ", ".join(map(_port_text, allow.ports)) + " } "
    lines = []
    if allow.ports is None or allow.ports:
        if rule.peers is None:
            lines.append(f"{ports}return{comment}")
        else:
            lines.extend(
                f"{ADDRESS_MATCH[v]} {field} @{peer_set_name(rule, v)} {ports}return{comment}"
                for v in versions
            )
    if rule.named_ports:
        lines.extend(
            f"{ADDRESS_MATCH[v]} {field} . meta l4proto . th dport @{named_set_name(rule, v)} "
            f"return{comment}"
            for v in versions
        )
    return lines


def _pod_chain(
    pod: PodRules, direction: Direction, rules: Mapping[Any, PeerRule]
) -> tuple[NftChain, DropCounter]:
    field = "saddr" if direction is Direction.INGRESS else "daddr"
    counter = counter_name(direction, pod.interface)
    versions = sorted({a.version for a in pod.addresses})
    lines = [f'ct state invalid counter name "{counter}" drop']
    lines += [f"{ADDRESS_MATCH[v]} {field} @{NODE_SETS[v]} return" for v in versions]
    lines += [f"{ADDRESS_MATCH[a.version]} {field} {a} return" for a in pod.addresses]
    for allow in pod.direction(direction).allows:
        lines += _allow_rules(allow, rules[allow.ref], direction, versions)
    lines.append(f'counter name "{counter}" drop')
    chain = NftChain(chain_name(direction, pod.interface), tuple(lines))
    return chain, DropCounter(counter, pod.namespace, pod.name, direction)


def ruleset(compilation: Compilation, table: str = DEFAULT_TABLE) -> Ruleset:
    if not _TABLE_NAME.match(table):
        raise RenderError(f"nftables table name {table!r} is not a plain name")
    rules = compilation.rule_index()
    sets = [
        NftSet(
            NODE_SETS[v],
            ADDRESS_TYPES[v],
            (),
            frozenset(str(a) for a in compilation.node_addresses if a.version == v),
        )
        for v in (4, 6)
    ]
    sets.extend(_rule_sets(compilation.rules))
    chains: list[NftChain] = []
    counters: list[DropCounter] = []
    maps: dict[Direction, set[tuple[str, str]]] = {d: set() for d in Direction}
    for pod in compilation.pods:
        for direction in Direction:
            if not pod.direction(direction).isolated:
                continue
            chain, counter = _pod_chain(pod, direction, rules)
            chains.append(chain)
            counters.append(counter)
            maps[direction].add((pod.interface, chain.name))
    return Ruleset(
        table=table,
        sets=tuple(sorted(sets, key=lambda s: s.name)),
        maps={d: frozenset(m) for d, m in maps.items()},
        chains=tuple(sorted(chains, key=lambda c: c.name)),
        counters=tuple(sorted(counters, key=lambda c: c.name)),
    )


# --------------------------------------------------------------------------- scripts


def _elements(items: Iterable[str]) -> str:
    return "{ " + ", ".join(sorted(items)) + " }"


def _map_element(interface: str, chain: str) -> str:
    return f"{json.dumps(interface)} : jump {chain}"


def full_script(rules: Ruleset) -> str:
    """The whole table, replacing any previous one in the same transaction."""
    t = rules.table
    out = [f"table {FAMILY} {t} {{}}", f"delete table {FAMILY} {t}", f"table {FAMILY} {t} {{"]
    out += [f"\tcounter {c.name} {{ }}" for c in rules.counters]
    for nft_set in rules.sets:
        out.append(f"\tset {nft_set.name} {{ {nft_set.declaration()}")
        if nft_set.elements:
            out.append(f"\t\telements = {_elements(nft_set.elements)}")
        out.append("\t}")
    for chain in rules.chains:
        out.append(f"\tchain {chain.name} {{")
        out += [f"\t\t{line}" for line in chain.rules]
        out.append("\t}")
    for direction in (Direction.INGRESS, Direction.EGRESS):
        out.append(f"\tmap {MAPS[direction]} {{ type ifname : verdict;")
        if rules.maps[direction]:
            out.append(
                f"\t\telements = {_elements(_map_element(*e) for e in rules.maps[direction])}"
            )
        out.append("\t}")
    out.append(f"\tchain {BASE_CHAIN} {{")
    out.append("\t\ttype filter hook forward priority filter; policy accept;")
    out += [f"\t\t{line}" for line in _base_rules()]
    out.append("\t}")
    out.append("}")
    return "\n".join(out) + "\n"


def update_commands(old: Ruleset, new: Ruleset) -> list[str]:
    """The nft commands turning table ``old`` into ``new``, for one ``nft -f`` transaction:
    new objects first, then element changes (deletes before adds), chains refilled, map
    entries, and only then what is gone (nothing is deleted while a rule still refers to it).
    Empty when nothing differs. ``old`` must be what the kernel holds; the tables must have
    one name (else use :func:`full_script`)."""
    if old.table != new.table:
        raise RenderError(f"table {old.table} cannot be updated into {new.table}")
    where = f"{FAMILY} {new.table}"
    old_chains = {c.name: c for c in old.chains}
    new_chains = {c.name: c for c in new.chains}
    old_counters = {c.name for c in old.counters}
    new_counters = {c.name for c in new.counters}
    out = [f"add counter {where} {name}" for name in sorted(new_counters - old_counters)]
    added_sets, set_changes, gone_sets = _set_changes(where, old.sets, new.sets)
    out += added_sets
    out += [f"add chain {where} {name}" for name in sorted(new_chains.keys() - old_chains.keys())]
    out += set_changes
    for name, chain in sorted(new_chains.items()):
        previous = old_chains.get(name)
        if previous is not None and previous.rules == chain.rules:
            continue
        if previous is not None:
            out.append(f"flush chain {where} {name}")
        out += [f"add rule {where} {name} {line}" for line in chain.rules]
    out += _map_changes(where, old.maps, new.maps)
    for name in sorted(old_chains.keys() - new_chains.keys()):
        out += [f"flush chain {where} {name}", f"delete chain {where} {name}"]
    out += gone_sets
    out += [f"delete counter {where} {name}" for name in sorted(old_counters - new_counters)]
    return out


def _set_changes(
    where: str, old: Sequence[NftSet], new: Sequence[NftSet]
) -> tuple[list[str], list[str], list[str]]:
    """(sets to add, element deletes then adds, sets to delete)."""
    old_sets = {s.name: s for s in old}
    added, deletes, adds = [], [], []
    for nft_set in new:
        previous = old_sets.get(nft_set.name)
        if previous is None:
            added.append(f"add set {where} {nft_set.name} {{ {nft_set.declaration()} }}")
            before: frozenset[str] = frozenset()
        elif (previous.type, previous.flags) != (nft_set.type, nft_set.flags):
            raise RenderError(f"set {nft_set.name} changed its type: replace the table")
        else:
            before = previous.elements
        if gone := before - nft_set.elements:
            deletes.append(f"delete element {where} {nft_set.name} {_elements(gone)}")
        if fresh := nft_set.elements - before:
            adds.append(f"add element {where} {nft_set.name} {_elements(fresh)}")
    kept = {s.name for s in new}
    gone_sets = [f"delete set {where} {name}" for name in sorted(old_sets.keys() - kept)]
    return added, deletes + adds, gone_sets


def _map_changes(
    where: str,
    old: Mapping[Direction, frozenset[tuple[str, str]]],
    new: Mapping[Direction, frozenset[tuple[str, str]]],
) -> list[str]:
    out = []
    for direction in (Direction.INGRESS, Direction.EGRESS):
        before, after = old[direction], new[direction]
        if gone_keys := {interface for interface, _ in before - after}:
            keys = (json.dumps(i) for i in gone_keys)
            out.append(f"delete element {where} {MAPS[direction]} {_elements(keys)}")
        if fresh := after - before:
            items = (_map_element(*entry) for entry in fresh)
            out.append(f"add element {where} {MAPS[direction]} {_elements(items)}")
    return out


def update_script(old: Ruleset, new: Ruleset) -> str:
    commands = update_commands(old, new)
    return "\n".join(commands) + "\n" if commands else ""


def drop_counts(listing: Iterable[Mapping[str, Any]]) -> dict[str, tuple[int, int]]:
    """Named counters from ``nft -j list counters table inet <table>`` (its ``nftables``
    array): name -> (packets, bytes)."""
    counts: dict[str, tuple[int, int]] = {}
    for item in listing:
        counter = item.get("counter")
        if isinstance(counter, Mapping) and isinstance(counter.get("name"), str):
            counts[counter["name"]] = (int(counter.get("packets", 0)), int(counter.get("bytes", 0)))
    return counts
