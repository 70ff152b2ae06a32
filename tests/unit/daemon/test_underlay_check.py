"""Where an underlay ADD probes its addresses: the subnet's VLAN sub-interface (the parent for
VLAN 0), with the subnet's gateway; nothing for overlay, BGP and GlobalBGP pods."""

from __future__ import annotations

import ipaddress

from hybridnet.api.meta import ObjectMeta
from hybridnet.api.resources import Network, NetworkSpec
from hybridnet.daemon.underlay_check import Target, targets
from tests.unit.daemon.datapath.builders import overlay, pod_ip, subnet, underlay


def test_vlan_subnets_probe_on_their_sub_interface_and_ask_for_their_gateway() -> None:
    vlan = underlay("vlan", vlan=100)
    subnets = {
        "s4": subnet("s4", "vlan", "198.18.10.0/24", gateway="198.18.10.1"),
        "s6": subnet("s6", "vlan", "2001:db8:10::/64", vlan=200),
    }
    found = targets(
        [
            pod_ip("p", "s4", "198.18.10.5/24", "vlan"),
            pod_ip("p", "s6", "2001:db8:10::5/64", "vlan"),
        ],
        {"vlan": vlan},
        subnets,
        "eth1",
    )
    assert found == [
        Target(
            "eth1.100", ipaddress.ip_address("198.18.10.5"), ipaddress.ip_address("198.18.10.1")
        ),
        Target("eth1.200", ipaddress.ip_address("2001:db8:10::5"), None),
    ]


def test_vlan_zero_probes_on_the_underlay_interface_itself() -> None:
    flat = underlay("flat", vlan=0)
    subnets = {"f": subnet("f", "flat", "198.18.0.0/24")}
    found = targets([pod_ip("p", "f", "198.18.0.9/24", "flat")], {"flat": flat}, subnets, "bond0")
    assert [t.ifname for t in found] == ["bond0"]


def test_bgp_pods_are_not_probed() -> None:
    """Their address is not on the segment and their subnet's gateway (here one nobody
    holds) is not where they route: probing would only cost time, or refuse them."""
    bgp = underlay("bgp", vlan=65001, mode="BGP")
    global_bgp = Network(ObjectMeta(name="global"), NetworkSpec(type="GlobalBGP"))
    subnets = {
        "b": subnet("b", "bgp", "198.19.1.0/24", gateway="198.19.1.1"),
        "g": subnet("g", "global", "198.20.0.0/24"),
    }
    pods = [pod_ip("q", "b", "198.19.1.9/24", "bgp"), pod_ip("r", "g", "198.20.0.9/24", "global")]
    assert targets(pods, {"bgp": bgp, "global": global_bgp}, subnets, "eth0") == []


def test_overlay_pods_and_nodes_without_an_underlay_interface_check_nothing() -> None:
    """Without --underlay-interface there is no link to probe on; the datapath reports the
    missing interface instead (tests/netns/test_daemon_datapath.py)."""
    pods = [pod_ip("p", "o", "198.19.0.9/24", "overlay")]
    assert targets(pods, {"overlay": overlay()}, {}, "eth0") == []
    flat = [pod_ip("p", "f", "198.18.0.9/24", "flat")]
    assert targets(flat, {"flat": underlay("flat")}, {}, None) == []
