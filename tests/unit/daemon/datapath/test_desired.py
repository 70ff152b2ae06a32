"""desired_state as table tests: inputs (view, config, host facts) -> exact kernel objects
and problems. No kernel, no root."""

from __future__ import annotations

import dataclasses
import ipaddress
import json
import random
import zlib
from typing import TypeVar

import pytest

from hybridnet.api.resources import BGPPeer, Network, NetworkConfig, NetworkSpec
from hybridnet.daemon.datapath import packetfilter
from hybridnet.daemon.datapath.config import NodeConfig, RoutingNumbers
from hybridnet.daemon.datapath.desired import DesiredState, desired_state
from hybridnet.daemon.datapath.model import (
    SCOPE_LINK,
    SCOPE_UNIVERSE,
    FdbEntry,
    KernelObject,
    Neighbour,
    PacketFilter,
    Route,
    Rule,
    Sysctl,
    VlanLink,
    VxlanLink,
)
from hybridnet.daemon.datapath.problems import ProblemCode
from hybridnet.daemon.datapath.view import HostFacts, NodeView
from tests.unit.daemon.datapath.builders import (
    CONFIG,
    DEFAULT_HOST,
    ETH0_MAC,
    host,
    link,
    meta,
    node_info,
    ours,
    overlay,
    pod_ip,
    subnet,
    underlay,
    view,
)

VX = "eth0.vxlan4"
N = RoutingNumbers()
T = TypeVar("T", bound=KernelObject)


def build(
    v: NodeView, config: NodeConfig = CONFIG, facts: HostFacts = DEFAULT_HOST
) -> DesiredState:
    return desired_state(v, config, facts)


def of(state: DesiredState, cls: type[T]) -> list[T]:
    return [o for o in state.objects if isinstance(o, cls)]


def codes(state: DesiredState) -> list[ProblemCode]:
    return [p.code for p in state.problems]


def local_pod_rules(*families: int) -> list[Rule]:
    return [Rule(f, N.local_pod_priority, N.local_pod_table) for f in families]


# --------------------------------------------------------------------------- nothing to do


def test_an_empty_cluster_wants_forwarding_and_the_local_pod_rules_only() -> None:
    state = build(view())
    assert state.objects == (Sysctl("net/ipv4/ip_forward", "1"), *local_pod_rules(4, 6))
    assert state.problems == ()
    assert state.vtep is None


def test_without_ipv6_in_the_kernel_there_is_no_ipv6_rule() -> None:
    state = build(view(), facts=host(link("eth0", "198.18.0.10/24"), ipv6=False))
    assert of(state, Rule) == local_pod_rules(4)


# --------------------------------------------------------------------------- overlay


def overlay_view(**kwargs: object) -> NodeView:
    kwargs.setdefault("networks", (overlay(),))
    kwargs.setdefault("subnets", (subnet("ov4", "overlay", "198.19.0.0/24", nat=True),))
    kwargs.setdefault(
        "node_infos",
        (
            node_info("node1", "198.18.0.10", ETH0_MAC),
            node_info("node2", "198.18.0.11", "52:54:00:00:00:0b"),
            node_info("node3", "198.18.0.12", "52:54:00:00:00:0c", "198.18.5.12"),
        ),
    )
    return view(**kwargs)


def test_overlay_builds_one_vxlan_device_from_the_network_and_the_vtep_interface() -> None:
    state = build(overlay_view())
    assert of(state, VxlanLink) == [
        VxlanLink(
            name=VX, vni=4, local="198.18.0.10", parent="eth0", port=8472, mtu=1450, mac=ETH0_MAC
        )
    ]
    assert state.vtep is not None
    assert (state.vtep.link, state.vtep.address, state.vtep.mac) == (VX, "198.18.0.10", ETH0_MAC)
    assert state.problems == ()


def test_every_remote_node_gets_flood_and_unicast_fdb_entries_and_neighbours() -> None:
    state = build(overlay_view())
    assert of(state, FdbEntry) == [
        FdbEntry(VX, "00:00:00:00:00:00", "198.18.0.11"),
        FdbEntry(VX, "52:54:00:00:00:0b", "198.18.0.11"),
        FdbEntry(VX, "00:00:00:00:00:00", "198.18.0.12"),
        FdbEntry(VX, "52:54:00:00:00:0c", "198.18.0.12"),
    ]
    assert of(state, Neighbour) == [
        Neighbour(VX, "198.18.0.11", "52:54:00:00:00:0b"),
        Neighbour(VX, "198.18.0.12", "52:54:00:00:00:0c"),
        Neighbour(VX, "198.18.5.12", "52:54:00:00:00:0c"),
    ]


