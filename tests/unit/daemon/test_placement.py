"""Which networks' pods a node's ADD accepts: every overlay; an underlay only where its
nodeSelector picks the node, and only the oldest of several that do; a GlobalBGP network only
where the node's underlay network is a BGP one."""

from __future__ import annotations

from hybridnet.api.meta import ObjectMeta
from hybridnet.api.resources import Network, NetworkSpec
from hybridnet.daemon.placement import refusal
from tests.unit.daemon.datapath.builders import overlay, underlay

OLD, NEW = "2026-01-01T00:00:00Z", "2026-02-01T00:00:00Z"


def test_overlay_pods_are_accepted_everywhere() -> None:
    assert refusal(overlay(), [overlay()], "n1", {}) is None


def test_an_underlay_pod_is_accepted_where_its_network_selects_the_node() -> None:
    vlan = underlay("vlan", selector={"rack": "a"})
    assert refusal(vlan, [vlan], "n1", {"rack": "a", "zone": "z"}) is None


def test_an_underlay_pod_on_a_node_its_network_does_not_select_is_refused() -> None:
    vlan = underlay("vlan", selector={"rack": "a"})
    why = refusal(vlan, [vlan], "n1", {"rack": "b"})
    assert why == (
        "underlay network vlan does not attach node n1 "
        "(its nodeSelector rack=a does not match the node's labels)"
    )


def test_of_two_underlays_selecting_one_node_only_the_oldest_is_served() -> None:
    old, new = underlay("old", created=OLD), underlay("new", created=NEW)
    labels = {"rack": "a"}
    assert refusal(old, [new, old], "n1", labels) is None
    assert refusal(new, [new, old], "n1", labels) == (
        "underlay networks new, old all select node n1; it serves only the oldest, old"
    )


def test_a_global_bgp_pod_is_accepted_only_where_a_bgp_network_attaches_the_node() -> None:
    global_bgp = Network(ObjectMeta(name="global"), NetworkSpec(type="GlobalBGP"))
    bgp = underlay("bgp", vlan=65001, mode="BGP", selector={"rack": "a"})
    vlan = underlay("vlan", selector={"rack": "b"})
    networks = [global_bgp, bgp, vlan]
    assert refusal(global_bgp, networks, "n1", {"rack": "a"}) is None
    assert refusal(global_bgp, networks, "n2", {"rack": "b"}) == (
        "GlobalBGP network global serves only nodes a BGP network attaches; node n2's "
        "underlay network vlan is not BGP"
    )
    assert refusal(global_bgp, networks, "n3", {"rack": "c"}) == (
        "GlobalBGP network global serves only nodes a BGP network attaches; no underlay "
        "network attaches node n3"
    )
