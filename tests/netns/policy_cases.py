"""The NetworkPolicy cases both probe matrices run: the virtual cluster's
(tests/netns/test_network_policy.py) and the real-kubelet cluster's
(tests/realcluster/test_network_policy.py).

Each case writes policies through a :class:`PolicyBed`, which returns only once every node's
daemon enforces them, and checks a truth table with :func:`~tests.netns.policy_matrix.
assert_matrix` (which says what proves an allow and a deny). A bed has namespaces x, y, z
labelled ``ns=<name>`` with pods a, b, c each labelled ``pod=<name>`` (a on the first node, b
on the second, c on the third; overlay and underlay pods on every node), every pod with TCP and
UDP servers on ports 80-82 and those ports named ``serve-80-tcp`` etc. in its containers
(:data:`PORTS`, :func:`port_names`), and an outside host beyond the gateway at two addresses
of one /24. A bed without IPv6 runs only the IPv4 flows of a case (and none of the cases
:attr:`Case.ipv6` marks).
"""

from __future__ import annotations

import dataclasses
import ipaddress
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager
from typing import Any, Protocol

from hybridnet.api.constants import TYPE_OVERLAY, TYPE_UNDERLAY
from hybridnet.lab.processes import Process
from tests.netns.policy_matrix import Check, Flow, Peer, Reachability, assert_matrix

NAMESPACES = ("x", "y", "z")
POD_NAMES = ("a", "b", "c")
PORTS = (80, 81, 82)
"""Every pod's servers listen on these, TCP and UDP."""
KINDS = {
    # namespace -> the network type of a, b, c (a on node1, b on node2, c on node3)
    "x": (TYPE_OVERLAY, TYPE_UNDERLAY, TYPE_OVERLAY),
    "y": (TYPE_UNDERLAY, TYPE_OVERLAY, TYPE_UNDERLAY),
    "z": (TYPE_OVERLAY, TYPE_UNDERLAY, TYPE_UNDERLAY),
}

TCP80 = Flow(80, "tcp", 4)
TCP81 = Flow(81, "tcp", 4)
TCP82 = Flow(82, "tcp", 4)
UDP80 = Flow(80, "udp", 4)
UDP81 = Flow(81, "udp", 4)
TCP80_V6 = Flow(80, "tcp", 6)
UDP80_V6 = Flow(80, "udp", 6)
INGRESS = ["Ingress"]
EGRESS = ["Egress"]
HOLD_TICKS = 20
"""Round trips the held connection must make after the policy's round (one per 50 ms)."""
HOLD_TIMEOUT = 20.0
"""Bound on connecting and on those round trips: seconds where a working path needs one."""


def port_names(ports: Sequence[int] = PORTS) -> list[dict[str, Any]]:
    """The containers' ports, named as the upstream suite names them (``serve-80-tcp``)."""
    return [
        {"name": f"serve-{port}-{proto.lower()}", "containerPort": port, "protocol": proto}
        for port in ports
        for proto in ("TCP", "UDP")
    ]


def namespace_labels(name: str) -> dict[str, str]:
    return {"ns": name}


def pod_labels(name: str) -> dict[str, str]:
    return {"pod": name}


@dataclasses.dataclass(frozen=True)
class Policy:
    """A NetworkPolicy as a case writes it; each bed turns it into its store's object."""

    namespace: str
    name: str
    spec: Mapping[str, Any]


class PolicyBed(Protocol):
    """A cluster with the pods of the module docstring, as the cases drive it."""

    @property
    def pods(self) -> Mapping[str, Peer]:
        """``ns/name`` -> the pod as a probe peer (its ``node`` set)."""
        ...

    @property
    def nodes(self) -> Mapping[str, Peer]: ...

    @property
    def outside(self) -> Peer: ...

    @property
    def outside_extra(self) -> Peer:
        """The outside host's second address (the same server)."""
        ...

    @property
    def ipv6(self) -> bool: ...

    def policies(self, *items: Policy) -> AbstractContextManager[None]:
        """The policies, enforced on every node inside; deleted (and that enforced) after."""
        ...

    def relabel_pod(self, name: str, labels: Mapping[str, str]) -> None:
        """Replace the pod's labels; returns once every node enforces the change."""
        ...

    def relabel_namespace(self, name: str, labels: Mapping[str, str]) -> None:
        """Replace the namespace's labels; returns once every node enforces the change."""
        ...

    def hold(self, source: Peer, target: Peer, port: int) -> AbstractContextManager[Process]:
        """``policy_agent.py hold`` from ``source`` to ``target``, stopped after."""
        ...