def test_overlay_subnets_are_routed_out_of_vxlan_for_everyone_and_their_table_reaches_nodes() -> (
    None
):
    state = build(overlay_view())
    table = state.subnet_tables["ov4"]
    assert N.subnet_table_first <= table <= N.subnet_table_last
    assert of(state, Route) == [
        Route(4, N.overlay_table, "198.19.0.0/24", VX, prefsrc="198.18.0.10", scope=SCOPE_LINK),
        Route(4, table, "198.18.0.11/32", VX, scope=SCOPE_LINK),
        Route(4, table, "198.18.0.12/32", VX, scope=SCOPE_LINK),
        Route(4, table, "198.18.5.12/32", VX, scope=SCOPE_LINK),
    ]
    assert of(state, Rule) == [
        *local_pod_rules(4, 6),
        Rule(4, N.overlay_priority, N.overlay_table),
        Rule(4, N.subnet_priority, table, src="198.19.0.0/24"),
    ]


def test_the_vxlan_device_answers_arp_for_local_pods_at_once() -> None:
    state = build(overlay_view())
    assert of(state, Sysctl) == [
        Sysctl("net/ipv4/ip_forward", "1"),
        Sysctl(f"net/ipv4/conf/{VX}/proxy_arp", "0", VX),  # proxy entries only
        Sysctl(f"net/ipv4/conf/{VX}/rp_filter", "0", VX),
        Sysctl(f"net/ipv4/neigh/{VX}/proxy_delay", "0", VX),
    ]


def test_the_vxlan_device_answers_arp_for_this_nodes_pods_only_from_proxy_entries() -> None:
    """Route-based proxy ARP on the VXLAN device would also answer for another node's
    underlay pod (this node routes it out of its underlay interface, not the VXLAN device),
    so askers would send to whichever node answered first: proxy_arp is 0 there,
    and each local pod address of the overlay's families gets a proxy entry, of either
    network."""
    networks = (overlay(), underlay("rack-a", vlan=0, selector={"rack": "a"}))
    subnets = (
        subnet("ov4", "overlay", "198.19.0.0/24"),
        subnet("under-a", "rack-a", "198.18.0.0/24", gateway="198.18.0.1"),
    )
    pods = (
        pod_ip("o1", "ov4", "198.19.0.5/24"),
        pod_ip("u1", "under-a", "198.18.0.100/24", network="rack-a"),
    )
    state = build(
        overlay_view(networks=networks, subnets=subnets, local_ips=pods, node_labels={"rack": "a"}),
        NodeConfig(vtep_interface="eth0", underlay_interface="eth0"),
    )
    assert Sysctl(f"net/ipv4/conf/{VX}/proxy_arp", "0", VX) in of(state, Sysctl)
    proxies = [n for n in of(state, Neighbour) if n.link == VX and n.proxy]
    assert sorted(p.address for p in proxies) == ["198.18.0.100", "198.19.0.5"]


def test_overlay_tables_route_every_underlay_subnet_of_the_cluster_through_vxlan() -> None:
    networks = (overlay(), underlay("rack-b", vlan=10, selector={"rack": "b"}))
    subnets = (
        subnet("ov4", "overlay", "198.19.0.0/24"),
        subnet("under-b", "rack-b", "198.19.20.0/24", gateway="198.19.20.1"),
    )
    state = build(overlay_view(networks=networks, subnets=subnets, node_infos=()))
    table = state.subnet_tables["ov4"]
    assert Route(4, table, "198.19.20.0/24", VX, scope=SCOPE_LINK) in of(state, Route)
    assert "under-b" not in state.subnet_tables  # not this node's network: no table here
    assert not of(state, VlanLink)


def test_dual_stack_overlay_adds_ipv6_routes_rules_sysctls_and_proxy_ndp_for_local_pods() -> None:
    subnets = (
        subnet("ov4", "overlay", "198.19.0.0/24"),
        subnet("ov6", "overlay", "2001:db8:10::/64"),
    )
    infos = (node_info("node2", "198.18.0.11", "52:54:00:00:00:0b", "2001:db8::b"),)
    pods = (
        pod_ip("p1", "ov4", "198.19.0.5/24"),
        pod_ip("p1", "ov6", "2001:db8:10::5/64"),
    )
    state = build(overlay_view(subnets=subnets, node_infos=infos, local_ips=pods))
    v6 = state.subnet_tables["ov6"]
    routes = of(state, Route)
    assert (
        Route(
            6, N.overlay_table, "2001:db8:10::/64", VX, prefsrc="2001:db8::a", scope=SCOPE_UNIVERSE
        )
        in routes
    )
    assert Route(6, v6, "2001:db8::b/128", VX, scope=SCOPE_UNIVERSE) in routes
    assert Neighbour(VX, "2001:db8::b", "52:54:00:00:00:0b") in of(state, Neighbour)
    assert Neighbour(VX, "2001:db8:10::5") in of(state, Neighbour)  # proxy NDP for the pod
    assert Sysctl("net/ipv6/conf/all/forwarding", "1") in of(state, Sysctl)
    assert Sysctl(f"net/ipv6/conf/{VX}/proxy_ndp", "1", VX) in of(state, Sysctl)
    assert Rule(6, N.overlay_priority, N.overlay_table) in of(state, Rule)
    assert Rule(6, N.subnet_priority, v6, src="2001:db8:10::/64") in of(state, Rule)


