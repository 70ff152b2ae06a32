"""Cross-object rules for Networks and Subnets: overlap, fit, one overlay, node sharing,
deletes of things in use; single-object rules come first."""

from __future__ import annotations

import dataclasses

from hybridnet.api import admission
from tests.unit.manager.webhook.objects import (
    bgp,
    global_bgp,
    instance,
    node,
    overlay,
    subnet,
    underlay,
)

NETWORKS = [underlay("net1"), overlay("ovl"), bgp("bgp1")]


def test_overlapping_ipv4_subnets_are_refused_naming_both() -> None:
    existing = [subnet("a", "198.19.0.0/24")]
    problems = admission.subnet_problems(subnet("b", "198.19.0.128/25"), None, NETWORKS, existing)
    assert problems == ['subnet "b" (198.19.0.128/25) overlaps subnet "a" (198.19.0.0/24)']


def test_overlap_is_checked_across_networks_and_for_ipv6() -> None:
    existing = [subnet("v6a", "2001:db8:1::/48", network="ovl"), subnet("v4", "10.0.0.0/8")]
    new = subnet("v6b", "2001:db8:1:2::/64")
    problems = admission.subnet_problems(new, None, NETWORKS, existing)
    assert problems == ['subnet "v6b" (2001:db8:1:2::/64) overlaps subnet "v6a" (2001:db8:1::/48)']


def test_a_wider_subnet_over_a_narrower_one_is_refused_too() -> None:
    existing = [subnet("small", "198.19.4.0/26")]
    problems = admission.subnet_problems(subnet("big", "198.19.0.0/16"), None, NETWORKS, existing)
    assert len(problems) == 1 and 'subnet "small" (198.19.4.0/26)' in problems[0]


def test_every_overlapping_subnet_is_named() -> None:
    existing = [subnet("a", "198.19.0.0/25"), subnet("b", "198.19.0.128/25")]
    problems = admission.subnet_problems(subnet("c", "198.19.0.0/24"), None, NETWORKS, existing)
    assert len(problems) == 2


def test_adjacent_subnets_are_allowed() -> None:
    existing = [subnet("a", "198.19.0.0/25"), subnet("v6", "2001:db8::/64")]
    assert admission.subnet_problems(subnet("b", "198.19.0.128/25"), None, NETWORKS, existing) == []
    assert (
        admission.subnet_problems(subnet("c", "2001:db8:0:1::/64"), None, NETWORKS, existing) == []
    )


def test_a_subnet_does_not_overlap_itself_on_update() -> None:
    old = subnet("a", "198.19.0.0/24")
    assert admission.subnet_problems(dataclasses.replace(old), old, NETWORKS, [old]) == []


def test_the_network_must_exist() -> None:
    orphan = subnet("s", "198.19.9.0/24", network="nope")
    assert admission.subnet_problems(orphan, None, NETWORKS, []) == [
        'subnet "s": network "nope" does not exist'
    ]


def test_net_id_override_only_for_vlan_networks() -> None:
    vlan = subnet("s1", "198.19.9.0/24", network="net1", net_id=20)
    assert admission.subnet_problems(vlan, None, NETWORKS, []) == []
    for network in ("ovl", "bgp1"):
        problems = admission.subnet_problems(
            subnet("s2", "198.19.10.0/24", network=network, net_id=20), None, NETWORKS, []
        )
        assert len(problems) == 1 and "only for VLAN networks" in problems[0], problems


def test_single_object_rules_come_first_and_name_the_field() -> None:
    bad = subnet("s", "198.19.0.9/24")
    problems = admission.subnet_problems(bad, None, NETWORKS, [subnet("a", "198.19.0.0/24")])
    assert len(problems) == 1 and "spec.range.cidr" in problems[0] and "canonical" in problems[0]
    assert admission.single_object(bad) == problems


def test_immutable_fields_are_refused_on_update() -> None:
    old = subnet("a", "198.19.0.0/24")
    problems = admission.subnet_problems(subnet("a", "198.19.0.0/23"), old, NETWORKS, [old])
    assert len(problems) == 1 and "spec.range.cidr: is immutable" in problems[0]
    problems = admission.network_problems(
        overlay("ovl", vni=5), overlay("ovl", vni=4), NETWORKS, []
    )
    assert len(problems) == 1 and "spec.netID: is immutable" in problems[0]


def test_an_update_leaving_cidr_and_network_alone_is_not_refused_for_old_conflicts() -> None:
    # Objects that predate the webhook must still take label or finalizer edits.
    old = subnet("legacy", "198.19.0.0/24", network="gone")
    new = dataclasses.replace(old, metadata=dataclasses.replace(old.metadata, labels={"t": "x"}))
    assert admission.subnet_problems(new, old, NETWORKS, [old, subnet("z", "198.19.0.0/25")]) == []


# --------------------------------------------------------------------------- networks