@dataclasses.dataclass(frozen=True)
class Case:
    name: str
    run: Callable[[PolicyBed], None]
    ipv6: bool = False
    """The case needs pods' IPv6 addresses to write its policies."""

    def __str__(self) -> str:
        return self.name


CASES: list[Case] = []


def case(*, ipv6: bool = False) -> Callable[[Callable[[PolicyBed], None]], Case]:
    def register(run: Callable[[PolicyBed], None]) -> Case:
        found = Case(run.__name__, run, ipv6)
        CASES.append(found)
        return found

    return register


def all_pods(bed: PolicyBed) -> list[Peer]:
    return list(bed.pods.values())


def matrix(bed: PolicyBed, default: bool = True) -> Reachability:
    return Reachability(all_pods(bed), all_pods(bed), default)


def in_ns(namespace: str) -> Callable[[Peer], bool]:
    return lambda p: p.namespace == namespace


def named(*names: str) -> Callable[[Peer], bool]:
    return lambda p: p.name in names


def checks(expected: Reachability, *flows: Flow) -> list[Check]:
    return [Check(expected, flow) for flow in flows]


def selector(**labels: str) -> dict[str, object]:
    return {"matchLabels": dict(labels)}


def deny_all(namespace: str, types: list[str] = INGRESS) -> Policy:
    return Policy(namespace, "deny-all", {"podSelector": {}, "policyTypes": types})


# --------------------------------------------------------------------------- no policy


@case()
def without_policies_every_pod_reaches_every_pod(bed: PolicyBed) -> None:
    assert_matrix(checks(matrix(bed), TCP80, UDP80, Flow(81, "tcp", 6), Flow(81, "udp", 6)))


# --------------------------------------------------------------------------- ingress


@case()
def deny_all_ingress_isolates_every_pod_of_the_namespace(bed: PolicyBed) -> None:
    with bed.policies(deny_all("x")):
        expected = matrix(bed).expect(False, target=in_ns("x"))
        assert_matrix(checks(expected, TCP80, UDP80, TCP80_V6, UDP80_V6))
    assert_matrix(checks(matrix(bed), TCP80, UDP80))  # deleted: open again


@case()
def allow_all_ingress_beside_deny_all_opens_it_again(bed: PolicyBed) -> None:
    allow = Policy("x", "allow-all", {"podSelector": {}, "ingress": [{}]})
    with bed.policies(deny_all("x"), allow):
        assert_matrix(checks(matrix(bed), TCP80, UDP81))


@case()
def allow_from_the_same_namespace_only(bed: PolicyBed) -> None:
    spec: dict[str, object] = {"podSelector": {}, "ingress": [{"from": [{"podSelector": {}}]}]}
    with bed.policies(Policy("x", "same-ns", spec)):
        expected = matrix(bed).expect(False, target=in_ns("x"))
        expected.expect(True, source=in_ns("x"), target=in_ns("x"))
        assert_matrix(checks(expected, TCP80, UDP80))


@case()
def allow_from_another_namespace_by_its_labels(bed: PolicyBed) -> None:
    spec = {
        "podSelector": selector(pod="a"),
        "ingress": [{"from": [{"namespaceSelector": selector(ns="y")}]}],
    }
    with bed.policies(Policy("x", "from-y", spec)):
        expected = matrix(bed).ingress("x/a", False)
        expected.expect(True, source=in_ns("y"), target=named("x/a"))
        assert_matrix(checks(expected, TCP80, TCP80_V6))


@case()
def namespace_and_pod_selector_together_select_those_pods_of_those_namespaces(
    bed: PolicyBed,
) -> None:
    spec = {
        "podSelector": selector(pod="a"),
        "ingress": [
            {"from": [{"namespaceSelector": selector(ns="y"), "podSelector": selector(pod="b")}]}
        ],
    }
    with bed.policies(Policy("x", "y-b-only", spec)):
        expected = matrix(bed).ingress("x/a", False).pair("y/b", "x/a", True)
        assert_matrix(checks(expected, TCP80, UDP80))