def test_configured_numbers_port_and_vtep_address_are_used() -> None:
    numbers = RoutingNumbers(
        local_pod_table=500,
        overlay_table=501,
        subnet_table_first=1000,
        subnet_table_last=1000,
        local_pod_priority=100,
        overlay_priority=101,
        subnet_priority=102,
        route_protocol=99,
    )
    config = NodeConfig(
        vtep_interface="eth0", vtep_address="198.18.0.99", vxlan_port=4789, numbers=numbers
    )
    facts = host(link("eth0", "198.18.0.10/24", "198.18.0.99/24"))
    state = build(overlay_view(node_infos=()), config, facts)
    (device,) = of(state, VxlanLink)
    assert (device.local, device.port) == ("198.18.0.99", 4789)
    assert state.subnet_tables == {"ov4": 1000}
    assert of(state, Rule) == [
        Rule(4, 100, 500),
        Rule(6, 100, 500),
        Rule(4, 101, 501),
        Rule(4, 102, 1000, src="198.19.0.0/24"),
    ]
    assert Route(4, 501, "198.19.0.0/24", VX, prefsrc="198.18.0.99", scope=SCOPE_LINK) in of(
        state, Route
    )


@pytest.mark.parametrize(
    ("parent", "address", "expected_name", "expected_mtu"),
    [
        ("eth0", "198.18.0.10/24", "eth0.vxlan4", 8950),
        ("enp0s31f6np0", "198.18.0.10/24", "vxlan4", 8950),  # the long name does not fit
        ("eth0", "2001:db8::a/64", "eth0.vxlan4", 8930),  # IPv6 outer header: 20 bytes more
    ],
)
def test_vxlan_name_and_mtu_follow_the_parent(
    parent: str, address: str, expected_name: str, expected_mtu: int
) -> None:
    facts = host(link(parent, address, mtu=9000))
    state = build(overlay_view(node_infos=()), NodeConfig(vtep_interface=parent), facts)
    (device,) = of(state, VxlanLink)
    assert (device.name, device.mtu) == (expected_name, expected_mtu)


def test_a_parent_without_a_mac_gets_a_stable_locally_administered_one() -> None:
    facts = host(link("eth0", "198.18.0.10/24", mac=None))
    first = build(overlay_view(), facts=facts)
    second = build(overlay_view(), facts=facts)
    (device,) = of(first, VxlanLink)
    assert device.mac == of(second, VxlanLink)[0].mac
    assert int(device.mac.split(":")[0], 16) & 0b11 == 0b10  # local, unicast


def test_our_own_vxlan_device_already_present_is_not_a_name_clash() -> None:
    facts = host(
        link("eth0", "198.18.0.10/24"),
        link(VX, kind="vxlan", alias=ours("vxlan"), index=7),
    )
    state = build(overlay_view(), facts=facts)
    assert len(of(state, VxlanLink)) == 1
    assert state.problems == ()


# --------------------------------------------------------------------------- masquerade


def test_masquerade_covers_nat_subnets_and_excludes_every_subnet_and_node_address() -> None:
    networks = (overlay(), underlay())
    subnets = (
        subnet("ov-nat", "overlay", "198.19.0.0/24", nat=True),
        subnet("ov-plain", "overlay", "198.19.1.0/24"),
        subnet("under", "underlay", "198.19.8.0/24", gateway="198.19.8.1", nat=True),
        subnet("ov6", "overlay", "2001:db8:10::/64", nat=True),
    )
    state = build(overlay_view(networks=networks, subnets=subnets))
    (table,) = of(state, PacketFilter)
    elements = {s.name: s.elements for s in table.sets}
    assert elements == {
        "nat-v4": ("198.19.0.0/24",),  # the underlay subnet's autoNatOutgoing means nothing
        "nat-v6": ("2001:db8:10::/64",),
        "subnets-v4": ("198.19.0.0/23", "198.19.8.0/24"),  # both overlay subnets merged
        "subnets-v6": ("2001:db8:10::/64",),
        "nodes-v4": ("198.18.0.10/32", "198.18.0.11/32", "198.18.0.12/32", "198.18.5.12/32"),
        "nodes-v6": ("2001:db8::a/128",),  # this node's own addresses are inside too
    }
    flags = {s.name: s.flags for s in table.sets}
    assert flags["nodes-v4"] == () and flags["subnets-v4"] == ("interval",)
    (chain,) = table.chains
    assert (chain.type, chain.hook, chain.priority, chain.policy) == (
        "nat",
        "postrouting",
        100,
        "accept",
    )
    v4_rule = json.loads(chain.rules[0])
    assert v4_rule[-1] == {"masquerade": None}
    assert {"match": {"op": "!=", "left": {"meta": {"key": "oifname"}}, "right": VX}} in v4_rule


def test_no_overlay_means_no_packet_filter_table() -> None:
    state = build(
        view(
            networks=(underlay(),),
            subnets=(subnet("u", "underlay", "198.19.8.0/24", gateway="198.19.8.1"),),
        )
    )
    assert not of(state, PacketFilter)


# --------------------------------------------------------------------------- underlay VLAN


