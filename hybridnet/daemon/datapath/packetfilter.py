"""The masquerade table: built from address sets, and translated to and from nft's JSON.

Overlay pods of a subnet with ``autoNatOutgoing`` are masqueraded when their traffic leaves
the cluster, and only then: not towards any subnet of any network (pod to pod, overlay to
underlay), not towards any node address, and never into the VXLAN device. One rule per
family in the ``inet`` table's postrouting NAT chain::

    ip saddr @nat-v4 ip daddr != @cluster-v4 oifname != "<vxlan>" masquerade
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Iterable
from typing import Any

from hybridnet.daemon.datapath.model import NftChain, NftSet, PacketFilter

FAMILY = "inet"
CHAIN = "postrouting"
NAT_PRIORITY = 100  # srcnat
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


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


def element_order(element: str) -> tuple[int, int, int, int, str]:
    """Sort key for set elements: by family and address; unparsable ones last."""
    try:
        network = ipaddress.ip_network(element)
    except ValueError:
        return (1, 0, 0, 0, element)
    return (0, network.version, int(network.network_address), network.prefixlen, "")


def _rule(version: int, vxlan: str) -> str:
    protocol = "ip" if version == 4 else "ip6"
    expr = [
        _match(
            "==",
            {"payload": {"protocol": protocol, "field": "saddr"}},
            "@" + set_name("nat", version),
        ),
        _match(
            "!=",
            {"payload": {"protocol": protocol, "field": "daddr"}},
            "@" + set_name("cluster", version),
        ),
        _match("!=", {"meta": {"key": "oifname"}}, vxlan),
        {"masquerade": None},
    ]
    return json.dumps(expr, sort_keys=True, separators=(",", ":"))


def _match(op: str, left: dict[str, Any], right: str) -> dict[str, Any]:
    return {"match": {"op": op, "left": left, "right": right}}


def masquerade_table(
    name: str, vxlan: str, nat_sources: Iterable[IPNetwork], cluster: Iterable[IPNetwork]
) -> PacketFilter:
    nat, inside = canonical(nat_sources), canonical(cluster)
    sets = []
    for version in (4, 6):
        kind = "ipv4_addr" if version == 4 else "ipv6_addr"
        for purpose, elements in (("cluster", inside), ("nat", nat)):
            of_version = tuple(e for e in elements if ipaddress.ip_network(e).version == version)
            sets.append(NftSet(set_name(purpose, version), kind, ("interval",), of_version))
    chain = NftChain(
        name=CHAIN,
        type="nat",
        hook="postrouting",
        priority=NAT_PRIORITY,
        policy="accept",
        rules=(_rule(4, vxlan), _rule(6, vxlan)),
    )
    return PacketFilter(FAMILY, name, tuple(sorted(sets, key=lambda s: s.name)), (chain,))


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
