"""The masquerade table: built from address sets, and translated to and from nft's JSON.

Overlay pods of a subnet with ``autoNatOutgoing`` are masqueraded when their traffic leaves
the cluster, and only then: not towards any subnet of any network (pod to pod, overlay to
underlay), not towards any node address, and never into the VXLAN device. One rule per
family in the ``inet`` table's postrouting NAT chain::

    ip saddr @nat-v4 ip daddr != @subnets-v4 ip daddr != @nodes-v4 oifname != "<vxlan>" masquerade

Subnets (interval sets, merged prefixes) change rarely; node addresses (plain sets) change
with every node that comes or goes, so they are a set of their own: such a change is a few
element deletes and adds in one transaction (:func:`element_changes`), not a new table.
"""

from __future__ import annotations

import ipaddress
import json
import socket
from collections.abc import Iterable
from typing import Any

from hybridnet.daemon.datapath.model import NftChain, NftSet, PacketFilter

FAMILY = "inet"
CHAIN = "postrouting"
NAT_PRIORITY = 100  # srcnat
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
ADDRESS_TYPE = {4: "ipv4_addr", 6: "ipv6_addr"}


def set_name(purpose: str, version: int) -> str:
    return f"{purpose}-v{version}"


def canonical(networks: Iterable[IPNetwork]) -> tuple[str, ...]:
    """Non-overlapping, merged prefixes, sorted (what an interval set holds without
    auto-merge; overlapping elements would be refused)."""
    items = list(networks)
    v4 = [n for n in items if isinstance(n, ipaddress.IPv4Network)]
    v6 = [n for n in items if isinstance(n, ipaddress.IPv6Network)]
    merged = [*ipaddress.collapse_addresses(v4), *ipaddress.collapse_addresses(v6)]
    return tuple(sorted((str(n) for n in merged), key=element_order))


def element_order(element: str) -> tuple[int, int, bytes, int, str]:
    """Sort key for set elements (canonical CIDRs): by family, address, prefix length;
    anything else last. Packed with inet_pton: sorting thousands stays cheap."""
    address, _, length = element.partition("/")
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    try:
        packed = socket.inet_pton(family, address)
    except OSError:
        return (1, 0, b"", 0, element)
    return (0, int(family), packed, int(length or 0), "")


def _rule(version: int, vxlan: str) -> str:
    protocol = "ip" if version == 4 else "ip6"

    def address(field: str) -> dict[str, Any]:
        return {"payload": {"protocol": protocol, "field": field}}

    expr = [
        _match("==", address("saddr"), "@" + set_name("nat", version)),
        _match("!=", address("daddr"), "@" + set_name("subnets", version)),
        _match("!=", address("daddr"), "@" + set_name("nodes", version)),
        _match("!=", {"meta": {"key": "oifname"}}, vxlan),
        {"masquerade": None},
    ]
    return json.dumps(expr, sort_keys=True, separators=(",", ":"))


def _match(op: str, left: dict[str, Any], right: str) -> dict[str, Any]:
    return {"match": {"op": op, "left": left, "right": right}}


def masquerade_table(
    name: str,
    vxlan: str,
    nat_sources: Iterable[IPNetwork],
    subnets: Iterable[IPNetwork],
    nodes: Iterable[str],
) -> PacketFilter:
    """``nodes`` are node addresses (canonical, without prefix length)."""
    nat, inside = canonical(nat_sources), canonical(subnets)
    hosts = sorted({f"{a}/128" if ":" in a else f"{a}/32" for a in nodes}, key=element_order)
    sets = []
    for version in (4, 6):

        def of_version(elements: Iterable[str], version: int = version) -> tuple[str, ...]:
            return tuple(e for e in elements if (":" in e) == (version == 6))

        kind = ADDRESS_TYPE[version]
        sets.append(NftSet(set_name("nat", version), kind, ("interval",), of_version(nat)))
        sets.append(NftSet(set_name("nodes", version), kind, (), of_version(hosts)))
        sets.append(NftSet(set_name("subnets", version), kind, ("interval",), of_version(inside)))
    chain = NftChain(
        name=CHAIN,
        type="nat",
        hook="postrouting",
        priority=NAT_PRIORITY,
        policy="accept",
        rules=(_rule(4, vxlan), _rule(6, vxlan)),
    )
    return PacketFilter(FAMILY, name, tuple(sorted(sets, key=lambda s: s.name)), (chain,))