def vlan_view(*subnets: object, vlan: int | None = 100, **kwargs: object) -> NodeView:
    kwargs.setdefault("networks", (underlay(vlan=vlan),))
    return view(subnets=subnets, **kwargs)


def test_a_vlan_subnet_gets_a_sub_interface_and_a_table_to_its_gateway() -> None:
    state = build(vlan_view(subnet("u", "underlay", "198.19.8.0/24", gateway="198.19.8.1")))
    table = state.subnet_tables["u"]
    assert of(state, VlanLink) == [VlanLink(name="eth0.100", parent="eth0", vlan_id=100)]
    assert of(state, Route) == [
        Route(4, table, "198.19.8.0/24", "eth0.100", scope=SCOPE_LINK),
        Route(4, table, "0.0.0.0/0", "eth0.100", gateway="198.19.8.1", onlink=True),
    ]
    assert Rule(4, N.subnet_priority, table, src="198.19.8.0/24") in of(state, Rule)
    assert of(state, Sysctl) == [
        Sysctl("net/ipv4/ip_forward", "1"),
        Sysctl("net/ipv4/conf/eth0.100/proxy_arp", "0", "eth0.100"),  # proxy entries only
        Sysctl("net/ipv4/conf/eth0.100/rp_filter", "0", "eth0.100"),
        Sysctl("net/ipv4/neigh/eth0.100/proxy_delay", "0", "eth0.100"),
    ]
    assert state.problems == ()


@pytest.mark.parametrize(
    ("network_vlan", "subnet_vlan", "expected_link"),
    [
        (100, None, "eth0.100"),  # the network's netID
        (100, 200, "eth0.200"),  # the subnet's overrides it
        (100, 0, "eth0"),  # 0: the parent itself, untagged
        (None, None, "eth0"),  # none at all: untagged
        (0, 300, "eth0.300"),
    ],
)
def test_the_vlan_id_comes_from_the_subnet_then_the_network(
    network_vlan: int | None, subnet_vlan: int | None, expected_link: str
) -> None:
    state = build(
        vlan_view(
            subnet("u", "underlay", "198.19.8.0/24", gateway="198.19.8.1", vlan=subnet_vlan),
            vlan=network_vlan,
        )
    )
    default = [r for r in of(state, Route) if isinstance(r, Route) and r.gateway]
    assert [r.oif for r in default] == [expected_link]
    created = [lk.name for lk in of(state, VlanLink)]
    assert created == ([] if expected_link == "eth0" else [expected_link])


def test_ipv4_vlan_pods_get_proxy_arp_entries_on_their_own_subnets_link_only() -> None:
    """Not proxy_arp: the node would answer on VLAN 100 for pods of VLAN 200 too."""
    pods = (
        pod_ip("p1", "u", "198.19.8.5/24", network="underlay"),
        pod_ip("p2", "w", "198.19.9.5/24", network="underlay"),
    )
    state = build(
        vlan_view(
            subnet("u", "underlay", "198.19.8.0/24", gateway="198.19.8.1"),
            subnet("w", "underlay", "198.19.9.0/24", gateway="198.19.9.1", vlan=200),
            local_ips=pods,
        )
    )
    assert sorted(of(state, Neighbour), key=str) == [
        Neighbour("eth0.100", "198.19.8.5"),
        Neighbour("eth0.200", "198.19.9.5"),
    ]


def test_the_untagged_parents_proxy_arp_is_left_to_the_site() -> None:
    state = build(vlan_view(subnet("u", "underlay", "198.19.8.0/24", gateway="198.19.8.1"), vlan=0))
    assert not [s for s in of(state, Sysctl) if s.path.endswith("/proxy_arp")]
    assert Sysctl("net/ipv4/conf/eth0/rp_filter", "0", "eth0") in of(state, Sysctl)


def test_ipv6_vlan_pods_get_proxy_ndp_entries_on_their_sub_interface() -> None:
    pods = (
        pod_ip("p1", "u6", "2001:db8:8::5/64", network="underlay"),
        pod_ip("p2", "other", "2001:db8:9::5/64", network="underlay"),
    )
    state = build(
        vlan_view(
            subnet("u6", "underlay", "2001:db8:8::/64", gateway="2001:db8:8::1"), local_ips=pods
        )
    )
    assert of(state, Neighbour) == [Neighbour("eth0.100", "2001:db8:8::5")]
    table = state.subnet_tables["u6"]
    assert Route(6, table, "::/0", "eth0.100", gateway="2001:db8:8::1", onlink=True) in of(
        state, Route
    )
    assert Sysctl("net/ipv6/conf/eth0.100/proxy_ndp", "1", "eth0.100") in of(state, Sysctl)


def test_a_long_parent_name_falls_back_to_a_short_vlan_name() -> None:
    facts = host(link("enp0s31f6np0", "198.18.0.10/24"))
    state = build(
        vlan_view(subnet("u", "underlay", "198.19.8.0/24", gateway="198.19.8.1")),
        NodeConfig(underlay_interface="enp0s31f6np0"),
        facts,
    )
    assert [lk.name for lk in of(state, VlanLink)] == ["vlan100"]


