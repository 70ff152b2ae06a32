"""The masquerade table's translation to nft JSON and back, and its element-only updates."""

from __future__ import annotations

import ipaddress

from hybridnet.daemon.datapath import packetfilter
from hybridnet.daemon.datapath.model import PacketFilter


def table(*nodes: str, subnets: tuple[str, ...] = ("198.19.0.0/24",)) -> PacketFilter:
    return packetfilter.masquerade_table(
        "hybridnet",
        "eth0.vxlan4",
        [ipaddress.ip_network("198.19.0.0/24")],
        [ipaddress.ip_network(s) for s in subnets],
        list(nodes),
    )


def test_a_table_survives_the_trip_to_nft_json_and_back() -> None:
    original = table("198.18.0.10", "2001:db8::a", subnets=("198.19.0.0/24", "2001:db8:10::/64"))
    assert packetfilter.from_nft("inet", "hybridnet", packetfilter.to_nft(original)) == original


def test_host_addresses_are_plain_elements_and_prefixes_are_prefix_objects() -> None:
    content = packetfilter.to_nft(table("198.18.0.10", subnets=("198.19.0.0/24", "198.19.1.0/24")))
    elements = {item["set"]["name"]: item["set"].get("elem") for item in content if "set" in item}
    assert elements["nodes-v4"] == ["198.18.0.10"]
    assert elements["subnets-v4"] == [{"prefix": {"addr": "198.19.0.0", "len": 23}}]  # merged
    assert elements["nodes-v6"] is None  # an empty set has no element list at all


def test_overlapping_and_adjacent_subnets_are_merged_and_sorted_numerically() -> None:
    merged = packetfilter.canonical(
        ipaddress.ip_network(c)
        for c in (
            "198.19.10.0/24",
            "198.19.2.0/24",
            "198.19.3.0/24",
            "198.19.2.128/25",
            "2001:db8::/64",
        )
    )
    assert merged == ("198.19.2.0/23", "198.19.10.0/24", "2001:db8::/64")


def test_a_moved_node_changes_two_elements_in_one_transaction() -> None:
    before = table("198.18.0.10", "198.18.0.11", "198.18.0.12")
    after = table("198.18.0.10", "198.18.0.99", "198.18.0.12")
    assert packetfilter.element_changes(before, after) == [
        {
            "delete": {
                "element": {
                    "family": "inet",
                    "table": "hybridnet",
                    "name": "nodes-v4",
                    "elem": ["198.18.0.11"],
                }
            }
        },
        {
            "add": {
                "element": {
                    "family": "inet",
                    "table": "hybridnet",
                    "name": "nodes-v4",
                    "elem": ["198.18.0.99"],
                }
            }
        },
    ]
    assert packetfilter.element_changes(before, before) == []


def test_anything_but_elements_differing_needs_a_new_table() -> None:
    before = table("198.18.0.10")
    other_device = packetfilter.masquerade_table("hybridnet", "vxlan9", [], [], [])
    assert packetfilter.element_changes(before, other_device) is None
    renamed = PacketFilter(before.family, "other", before.sets, before.chains)
    assert packetfilter.element_changes(before, renamed) is None