@case()
def namespace_or_pod_selector_as_two_peers_select_either(bed: PolicyBed) -> None:
    spec = {
        "podSelector": selector(pod="a"),
        "ingress": [
            {"from": [{"namespaceSelector": selector(ns="y")}, {"podSelector": selector(pod="b")}]}
        ],
    }
    with bed.policies(Policy("x", "y-or-b", spec)):
        expected = matrix(bed).ingress("x/a", False)
        expected.expect(True, source=in_ns("y"), target=named("x/a")).pair("x/b", "x/a", True)
        assert_matrix(checks(expected, TCP80))


@case()
def namespace_selector_by_name_label(bed: PolicyBed) -> None:
    """``kubernetes.io/metadata.name``: the API server sets it on every namespace (the
    daemon adds it on the embedded store)."""
    names = {"matchExpressions": [
        {"key": "kubernetes.io/metadata.name", "operator": "In", "values": ["z"]}]}  # fmt: skip
    spec = {"podSelector": {}, "ingress": [{"from": [{"namespaceSelector": names}]}]}
    with bed.policies(Policy("y", "from-z", spec)):
        expected = matrix(bed).expect(False, target=in_ns("y"))
        expected.expect(True, source=in_ns("z"), target=in_ns("y"))
        assert_matrix(checks(expected, TCP81))


@case()
def ingress_on_one_port_number(bed: PolicyBed) -> None:
    spec = {"podSelector": selector(pod="b"), "ingress": [{"ports": [{"port": 80}]}]}
    with bed.policies(Policy("z", "port-80", spec)):
        denied = matrix(bed).ingress("z/b", False)
        assert_matrix([Check(matrix(bed), TCP80), Check(denied, TCP81), Check(denied, UDP80)])


@case()
def ingress_on_a_named_port_resolved_on_the_pod(bed: PolicyBed) -> None:
    spec = {"podSelector": {}, "ingress": [{"ports": [{"port": "serve-81-tcp"}]}]}
    with bed.policies(Policy("x", "named-81", spec)):
        denied = matrix(bed).expect(False, target=in_ns("x"))
        assert_matrix([Check(matrix(bed), TCP81), Check(denied, TCP80), Check(denied, UDP81)])


@case()
def ingress_on_a_port_range_with_end_port(bed: PolicyBed) -> None:
    spec = {
        "podSelector": selector(pod="c"),
        "ingress": [{"ports": [{"protocol": "TCP", "port": 80, "endPort": 81}]}],
    }
    with bed.policies(Policy("y", "range", spec)):
        denied = matrix(bed).ingress("y/c", False)
        assert_matrix([Check(matrix(bed), TCP80), Check(matrix(bed), TCP81), Check(denied, TCP82)])


@case()
def udp_only_policy_denies_tcp(bed: PolicyBed) -> None:
    spec = {"podSelector": {}, "ingress": [{"ports": [{"protocol": "UDP", "port": 80}]}]}
    with bed.policies(Policy("z", "udp-80", spec)):
        denied = matrix(bed).expect(False, target=in_ns("z"))
        assert_matrix([Check(matrix(bed), UDP80), Check(denied, TCP80), Check(denied, UDP81)])


@case(ipv6=True)
def ipv6_ip_block_allows_only_that_family(bed: PolicyBed) -> None:
    source = bed.pods["y/b"]
    spec = {
        "podSelector": selector(pod="a"),
        "ingress": [{"from": [{"ipBlock": {"cidr": f"{source.addresses[6]}/128"}}]}],
    }
    with bed.policies(Policy("x", "v6-from-y-b", spec)):
        only = matrix(bed).ingress("x/a", False).pair("y/b", "x/a", True)
        none = matrix(bed).ingress("x/a", False)
        assert_matrix([Check(only, TCP80_V6), Check(only, UDP80_V6), Check(none, TCP80)])


@case()
def ipv4_ip_block_of_one_pod(bed: PolicyBed) -> None:
    """An ipBlock names addresses, whatever the pod: the underlay pod y/a's own address
    (the fabric's) and no other pod of its node."""
    source = bed.pods["y/a"]
    spec = {
        "podSelector": selector(pod="b"),
        "ingress": [{"from": [{"ipBlock": {"cidr": f"{source.addresses[4]}/32"}}]}],
    }
    with bed.policies(Policy("z", "from-y-a", spec)):
        expected = matrix(bed).ingress("z/b", False).pair("y/a", "z/b", True)
        assert_matrix(checks(expected, TCP80, UDP81))