def test_the_sites_own_matching_vlan_interface_is_used_not_created() -> None:
    facts = host(
        link("eth0", "198.18.0.10/24"),
        link("eth0.100", kind="vlan", parent="eth0", vlan_id=100, index=5),
    )
    state = build(
        vlan_view(subnet("u", "underlay", "198.19.8.0/24", gateway="198.19.8.1")), facts=facts
    )
    assert not of(state, VlanLink)
    assert any(isinstance(r, Route) and r.oif == "eth0.100" for r in state.objects)
    assert state.problems == ()


def bgp(*peers: BGPPeer, name: str = "bgp", selector: dict[str, str] | None = None) -> Network:
    network = underlay(name, vlan=65001, mode="BGP", selector=selector)
    network.spec.config = NetworkConfig(bgp_peers=list(peers))
    return network


def routing(address: str) -> BGPPeer:
    return BGPPeer(address=address, asn=65000)


def session_only(address: str) -> BGPPeer:
    return BGPPeer(address=address, asn=65000, does_not_route_traffic=True)


def global_bgp(name: str = "global") -> Network:
    return Network(meta(name), NetworkSpec(type="GlobalBGP", mode="GlobalBGP"))


BGP_SUBNETS = (
    subnet("b4", "bgp", "198.19.8.0/24", gateway="198.19.8.1"),
    subnet("b6", "bgp", "2001:db8:8::/64"),
)


@pytest.mark.parametrize(
    ("peers", "gateways"),
    [
        pytest.param(
            (routing("198.18.0.1"), routing("2001:db8::1")),
            {"b4": "198.18.0.1", "b6": "2001:db8::1"},
            id="each family through its peer, not the subnet's gateway",
        ),
        pytest.param(
            (session_only("198.18.0.1"), routing("198.18.0.2"), routing("198.18.0.3")),
            {"b4": "198.18.0.2", "b6": None},
            id="the first peer that routes traffic",
        ),
        pytest.param(
            (session_only("198.18.0.1"), session_only("2001:db8::1")),
            {"b4": "198.19.8.1", "b6": None},
            id="no peer routes traffic: the subnet's gateway, else the node's own routes",
        ),
    ],
)
def test_bgp_subnets_route_through_a_peer_that_routes_traffic_without_vlan_or_proxy(
    peers: tuple[BGPPeer, ...], gateways: dict[str, str | None]
) -> None:
    pods = (
        pod_ip("p1", "b4", "198.19.8.5/24", network="bgp"),
        pod_ip("p2", "b6", "2001:db8:8::5/64", network="bgp"),
    )
    state = build(view(networks=(bgp(*peers),), subnets=BGP_SUBNETS, local_ips=pods))
    assert not of(state, VlanLink)
    assert not of(state, Neighbour)  # the fabric reaches BGP pods by their routes
    assert not [s for s in of(state, Sysctl) if s.link == "eth0"]  # no proxy_arp, proxy_ndp
    for name, gateway in gateways.items():
        table = state.subnet_tables[name]
        version = 6 if name == "b6" else 4
        in_table = [r for r in of(state, Route) if r.table == table]
        default = "::/0" if version == 6 else "0.0.0.0/0"
        expected = [Route(version, table, default, "eth0", gateway=gateway)] if gateway else []
        assert in_table == expected, name
        source = BGP_SUBNETS[version == 6].spec.range.cidr
        assert Rule(version, N.subnet_priority, table, src=source) in of(state, Rule)
    assert state.problems == ()


def test_global_bgp_subnets_on_a_node_a_bgp_network_attaches_route_through_its_peer() -> None:
    pods = (pod_ip("g", "g4", "198.20.0.5/24", network="global"),)
    state = build(
        view(
            networks=(bgp(routing("198.18.0.1")), global_bgp(), overlay()),
            subnets=(
                *BGP_SUBNETS,
                subnet("g4", "global", "198.20.0.0/24"),
                subnet("ov4", "overlay", "198.19.0.0/24"),
            ),
            local_ips=pods,
        )
    )
    table = state.subnet_tables["g4"]
    assert [r for r in of(state, Route) if r.table == table] == [
        Route(4, table, "0.0.0.0/0", "eth0", gateway="198.18.0.1")
    ]
    assert Rule(4, N.subnet_priority, table, src="198.20.0.0/24") in of(state, Rule)
    # Overlay pods reach GlobalBGP pods through the overlay, as they reach any underlay pod.
    overlay_table = state.subnet_tables["ov4"]
    assert Route(4, overlay_table, "198.20.0.0/24", VX, scope=SCOPE_LINK) in of(state, Route)


def test_global_bgp_subnets_are_not_built_where_no_bgp_network_attaches() -> None:
    state = build(
        view(
            networks=(underlay(), global_bgp()),
            subnets=(subnet("g4", "global", "198.20.0.0/24"),),
        )
    )
    assert "g4" not in state.subnet_tables
    state = build(
        view(
            networks=(bgp(routing("198.18.0.1"), selector={"rack": "b"}), global_bgp()),
            subnets=(subnet("g4", "global", "198.20.0.0/24"),),
        )
    )
    assert "g4" not in state.subnet_tables


