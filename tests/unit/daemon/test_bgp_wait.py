"""Which pods' ADD waits for the manager's BGP announcement, and what it says when the mark
does not come: the peers' states from the Network status of the network that speaks for the
pod (its own, or for a GlobalBGP pod its node's BGP network)."""

from __future__ import annotations

from hybridnet.api.meta import ObjectMeta
from hybridnet.api.resources import BGPPeerStatus, Network, NetworkSpec
from hybridnet.daemon.bgp_wait import awaited, describe, unannounced
from hybridnet.ipamstore import ipinstances
from tests.unit.daemon.datapath.builders import overlay, pod_ip, underlay


def bgp_network() -> Network:
    network = underlay("bgp", vlan=65010, mode="BGP", selector={"rack": "a"})
    network.status.bgp_peers = [
        BGPPeerStatus(
            "198.18.0.1",
            "Active",
            last_error="notification received: OPEN message error: bad peer AS (2/2)",
        ),
        BGPPeerStatus("198.18.0.2", "Established", announced_routes=3),
    ]
    return network


GLOBAL = Network(ObjectMeta(name="global"), NetworkSpec(type="GlobalBGP"))


def test_bgp_and_global_bgp_pods_wait_others_do_not() -> None:
    networks = {n.name: n for n in (bgp_network(), GLOBAL, underlay("vlan"), overlay())}
    pods = [
        pod_ip("a", "s", "198.19.0.5/24", "bgp"),
        pod_ip("b", "s", "198.20.0.5/24", "global"),
        pod_ip("c", "s", "198.18.0.5/24", "vlan"),
        pod_ip("d", "s", "198.19.80.5/24", "overlay"),
        pod_ip("e", "s", "198.19.81.5/24", "gone"),
    ]
    assert awaited(pods, networks) == {"a", "b"}


def test_a_missing_mark_names_the_peers_and_why_they_are_down() -> None:
    networks = [bgp_network(), GLOBAL]
    waiting = [
        pod_ip("a", "s", "198.19.0.5/24", "bgp"),
        pod_ip("b", "s", "198.20.0.5/24", "global"),
    ]
    assert describe(waiting, networks, {"rack": "a"}, 30) == (
        "the manager has not announced the BGP route of 198.19.0.5, 198.20.0.5 within 30s; "
        "network bgp's peers: 198.18.0.1 Active (last error: notification received: OPEN "
        "message error: bad peer AS (2/2)); 198.18.0.2 Established"
    )


def test_without_peer_states_it_asks_whether_a_manager_leads() -> None:
    network = underlay("bgp", vlan=65010, mode="BGP")
    message = describe([pod_ip("a", "s", "198.19.0.5/24", "bgp")], [network], {}, 5)
    assert message.endswith("network bgp reports no BGP peer state (is a manager leading?)")


def test_check_reports_an_address_not_announced_towards_this_node() -> None:
    networks = {n.name: n for n in (bgp_network(), underlay("vlan"))}
    here = pod_ip("a", "s", "198.19.0.5/24", "bgp")
    here.metadata.annotations[ipinstances.ANNOTATION_BGP_ANNOUNCED] = "node1"
    elsewhere = pod_ip("b", "s", "198.19.0.6/24", "bgp")
    elsewhere.metadata.annotations[ipinstances.ANNOTATION_BGP_ANNOUNCED] = "node2"
    vlan = pod_ip("c", "s", "198.18.0.5/24", "vlan")
    assert unannounced([here, elsewhere, vlan], networks, "node1") == [
        "the manager has not announced the BGP route of 198.19.0.6 via node1"
    ]