@case()
def policies_add_up(bed: PolicyBed) -> None:
    from_y = {"podSelector": selector(pod="a"),
              "ingress": [{"from": [{"namespaceSelector": selector(ns="y")}],
                           "ports": [{"port": 80}]}]}  # fmt: skip
    from_z = {"podSelector": selector(pod="a"),
              "ingress": [{"from": [{"namespaceSelector": selector(ns="z")}],
                           "ports": [{"port": 81}]}]}  # fmt: skip
    with bed.policies(Policy("x", "y-80", from_y), Policy("x", "z-81", from_z)):
        on_80 = matrix(bed).ingress("x/a", False)
        on_80.expect(True, source=in_ns("y"), target=named("x/a"))
        on_81 = matrix(bed).ingress("x/a", False)
        on_81.expect(True, source=in_ns("z"), target=named("x/a"))
        assert_matrix([Check(on_80, TCP80), Check(on_81, TCP81)])


# --------------------------------------------------------------------------- egress


@case()
def deny_all_egress(bed: PolicyBed) -> None:
    with bed.policies(deny_all("y", EGRESS)):
        expected = matrix(bed).expect(False, source=in_ns("y"))
        assert_matrix(checks(expected, TCP80, UDP80, TCP80_V6))


@case()
def egress_to_an_ip_block_with_except_for_overlay_and_underlay_pods(bed: PolicyBed) -> None:
    """Both beds have overlay and underlay pods in x (overlay pods are masqueraded on the
    way out: the policy sees them before), and the outside host's two addresses in one /24:
    the block is that /24, except the first address."""
    denied = bed.outside.addresses[4]
    block = ipaddress.ip_network(f"{denied}/24", strict=False)
    assert bed.outside_extra.addresses[4] in {str(a) for a in block}
    spec = {
        "podSelector": {},
        "policyTypes": EGRESS,
        "egress": [{"to": [{"ipBlock": {"cidr": str(block), "except": [f"{denied}/32"]}}]}],
    }
    sources = [p for p in all_pods(bed) if p.namespace == "x"]
    with bed.policies(Policy("x", "outside-but-one", spec)):
        targets = [bed.outside, bed.outside_extra]
        outside = Reachability(sources, targets).expect(False, target=named(bed.outside.name))
        to_pods = matrix(bed).expect(False, source=in_ns("x"))
        assert_matrix([Check(outside, TCP80), Check(outside, UDP80), Check(to_pods, TCP80)])


@case()
def egress_named_port_resolved_on_each_destination(bed: PolicyBed) -> None:
    spec = {
        "podSelector": selector(pod="a"),
        "policyTypes": EGRESS,
        "egress": [{"to": [{"namespaceSelector": {}}], "ports": [{"port": "serve-80-udp",
                                                                  "protocol": "UDP"}]}],
    }  # fmt: skip
    with bed.policies(Policy("z", "egress-named", spec)):
        denied = matrix(bed).egress("z/a", False)
        assert_matrix([Check(matrix(bed), UDP80), Check(denied, TCP80), Check(denied, UDP81)])


@case()
def egress_to_the_pods_of_one_namespace(bed: PolicyBed) -> None:
    spec = {
        "podSelector": selector(pod="b"),
        "policyTypes": EGRESS,
        "egress": [{"to": [{"namespaceSelector": selector(ns="z")}]}],
    }
    with bed.policies(Policy("x", "to-z", spec)):
        expected = matrix(bed).egress("x/b", False)
        expected.expect(True, source=named("x/b"), target=in_ns("z"))
        assert_matrix(checks(expected, TCP80, UDP80))


@case()
def ingress_and_egress_in_one_policy(bed: PolicyBed) -> None:
    spec = {
        "podSelector": selector(pod="c"),
        "policyTypes": ["Ingress", "Egress"],
        "ingress": [{"from": [{"podSelector": {}}]}],
        "egress": [{"to": [{"podSelector": {}}]}],
    }
    with bed.policies(Policy("z", "within-z", spec)):
        expected = matrix(bed).ingress("z/c", False).egress("z/c", False)
        expected.expect(True, source=in_ns("z"), target=named("z/c"))
        expected.expect(True, source=named("z/c"), target=in_ns("z"))
        assert_matrix(checks(expected, TCP80, TCP80_V6))