def test_an_underlay_network_that_does_not_select_this_node_is_ignored() -> None:
    state = build(
        view(
            networks=(underlay(selector={"rack": "b"}),),
            subnets=(subnet("u", "underlay", "198.19.8.0/24", gateway="198.19.8.1"),),
        )
    )
    assert state.subnet_tables == {}
    assert not of(state, Route)


# --------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    ("v", "config", "facts", "expected"),
    [
        pytest.param(
            overlay_view(),
            CONFIG,
            host(link("eth1", "198.18.0.10/24")),
            ProblemCode.PARENT_MISSING,
            id="vtep-interface-missing",
        ),
        pytest.param(
            overlay_view(),
            NodeConfig(),
            DEFAULT_HOST,
            ProblemCode.INTERFACE_NOT_CONFIGURED,
            id="no-vtep-interface-configured",
        ),
        pytest.param(
            overlay_view(),
            NodeConfig(vtep_interface="eth0", vtep_address="198.18.0.77"),
            DEFAULT_HOST,
            ProblemCode.VTEP_ADDRESS_NOT_ON_NODE,
            id="vtep-address-not-on-node",
        ),
        pytest.param(
            overlay_view(),
            CONFIG,
            host(link("eth0")),
            ProblemCode.VTEP_ADDRESS_NOT_ON_NODE,
            id="vtep-interface-without-address",
        ),
        pytest.param(
            overlay_view(networks=(overlay(vni=1 << 24),)),
            CONFIG,
            DEFAULT_HOST,
            ProblemCode.VNI_INVALID,
            id="vni-too-large",
        ),
        pytest.param(
            overlay_view(networks=(overlay(vni=None),)),
            CONFIG,
            DEFAULT_HOST,
            ProblemCode.VNI_INVALID,
            id="vni-missing",
        ),
        pytest.param(
            overlay_view(),
            CONFIG,
            host(link("eth0", "198.18.0.10/24", mtu=100)),
            ProblemCode.MTU_TOO_SMALL,
            id="mtu-too-small",
        ),
        pytest.param(
            overlay_view(),
            CONFIG,
            host(link("eth0", "198.18.0.10/24"), link(VX, kind="vxlan", index=9)),
            ProblemCode.LINK_NAME_TAKEN,
            id="vxlan-name-taken-by-a-foreign-link",
        ),
    ],
)
def test_an_overlay_that_cannot_be_built_is_left_out_whole(
    v: NodeView, config: NodeConfig, facts: HostFacts, expected: ProblemCode
) -> None:
    state = build(v, config, facts)
    assert codes(state) == [expected]
    assert not [
        o
        for o in state.objects
        if isinstance(o, VxlanLink | FdbEntry | Neighbour | Route | PacketFilter)
    ]
    assert state.vtep is None
    assert of(state, Rule) == local_pod_rules(4, 6)  # the node's own pods keep working


@pytest.mark.parametrize("vlan", [4095, 5000, -1])
def test_a_vlan_id_out_of_range_leaves_out_only_that_subnet(vlan: int) -> None:
    state = build(
        vlan_view(
            subnet("bad", "underlay", "198.19.8.0/24", gateway="198.19.8.1", vlan=vlan),
            subnet("good", "underlay", "198.19.9.0/24", gateway="198.19.9.1", vlan=101),
        )
    )
    assert codes(state) == [ProblemCode.VLAN_ID_INVALID]
    assert [lk.name for lk in of(state, VlanLink)] == ["eth0.101"]
    assert {r.dst for r in of(state, Route)} == {"198.19.9.0/24", "0.0.0.0/0"}


def test_an_underlay_parent_that_does_not_exist_leaves_out_the_underlay() -> None:
    state = build(
        vlan_view(subnet("u", "underlay", "198.19.8.0/24", gateway="198.19.8.1")),
        NodeConfig(underlay_interface="bond0"),
    )
    assert codes(state) == [ProblemCode.PARENT_MISSING]
    assert state.problems[0].subject == "link/bond0"
    assert not of(state, VlanLink)
    assert not of(state, Route)


def test_a_foreign_link_with_the_vlan_name_but_another_config_is_left_alone() -> None:
    facts = host(
        link("eth0", "198.18.0.10/24"),
        link("eth0.100", kind="vlan", parent="eth0", vlan_id=999, index=5),
    )
    state = build(
        vlan_view(subnet("u", "underlay", "198.19.8.0/24", gateway="198.19.8.1")), facts=facts
    )
    assert codes(state) == [ProblemCode.LINK_NAME_TAKEN]
    assert not of(state, VlanLink)
    assert not of(state, Route)


def test_two_underlay_networks_claiming_one_node_use_the_oldest_and_say_so() -> None:
    networks = (
        underlay("newer", vlan=200, created="2024-05-01T00:00:00Z"),
        underlay("older", vlan=100, created="2024-01-01T00:00:00Z"),
    )
    subnets = (
        subnet("n", "newer", "198.19.9.0/24", gateway="198.19.9.1"),
        subnet("o", "older", "198.19.8.0/24", gateway="198.19.8.1"),
    )
    state = build(view(networks=networks, subnets=subnets))
    assert codes(state) == [ProblemCode.UNDERLAY_CONFLICT]
    assert "newer" in state.problems[0].message and "older" in state.problems[0].message
    assert [lk.name for lk in of(state, VlanLink)] == ["eth0.100"]
    assert set(state.subnet_tables) == {"o"}