def element_changes(current: PacketFilter, target: PacketFilter) -> list[dict[str, Any]] | None:
    """nft commands turning ``current`` into ``target`` when only set elements differ
    (deletes before adds, for one transaction); None when anything else differs."""
    shape = [(s.name, s.type, s.flags) for s in current.sets]
    if (current.family, current.name, current.chains) != (
        target.family,
        target.name,
        target.chains,
    ):
        return None
    if shape != [(s.name, s.type, s.flags) for s in target.sets]:
        return None
    deletes, adds = [], []
    for old, new in zip(current.sets, target.sets, strict=True):
        base = {"family": target.family, "table": target.name, "name": new.name}
        kept_old, kept_new = set(old.elements), set(new.elements)
        gone = [e for e in old.elements if e not in kept_new]
        fresh = [e for e in new.elements if e not in kept_old]
        if gone:
            deletes.append(
                {"delete": {"element": {**base, "elem": [_element_json(e) for e in gone]}}}
            )
        if fresh:
            adds.append({"add": {"element": {**base, "elem": [_element_json(e) for e in fresh]}}})
    return deletes + adds


# --------------------------------------------------------------------------- nft JSON


def _element_json(cidr: str) -> Any:
    network = ipaddress.ip_network(cidr)
    if network.prefixlen == network.max_prefixlen:
        return str(network.network_address)
    return {"prefix": {"addr": str(network.network_address), "len": network.prefixlen}}


def _element_text(element: Any) -> str:
    """One element of nft's listing as a CIDR; anything else (a range, a concatenation) in
    a readable form that never equals a desired element."""
    if isinstance(element, str):
        return str(ipaddress.ip_network(element))
    if isinstance(element, dict) and "prefix" in element:
        prefix = element["prefix"]
        return str(ipaddress.ip_network(f"{prefix['addr']}/{prefix['len']}"))
    return json.dumps(element, sort_keys=True)


def to_nft(table: PacketFilter) -> list[dict[str, Any]]:
    """The table's content as nft JSON objects (the table itself excluded)."""
    base = {"family": table.family, "table": table.name}
    content: list[dict[str, Any]] = []
    for nft_set in table.sets:
        body: dict[str, Any] = {**base, "name": nft_set.name, "type": nft_set.type}
        if nft_set.flags:
            body["flags"] = list(nft_set.flags)
        if nft_set.elements:
            body["elem"] = [_element_json(e) for e in nft_set.elements]
        content.append({"set": body})
    for chain in table.chains:
        content.append(
            {
                "chain": {
                    **base,
                    "name": chain.name,
                    "type": chain.type,
                    "hook": chain.hook,
                    "prio": chain.priority,
                    "policy": chain.policy,
                }
            }
        )
        for rule in chain.rules:
            content.append({"rule": {**base, "chain": chain.name, "expr": json.loads(rule)}})
    return content


def from_nft(family: str, name: str, listing: list[dict[str, Any]]) -> PacketFilter:
    """The table as nft listed it, in the model's terms (handles and order of sets
    dropped, rules kept in chain order)."""
    sets: list[NftSet] = []
    chains: dict[str, dict[str, Any]] = {}
    rules: dict[str, list[str]] = {}
    for item in listing:
        if "set" in item:
            body = item["set"]
            elements = sorted((_element_text(e) for e in body.get("elem", [])), key=element_order)
            flags = tuple(body.get("flags", ()))
            sets.append(NftSet(body["name"], str(body["type"]), flags, tuple(elements)))
        elif "chain" in item:
            chains[item["chain"]["name"]] = item["chain"]
        elif "rule" in item:
            body = item["rule"]
            text = json.dumps(body["expr"], sort_keys=True, separators=(",", ":"))
            rules.setdefault(body["chain"], []).append(text)
    built = tuple(
        NftChain(
            name=chain_name,
            type=str(body.get("type", "")),
            hook=str(body.get("hook", "")),
            priority=int(body.get("prio", 0)),
            policy=str(body.get("policy", "")),
            rules=tuple(rules.get(chain_name, ())),
        )
        for chain_name, body in sorted(chains.items())
    )
    return PacketFilter(family, name, tuple(sorted(sets, key=lambda s: s.name)), built)