def test_at_most_one_overlay_network() -> None:
    assert admission.network_problems(overlay("ovl2", vni=9), None, NETWORKS, []) == [
        'network "ovl2": there is already an Overlay network ("ovl"); a cluster has at most one'
    ]
    assert admission.network_problems(overlay("ovl"), overlay("ovl"), NETWORKS, []) == []
    assert admission.network_problems(overlay("first"), None, [underlay("net1")], []) == []


def test_at_most_one_global_bgp_network() -> None:
    existing = [*NETWORKS, global_bgp("everywhere")]
    assert admission.network_problems(
        global_bgp("again", peer="198.18.0.2"), None, existing, []
    ) == [
        'network "again": there is already a GlobalBGP network ("everywhere"); '
        "a cluster has at most one"
    ]
    assert admission.network_problems(global_bgp("first"), None, NETWORKS, []) == []


def test_a_peer_shared_by_two_networks_needs_one_local_asn() -> None:
    """One session per peer address: the second network's AS would need a second one."""
    problems = admission.network_problems(bgp("bgp2", asn=65002), None, NETWORKS, [])
    assert problems == [
        'network "bgp2" (AS 65002) would peer with 198.18.0.1, already a peer of network '
        '"bgp1" as AS 65001; one peer address has one local AS'
    ]
    assert admission.network_problems(bgp("bgp3", asn=65001), None, NETWORKS, []) == []
    other_router = bgp("bgp4", asn=65002, peer="198.18.0.2")
    assert admission.network_problems(other_router, None, NETWORKS, []) == []


def test_underlay_networks_must_not_share_nodes() -> None:
    nodes = [node("n1", rack="a", zone="z1"), node("n2", rack="b", zone="z1")]
    existing = [underlay("net-a", {"rack": "a"})]
    problems = admission.network_problems(underlay("net-z", {"zone": "z1"}), None, existing, nodes)
    assert problems == [
        'underlay network "net-z" would share node "n1" with underlay network "net-a"; '
        "a node belongs to one underlay network"
    ]
    assert admission.network_problems(underlay("net-b", {"rack": "b"}), None, existing, nodes) == []


def test_underlay_selector_change_is_checked_and_self_is_ignored() -> None:
    nodes = [node("n1", rack="a"), node("n2", rack="b")]
    old = underlay("net-b", {"rack": "b"})
    existing = [underlay("net-a", {"rack": "a"}), old]
    assert admission.network_problems(old, old, existing, nodes) == []
    problems = admission.network_problems(underlay("net-b", {"rack": "a"}), old, existing, nodes)
    assert len(problems) == 1 and '"n1"' in problems[0] and '"net-a"' in problems[0]


def test_no_node_matched_by_both_means_no_sharing() -> None:
    existing = [underlay("net-a", {"rack": "a"})]
    assert admission.network_problems(underlay("net-a2", {"rack": "a"}), None, existing, []) == []


def test_bgp_and_vlan_underlays_count_alike_and_overlay_is_not_underlay() -> None:
    nodes = [node("n1", rack="a")]
    existing = [underlay("v", {"rack": "a"})]
    problems = admission.network_problems(bgp("b", {"rack": "a"}), None, existing, nodes)
    assert len(problems) == 1 and '"n1"' in problems[0]
    assert admission.network_problems(overlay("o"), None, existing, nodes) == []


def test_network_single_object_rules() -> None:
    problems = admission.network_problems(underlay("u", selector={}), None, [], [])
    assert len(problems) == 1 and "spec.nodeSelector" in problems[0]


# --------------------------------------------------------------------------- deletes


def test_subnet_with_instances_cannot_be_deleted() -> None:
    target = subnet("s1", "198.19.0.0/24")
    instances = [instance("ip-a", "s1"), instance("ip-b", "other"), instance("ip-c", "s1", "ns2")]
    assert admission.subnet_delete_problems(target, instances) == [
        'subnet "s1" still has 2 address(es) in use: ns1/ip-a, ns2/ip-c'
    ]


def test_subnet_with_used_status_cannot_be_deleted() -> None:
    assert admission.subnet_delete_problems(subnet("s1", "198.19.0.0/24", used=3), []) == [
        'subnet "s1" still has 3 address(es) in use'
    ]


def test_many_holders_are_summarised() -> None:
    instances = [instance(f"ip-{i:02}", "s1") for i in range(8)]
    (problem,) = admission.subnet_delete_problems(subnet("s1", "198.19.0.0/24"), instances)
    assert problem.endswith("ns1/ip-04 and 3 more")


def test_unused_subnet_can_be_deleted() -> None:
    assert (
        admission.subnet_delete_problems(subnet("s1", "198.19.0.0/24"), [instance("x", "s2")]) == []
    )


def test_network_with_subnets_cannot_be_deleted() -> None:
    subnets = [
        subnet("b", "198.19.1.0/24"),
        subnet("a", "198.19.0.0/24"),
        subnet("c", "10.0.0.0/8", network="x"),
    ]
    assert admission.network_delete_problems(underlay("net1"), subnets) == [
        'network "net1" still has 2 subnet(s): a, b'
    ]
    assert admission.network_delete_problems(underlay("empty"), subnets) == []