def test_two_overlay_networks_use_the_oldest() -> None:
    networks = (
        overlay("b", vni=5, created="2024-02-01T00:00:00Z"),
        overlay("a", vni=4, created="2024-01-01T00:00:00Z"),
    )
    state = build(overlay_view(networks=networks, subnets=(), node_infos=()))
    assert codes(state) == [ProblemCode.OVERLAY_CONFLICT]
    assert [lk.vni for lk in of(state, VxlanLink)] == [4]


@pytest.mark.parametrize(
    ("bad", "fragment"),
    [
        (subnet("bad", "overlay", "198.19.0.1/24"), "host bits"),
        (subnet("bad", "overlay", "not-a-cidr"), "CIDR"),
        (subnet("bad", "overlay", "198.19.0.0/24", version="6"), "version 6"),
        (subnet("bad", "missing-network", "198.19.0.0/24"), "network missing-network not found"),
        (subnet("bad", "overlay", "198.19.0.0/24", gateway="198.19.1.1"), "outside"),
        (subnet("bad", "overlay", "198.19.0.0/24", gateway="nope"), "gateway"),
    ],
)
def test_an_invalid_subnet_is_reported_and_only_it_is_left_out(bad: object, fragment: str) -> None:
    good = subnet("good", "overlay", "198.19.5.0/24")
    state = build(overlay_view(subnets=(bad, good), node_infos=()))
    assert codes(state) == [ProblemCode.SUBNET_INVALID]
    assert state.problems[0].subject == "subnet/bad"
    assert fragment in state.problems[0].message
    if "gateway" in fragment or "outside" in fragment:
        assert "bad" in state.subnet_tables  # an overlay subnet does not need its gateway
    else:
        assert set(state.subnet_tables) == {"good"}


@pytest.mark.parametrize(
    ("info", "fragment"),
    [
        (node_info("node9", "not-an-ip", "52:54:00:00:00:99"), "does not appear to be"),
        (node_info("node9", "198.18.0.99", "zz:54:00:00:00:99"), "not a MAC"),
        (node_info("node9", "198.18.0.99", "01:00:5e:00:00:01"), "multicast"),
        (node_info("node9", "2001:db8::99", "52:54:00:00:00:99"), "IPv6"),
        (node_info("node9", "198.18.0.11", "52:54:00:00:00:99"), "already another node's"),
        (node_info("node9", "198.18.0.99", "52:54:00:00:00:0b"), "already another node's"),
        (node_info("node9", "198.18.0.99", "52:54:00:00:00:99", "bogus"), "local IP"),
    ],
)
def test_a_bad_remote_node_is_reported_and_skipped(info: object, fragment: str) -> None:
    infos = (node_info("node2", "198.18.0.11", "52:54:00:00:00:0b"), info)
    state = build(overlay_view(node_infos=infos))
    assert codes(state) == [ProblemCode.REMOTE_NODE_INVALID]
    assert state.problems[0].subject == "nodeinfo/node9"
    assert fragment in state.problems[0].message
    dsts = {e.dst for e in of(state, FdbEntry)}
    # node2 is always there; node9 only when just a local IP of it was bad.
    assert dsts == ({"198.18.0.11", "198.18.0.99"} if fragment == "local IP" else {"198.18.0.11"})


def test_a_node_that_has_not_published_its_vtep_is_not_a_problem() -> None:
    infos = (node_info("node2", None, None), node_info("node3", "198.18.0.12", None))
    state = build(overlay_view(node_infos=infos))
    assert state.problems == ()
    assert not of(state, FdbEntry)


def test_two_nodes_claiming_one_local_ip_is_a_conflict_and_the_first_wins() -> None:
    infos = (
        node_info("node2", "198.18.0.11", "52:54:00:00:00:0b", "198.18.7.7"),
        node_info("node3", "198.18.0.12", "52:54:00:00:00:0c", "198.18.7.7"),
    )
    state = build(overlay_view(node_infos=infos))
    assert codes(state) == [ProblemCode.CONFLICTING_OBJECTS]
    assert Neighbour(VX, "198.18.7.7", "52:54:00:00:00:0b") in of(state, Neighbour)
    assert Neighbour(VX, "198.18.7.7", "52:54:00:00:00:0c") not in of(state, Neighbour)


def test_ipv6_subnets_on_a_kernel_without_ipv6_are_reported_and_left_out() -> None:
    subnets = (
        subnet("ov4", "overlay", "198.19.0.0/24"),
        subnet("ov6", "overlay", "2001:db8:10::/64"),
    )
    state = build(
        overlay_view(subnets=subnets), facts=host(link("eth0", "198.18.0.10/24"), ipv6=False)
    )
    assert codes(state) == [ProblemCode.IPV6_UNAVAILABLE]
    assert {o.family for o in state.objects if isinstance(o, Route | Rule)} == {4}
    assert set(state.subnet_tables) == {"ov4"}


