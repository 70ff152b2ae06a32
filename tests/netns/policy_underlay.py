"""The NetworkPolicy cases run on underlay pods of other kinds than the virtual cluster's
untagged ones (VLAN-tagged: tests/netns/test_network_policy_vlan.py, BGP-routed:
tests/cluster/test_policy_bgp_kube.py), over one small layout: three underlay pods on two
nodes and an overlay pod beside them, so that each case has flows underlay -> underlay on one
node and across nodes, and overlay <-> underlay. The matrix machinery is
tests/netns/policy_matrix.py's; enforcement is waited for as tests/netns/policy_cluster.py
does it (each daemon logs the digest of the inputs it enforces).

Each case is a function of a :class:`World`; a module builds its world and runs them.
"""

from __future__ import annotations

import dataclasses
import ipaddress
from collections.abc import Callable, Mapping

from hybridnet.api import constants as c
from tests.netns import policy_cluster
from tests.netns.policy_cluster import Daemons, enforced, policies, policy
from tests.netns.policy_matrix import Check, Flow, Peer, Reachability, assert_matrix

LAYOUT: Mapping[str, tuple[str, int]] = {
    # ns/name -> (network type, index of its node)
    "x/a": (c.TYPE_UNDERLAY, 0),
    "x/b": (c.TYPE_UNDERLAY, 1),
    "y/a": (c.TYPE_UNDERLAY, 1),
    "y/b": (c.TYPE_OVERLAY, 0),
}
NAMESPACES = ("x", "y")
TCP80, TCP81, UDP80 = Flow(80, "tcp", 4), Flow(81, "tcp", 4), Flow(80, "udp", 4)
TCP80_V6 = Flow(80, "tcp", 6)
"""Probed only between peers that have IPv6 (policy_matrix skips the others)."""


@dataclasses.dataclass
class World:
    daemons: Daemons
    pods: dict[str, Peer]
    """``ns/name`` -> the pod, as LAYOUT places it."""
    outside: Peer
    outside_extra: Peer
    """The host behind the fabric's router at a second address of the same /24."""

    @property
    def all_pods(self) -> list[Peer]:
        return list(self.pods.values())


def matrix(world: World, default: bool = True) -> Reachability:
    return Reachability(world.all_pods, world.all_pods, default)


def in_ns(namespace: str) -> Callable[[Peer], bool]:
    return lambda p: p.namespace == namespace


def selector(**labels: str) -> dict[str, object]:
    return {"matchLabels": dict(labels)}


def checks(expected: Reachability, *flows: Flow) -> list[Check]:
    return [Check(expected, flow) for flow in flows]


def without_policies(world: World) -> None:
    assert_matrix(checks(matrix(world), TCP80, UDP80, TCP80_V6))


def default_deny_ingress(world: World) -> None:
    deny = policy("x", "deny-all", {"podSelector": {}, "policyTypes": ["Ingress"]})
    with policies(world.daemons, deny):
        expected = matrix(world).expect(False, target=in_ns("x"))
        assert_matrix(checks(expected, TCP80, UDP80, TCP80_V6))


def allow_by_pod_selector(world: World) -> None:
    spec = {"podSelector": selector(pod="a"),
            "ingress": [{"from": [{"podSelector": selector(pod="b")}]}]}  # fmt: skip
    with policies(world.daemons, policy("x", "from-b", spec)):
        expected = matrix(world).ingress("x/a", False).pair("x/b", "x/a", True)
        assert_matrix(checks(expected, TCP80, UDP80))


def allow_by_namespace_selector(world: World) -> None:
    spec = {"podSelector": selector(pod="b"),
            "ingress": [{"from": [{"namespaceSelector": selector(ns="y")}]}]}  # fmt: skip
    with policies(world.daemons, policy("x", "from-y", spec)):
        expected = matrix(world).ingress("x/b", False)
        expected.expect(True, source=in_ns("y"), target=lambda p: p.name == "x/b")
        assert_matrix(checks(expected, TCP80, TCP80_V6))


def ingress_on_one_port(world: World) -> None:
    spec = {"podSelector": selector(pod="b"), "ingress": [{"ports": [{"port": 80}]}]}
    with policies(world.daemons, policy("x", "port-80", spec)):
        denied = matrix(world).ingress("x/b", False)
        assert_matrix([Check(matrix(world), TCP80), Check(denied, TCP81), Check(denied, UDP80)])


def deny_all_egress(world: World) -> None:
    deny = policy("y", "deny-egress", {"podSelector": {}, "policyTypes": ["Egress"]})
    with policies(world.daemons, deny):
        expected = matrix(world).expect(False, source=in_ns("y"))
        assert_matrix(checks(expected, TCP80, UDP80, TCP80_V6))


def egress_to_an_ip_block_with_except(world: World) -> None:
    """The outside host's /24 except its first address: the second stays reachable."""
    first = ipaddress.ip_address(world.outside.addresses[4])
    block = ipaddress.ip_network(f"{first}/24", strict=False)
    spec = {
        "podSelector": {},
        "policyTypes": ["Egress"],
        "egress": [{"to": [{"ipBlock": {"cidr": str(block), "except": [f"{first}/32"]}}]}],
    }
    sources = [p for p in world.all_pods if p.namespace == "x"]
    with policies(world.daemons, policy("x", "outside-but-first", spec)):
        outside = Reachability(sources, [world.outside, world.outside_extra])
        outside.expect(False, target=lambda p: p is world.outside)
        to_pods = matrix(world).expect(False, source=in_ns("x"))
        assert_matrix([Check(outside, TCP80), Check(outside, UDP80), Check(to_pods, TCP80)])


def a_pod_relabelled_into_a_peer_selector(world: World) -> None:
    """The overlay pod y/b gains, then loses, the label x/a's policy lets in."""
    spec = {"podSelector": selector(pod="a"),
            "ingress": [{"from": [{"namespaceSelector": {},
                                   "podSelector": selector(role="client")}]}]}  # fmt: skip
    store = world.daemons.store
    with policies(world.daemons, policy("x", "clients", spec)):
        assert_matrix(checks(matrix(world).ingress("x/a", False), TCP80))
        with enforced(world.daemons):
            policy_cluster.relabel(store, "y/b", {"pod": "b", "role": "client"})
        allowed = matrix(world).ingress("x/a", False).pair("y/b", "x/a", True)
        assert_matrix(checks(allowed, TCP80, UDP80))
        with enforced(world.daemons):
            policy_cluster.relabel(store, "y/b", {"pod": "b"})
        assert_matrix(checks(matrix(world).ingress("x/a", False), TCP80))


CASES: tuple[Callable[[World], None], ...] = (
    without_policies,
    default_deny_ingress,
    allow_by_pod_selector,
    allow_by_namespace_selector,
    ingress_on_one_port,
    deny_all_egress,
    egress_to_an_ip_block_with_except,
    a_pod_relabelled_into_a_peer_selector,
)