# --------------------------------------------------------------------------- changes


@case()
def a_pod_relabelled_into_and_out_of_a_peer_selector(bed: PolicyBed) -> None:
    spec = {
        "podSelector": selector(pod="a"),
        "ingress": [{"from": [{"namespaceSelector": {}, "podSelector": selector(role="client")}]}],
    }
    with bed.policies(Policy("x", "clients", spec)):
        assert_matrix(checks(matrix(bed).ingress("x/a", False), TCP80))
        bed.relabel_pod("z/c", {"pod": "c", "role": "client"})
        try:
            allowed = matrix(bed).ingress("x/a", False).pair("z/c", "x/a", True)
            assert_matrix(checks(allowed, TCP80, UDP80))
        finally:
            bed.relabel_pod("z/c", pod_labels("c"))
        assert_matrix(checks(matrix(bed).ingress("x/a", False), TCP80))


@case()
def a_pod_relabelled_into_and_out_of_an_isolating_policy(bed: PolicyBed) -> None:
    locked = Policy("y", "locked", {"podSelector": selector(lock="yes"), "policyTypes": INGRESS})
    with bed.policies(locked):
        assert_matrix(checks(matrix(bed), TCP80))
        bed.relabel_pod("y/b", {"pod": "b", "lock": "yes"})
        try:
            assert_matrix(checks(matrix(bed).ingress("y/b", False), TCP80, UDP80))
        finally:
            bed.relabel_pod("y/b", pod_labels("b"))
        assert_matrix(checks(matrix(bed), TCP80))


@case()
def a_namespace_relabelled_into_a_namespace_selector(bed: PolicyBed) -> None:
    spec = {
        "podSelector": {},
        "ingress": [{"from": [{"namespaceSelector": selector(team="blue")}]}],
    }
    with bed.policies(Policy("x", "blue-team", spec)):
        assert_matrix(checks(matrix(bed).expect(False, target=in_ns("x")), TCP80))
        bed.relabel_namespace("z", {**namespace_labels("z"), "team": "blue"})
        try:
            expected = matrix(bed).expect(False, target=in_ns("x"))
            expected.expect(True, source=in_ns("z"), target=in_ns("x"))
            assert_matrix(checks(expected, TCP80))
        finally:
            bed.relabel_namespace("z", namespace_labels("z"))


@case()
def a_new_policy_keeps_established_connections_and_denies_new_ones(bed: PolicyBed) -> None:
    """Upstream leaves what happens to a connection opened before a policy to the plugin
    (the e2e suite asserts nothing about it); here replies of allowed connections always pass
    (conntrack: an established flow is accepted before any policy chain), so one opened before
    a deny-all keeps working in both directions while every new one is refused."""
    server, client = bed.pods["x/a"], bed.pods["y/b"]
    with bed.hold(client, server, 80) as held:
        held.wait_for_line("^connected$", timeout=HOLD_TIMEOUT)
        with bed.policies(deny_all("x")):
            ticks_before = _ticks(held)
            assert_matrix(checks(matrix(bed).expect(False, target=in_ns("x")), TCP80))
            # The held connection went on through the whole round, and still does.
            held.wait_for_line(rf"^tock {ticks_before + HOLD_TICKS}$", timeout=HOLD_TIMEOUT)
            assert not [line for line in held.output_lines if line.startswith("broken")]


def _ticks(process: Process) -> int:
    ticks = [int(line.split()[1]) for line in process.output_lines if line.startswith("tock ")]
    return max(ticks, default=0)


# --------------------------------------------------------------------------- the node


@case()
def a_pod_s_own_node_always_reaches_it_other_nodes_do_not(bed: PolicyBed) -> None:
    """Upstream: traffic between a pod and its own node (kubelet's health checks) is always
    allowed; another node is just another peer."""
    with bed.policies(*(deny_all(ns) for ns in NAMESPACES)):
        expected = Reachability(list(bed.nodes.values()), all_pods(bed), False)
        for pod in all_pods(bed):
            assert pod.node is not None
            expected.pair(pod.node.name, pod.name, True)
        assert_matrix(checks(expected, TCP80, UDP80, TCP80_V6))