def test_more_subnets_than_tables_is_reported_for_the_newest() -> None:
    numbers = RoutingNumbers(subnet_table_first=1000, subnet_table_last=1001)
    subnets = tuple(
        subnet(f"s{i}", "overlay", f"198.19.{i}.0/24", created=f"2024-01-0{i + 1}T00:00:00Z")
        for i in range(3)
    )
    state = build(
        overlay_view(subnets=subnets, node_infos=()), dataclasses.replace(CONFIG, numbers=numbers)
    )
    assert codes(state) == [ProblemCode.TABLES_EXHAUSTED]
    assert state.problems[0].subject == "subnet/s2"
    assert sorted(state.subnet_tables.values()) == [1000, 1001]


# --------------------------------------------------------------------------- table numbers


def test_a_new_subnet_never_moves_an_older_subnets_table() -> None:
    numbers = RoutingNumbers(subnet_table_first=1000, subnet_table_last=1009)
    config = dataclasses.replace(CONFIG, numbers=numbers)
    older = [
        subnet(f"s{i}", "overlay", f"198.19.{i}.0/24", created=f"2024-01-0{i + 1}T00:00:00Z")
        for i in range(5)
    ]
    before = build(overlay_view(subnets=tuple(older), node_infos=()), config).subnet_tables
    for i in range(5, 9):
        newer = subnet(f"s{i}", "overlay", f"198.19.{i}.0/24", created=f"2024-02-0{i}T00:00:00Z")
        after = build(overlay_view(subnets=(*older, newer), node_infos=()), config).subnet_tables
        assert {name: after[name] for name in before} == before
        assert len(set(after.values())) == len(after)


def test_a_table_number_is_the_name_hashed_into_the_range_when_free() -> None:
    state = build(overlay_view(node_infos=()))
    expected = N.subnet_table_first + zlib.crc32(b"ov4") % N.subnet_tables
    assert state.subnet_tables == {"ov4": expected}


# --------------------------------------------------------------------------- determinism


def test_the_order_inputs_arrive_in_does_not_change_the_result() -> None:
    networks = [overlay(), underlay(vlan=100)]
    subnets = [
        subnet("ov4", "overlay", "198.19.0.0/24", nat=True),
        subnet("ov6", "overlay", "2001:db8:10::/64"),
        subnet("u1", "underlay", "198.19.8.0/24", gateway="198.19.8.1"),
        subnet("u2", "underlay", "198.19.9.0/24", gateway="198.19.9.1", vlan=200),
    ]
    infos = [
        node_info(f"node{i}", f"198.18.0.{10 + i}", f"52:54:00:00:01:{i:02x}") for i in range(2, 12)
    ]
    reference = build(
        overlay_view(networks=tuple(networks), subnets=tuple(subnets), node_infos=tuple(infos))
    )
    shuffler = random.Random(7)
    for _ in range(5):
        for items in (networks, subnets, infos):
            shuffler.shuffle(items)
        again = build(
            overlay_view(networks=tuple(networks), subnets=tuple(subnets), node_infos=tuple(infos))
        )
        assert again == reference


def test_every_desired_route_and_address_is_canonical() -> None:
    """Observe reports canonical CIDRs; desired must use the same spelling to compare equal."""
    state = build(
        overlay_view(
            networks=(overlay(), underlay()),
            subnets=(
                subnet("ov6", "overlay", "2001:0db8:0010::/64", nat=True),
                subnet("u", "underlay", "198.19.8.0/24", gateway="198.19.8.1"),
            ),
        )
    )
    for route in of(state, Route):
        assert isinstance(route, Route)
        assert route.dst == str(ipaddress.ip_network(route.dst))
    table = next(o for o in state.objects if isinstance(o, PacketFilter))
    assert packetfilter.from_nft(table.family, table.name, packetfilter.to_nft(table)) == table


def test_without_nftables_the_overlay_works_and_only_masquerading_is_reported_missing() -> None:
    facts = dataclasses.replace(DEFAULT_HOST, packet_filter=False)
    state = build(overlay_view(), facts=facts)
    assert codes(state) == [ProblemCode.PACKET_FILTER_UNAVAILABLE]
    assert "ov4" in state.problems[0].message
    assert not of(state, PacketFilter)
    assert of(state, VxlanLink)
    assert of(state, FdbEntry)
    quiet = build(overlay_view(subnets=(subnet("ov4", "overlay", "198.19.0.0/24"),)), facts=facts)
    assert quiet.problems == ()  # nothing to masquerade: nothing missing


def test_without_a_subnet_to_masquerade_there_is_no_table() -> None:
    """Its NAT chain alone would turn connection tracking on for everything forwarded."""
    state = build(overlay_view(subnets=(subnet("ov4", "overlay", "198.19.0.0/24"),)))
    assert not of(state, PacketFilter)
    assert of(state, VxlanLink)
