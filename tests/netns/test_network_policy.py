"""Issue 15 §3: Kubernetes NetworkPolicy with traffic, on the virtual cluster.

Three nodes with their real daemons on one embedded store, namespaces x, y, z with pods a, b,
c each (overlay and underlay pods on every node, see tests/netns/policy_cluster.py), TCP and
UDP servers on ports 80-82 in every pod and on the outside host. Each case writes policies,
waits until every node's daemon has logged that it enforces exactly the store's current inputs
(``network policy applied`` with their digest: the positive signal), and probes every pair at
once against a truth table, as the upstream network-policy e2e suite does
(tests/netns/policy_matrix.py says what proves an allow and a deny). One cluster for the
module; each case removes its policies (and that too is waited for) before the next. The
daemons resync only every 10 minutes: every reconcile here is one a change woke, so a table
damaged by hand stays damaged until the test asks for a reconcile.
"""

from __future__ import annotations

import itertools
import json
import time
from collections.abc import Callable, Iterator

import pytest

from hybridnet import lab as testbed
from hybridnet.api.builtin import Event
from hybridnet.api.builtin import Namespace as NamespaceObject
from hybridnet.lab.cluster import Cluster, ClusterConfig
from hybridnet.lab.cni_runtime import CniPluginError
from hybridnet.policy.model import Direction
from hybridnet.rpc.client import DaemonClient
from tests.netns import policy_cluster
from tests.netns.policy_cluster import PolicyPods, enforced, policies, policy
from tests.netns.policy_matrix import (
    SERVER_READY_TIMEOUT,
    Check,
    Flow,
    Peer,
    Reachability,
    agent_argv,
    assert_matrix,
)

pytestmark = pytest.mark.root

TCP80 = Flow(80, "tcp", 4)
TCP81 = Flow(81, "tcp", 4)
TCP82 = Flow(82, "tcp", 4)
UDP80 = Flow(80, "udp", 4)
UDP81 = Flow(81, "udp", 4)
TCP80_V6 = Flow(80, "tcp", 6)
UDP80_V6 = Flow(80, "udp", 6)
INGRESS = ["Ingress"]
EGRESS = ["Egress"]


@pytest.fixture(scope="module")
def cluster(
    testbed_run: testbed.TestbedRun, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Cluster]:
    config = ClusterConfig(resync_period=600.0)
    with Cluster(testbed_run, tmp_path_factory.mktemp("policy-cluster"), config) as built:
        built.create_networks()
        built.wait_converged()
        yield built


@pytest.fixture(scope="module")
def pods(cluster: Cluster) -> PolicyPods:
    with enforced(cluster):  # every daemon has seen every pod before the first case
        return policy_cluster.create(cluster)


def in_ns(namespace: str) -> Callable[[Peer], bool]:
    return lambda p: p.namespace == namespace


def named(*names: str) -> Callable[[Peer], bool]:
    return lambda p: p.name in names


def matrix(pods: PolicyPods, default: bool = True) -> Reachability:
    return Reachability(pods.all_pods, pods.all_pods, default)


def checks(expected: Reachability, *flows: Flow) -> list[Check]:
    return [Check(expected, flow) for flow in flows]


def selector(**labels: str) -> dict[str, object]:
    return {"matchLabels": dict(labels)}


# --------------------------------------------------------------------------- no policy


def test_without_policies_every_pod_reaches_every_pod(pods: PolicyPods) -> None:
    assert_matrix(checks(matrix(pods), TCP80, UDP80, Flow(81, "tcp", 6), Flow(81, "udp", 6)))


# --------------------------------------------------------------------------- ingress


def test_deny_all_ingress_isolates_every_pod_of_the_namespace(pods: PolicyPods) -> None:
    deny = policy("x", "deny-all", {"podSelector": {}, "policyTypes": INGRESS})
    with policies(pods.cluster, deny):
        expected = matrix(pods).expect(False, target=in_ns("x"))
        assert_matrix(checks(expected, TCP80, UDP80, TCP80_V6, UDP80_V6))
    assert_matrix(checks(matrix(pods), TCP80, UDP80))  # deleted: open again


def test_allow_all_ingress_beside_deny_all_opens_it_again(pods: PolicyPods) -> None:
    deny = policy("x", "deny-all", {"podSelector": {}, "policyTypes": INGRESS})
    allow = policy("x", "allow-all", {"podSelector": {}, "ingress": [{}]})
    with policies(pods.cluster, deny, allow):
        assert_matrix(checks(matrix(pods), TCP80, UDP81))


def test_allow_from_the_same_namespace_only(pods: PolicyPods) -> None:
    spec: dict[str, object] = {"podSelector": {}, "ingress": [{"from": [{"podSelector": {}}]}]}
    with policies(pods.cluster, policy("x", "same-ns", spec)):
        expected = matrix(pods).expect(False, target=in_ns("x"))
        expected.expect(True, source=in_ns("x"), target=in_ns("x"))
        assert_matrix(checks(expected, TCP80, UDP80))


def test_allow_from_another_namespace_by_its_labels(pods: PolicyPods) -> None:
    spec = {
        "podSelector": selector(pod="a"),
        "ingress": [{"from": [{"namespaceSelector": selector(ns="y")}]}],
    }
    with policies(pods.cluster, policy("x", "from-y", spec)):
        expected = matrix(pods).ingress("x/a", False)
        expected.expect(True, source=in_ns("y"), target=named("x/a"))
        assert_matrix(checks(expected, TCP80, TCP80_V6))


def test_namespace_and_pod_selector_together_select_those_pods_of_those_namespaces(
    pods: PolicyPods,
) -> None:
    spec = {
        "podSelector": selector(pod="a"),
        "ingress": [
            {"from": [{"namespaceSelector": selector(ns="y"), "podSelector": selector(pod="b")}]}
        ],
    }
    with policies(pods.cluster, policy("x", "y-b-only", spec)):
        expected = matrix(pods).ingress("x/a", False).pair("y/b", "x/a", True)
        assert_matrix(checks(expected, TCP80, UDP80))


def test_namespace_or_pod_selector_as_two_peers_select_either(pods: PolicyPods) -> None:
    spec = {
        "podSelector": selector(pod="a"),
        "ingress": [
            {"from": [{"namespaceSelector": selector(ns="y")}, {"podSelector": selector(pod="b")}]}
        ],
    }
    with policies(pods.cluster, policy("x", "y-or-b", spec)):
        expected = matrix(pods).ingress("x/a", False)
        expected.expect(True, source=in_ns("y"), target=named("x/a")).pair("x/b", "x/a", True)
        assert_matrix(checks(expected, TCP80))


def test_namespace_selector_by_name_label(pods: PolicyPods) -> None:
    """``kubernetes.io/metadata.name``: the API server sets it on every namespace (the
    daemon adds it on the embedded store)."""
    names = {"matchExpressions": [
        {"key": "kubernetes.io/metadata.name", "operator": "In", "values": ["z"]}]}  # fmt: skip
    spec = {"podSelector": {}, "ingress": [{"from": [{"namespaceSelector": names}]}]}
    with policies(pods.cluster, policy("y", "from-z", spec)):
        expected = matrix(pods).expect(False, target=in_ns("y"))
        expected.expect(True, source=in_ns("z"), target=in_ns("y"))
        assert_matrix(checks(expected, TCP81))


def test_ingress_on_one_port_number(pods: PolicyPods) -> None:
    spec = {"podSelector": selector(pod="b"), "ingress": [{"ports": [{"port": 80}]}]}
    with policies(pods.cluster, policy("z", "port-80", spec)):
        denied = matrix(pods).ingress("z/b", False)
        assert_matrix([Check(matrix(pods), TCP80), Check(denied, TCP81), Check(denied, UDP80)])


def test_ingress_on_a_named_port_resolved_on_the_pod(pods: PolicyPods) -> None:
    spec = {"podSelector": {}, "ingress": [{"ports": [{"port": "serve-81-tcp"}]}]}
    with policies(pods.cluster, policy("x", "named-81", spec)):
        denied = matrix(pods).expect(False, target=in_ns("x"))
        assert_matrix([Check(matrix(pods), TCP81), Check(denied, TCP80), Check(denied, UDP81)])


def test_ingress_on_a_port_range_with_end_port(pods: PolicyPods) -> None:
    spec = {
        "podSelector": selector(pod="c"),
        "ingress": [{"ports": [{"protocol": "TCP", "port": 80, "endPort": 81}]}],
    }
    with policies(pods.cluster, policy("y", "range", spec)):
        denied = matrix(pods).ingress("y/c", False)
        assert_matrix(
            [Check(matrix(pods), TCP80), Check(matrix(pods), TCP81), Check(denied, TCP82)]
        )


def test_udp_only_policy_denies_tcp(pods: PolicyPods) -> None:
    spec = {"podSelector": {}, "ingress": [{"ports": [{"protocol": "UDP", "port": 80}]}]}
    with policies(pods.cluster, policy("z", "udp-80", spec)):
        denied = matrix(pods).expect(False, target=in_ns("z"))
        assert_matrix([Check(matrix(pods), UDP80), Check(denied, TCP80), Check(denied, UDP81)])


def test_ipv6_ip_block_allows_only_that_family(pods: PolicyPods) -> None:
    source = pods.pod("y/b")
    spec = {
        "podSelector": selector(pod="a"),
        "ingress": [{"from": [{"ipBlock": {"cidr": f"{source.addresses[6]}/128"}}]}],
    }
    with policies(pods.cluster, policy("x", "v6-from-y-b", spec)):
        only = matrix(pods).ingress("x/a", False).pair("y/b", "x/a", True)
        none = matrix(pods).ingress("x/a", False)
        assert_matrix([Check(only, TCP80_V6), Check(only, UDP80_V6), Check(none, TCP80)])


def test_policies_add_up(pods: PolicyPods) -> None:
    from_y = {"podSelector": selector(pod="a"),
              "ingress": [{"from": [{"namespaceSelector": selector(ns="y")}],
                           "ports": [{"port": 80}]}]}  # fmt: skip
    from_z = {"podSelector": selector(pod="a"),
              "ingress": [{"from": [{"namespaceSelector": selector(ns="z")}],
                           "ports": [{"port": 81}]}]}  # fmt: skip
    with policies(pods.cluster, policy("x", "y-80", from_y), policy("x", "z-81", from_z)):
        on_80 = matrix(pods).ingress("x/a", False)
        on_80.expect(True, source=in_ns("y"), target=named("x/a"))
        on_81 = matrix(pods).ingress("x/a", False)
        on_81.expect(True, source=in_ns("z"), target=named("x/a"))
        assert_matrix([Check(on_80, TCP80), Check(on_81, TCP81)])


# --------------------------------------------------------------------------- egress


def test_deny_all_egress(pods: PolicyPods) -> None:
    deny = policy("y", "deny-egress", {"podSelector": {}, "policyTypes": EGRESS})
    with policies(pods.cluster, deny):
        expected = matrix(pods).expect(False, source=in_ns("y"))
        assert_matrix(checks(expected, TCP80, UDP80, TCP80_V6))


def outside_matrix(pods: PolicyPods, sources: list[Peer]) -> Reachability:
    return Reachability(sources, [pods.outside, pods.outside_extra])


def test_egress_to_an_ip_block_with_except_for_overlay_and_underlay_pods(
    pods: PolicyPods,
) -> None:
    """x/a and x/c are overlay pods (masqueraded on the way out: the policy sees them
    before), x/b an underlay pod (its own address on the fabric)."""
    spec = {
        "podSelector": {},
        "policyTypes": EGRESS,
        "egress": [{"to": [{"ipBlock": {"cidr": "198.18.100.0/24",
                                        "except": ["198.18.100.10/32"]}}]}],
    }  # fmt: skip
    sources = [p for p in pods.all_pods if p.namespace == "x"]
    with policies(pods.cluster, policy("x", "outside-but-10", spec)):
        outside = outside_matrix(pods, sources).expect(False, target=named("outside"))
        to_pods = matrix(pods).expect(False, source=in_ns("x"))
        assert_matrix([Check(outside, TCP80), Check(outside, UDP80), Check(to_pods, TCP80)])


def test_egress_named_port_resolved_on_each_destination(pods: PolicyPods) -> None:
    spec = {
        "podSelector": selector(pod="a"),
        "policyTypes": EGRESS,
        "egress": [{"to": [{"namespaceSelector": {}}], "ports": [{"port": "serve-80-udp",
                                                                  "protocol": "UDP"}]}],
    }  # fmt: skip
    with policies(pods.cluster, policy("z", "egress-named", spec)):
        denied = matrix(pods).egress("z/a", False)
        assert_matrix([Check(matrix(pods), UDP80), Check(denied, TCP80), Check(denied, UDP81)])


def test_egress_to_the_pods_of_one_namespace(pods: PolicyPods) -> None:
    spec = {
        "podSelector": selector(pod="b"),
        "policyTypes": EGRESS,
        "egress": [{"to": [{"namespaceSelector": selector(ns="z")}]}],
    }
    with policies(pods.cluster, policy("x", "to-z", spec)):
        expected = matrix(pods).egress("x/b", False)
        expected.expect(True, source=named("x/b"), target=in_ns("z"))
        assert_matrix(checks(expected, TCP80, UDP80))


def test_ingress_and_egress_in_one_policy(pods: PolicyPods) -> None:
    spec = {
        "podSelector": selector(pod="c"),
        "policyTypes": ["Ingress", "Egress"],
        "ingress": [{"from": [{"podSelector": {}}]}],
        "egress": [{"to": [{"podSelector": {}}]}],
    }
    with policies(pods.cluster, policy("z", "within-z", spec)):
        expected = matrix(pods).ingress("z/c", False).egress("z/c", False)
        expected.expect(True, source=in_ns("z"), target=named("z/c"))
        expected.expect(True, source=named("z/c"), target=in_ns("z"))
        assert_matrix(checks(expected, TCP80, TCP80_V6))


_sctp_tags = itertools.count(1001)
SCTP_BOUND = 20.0
"""How long an allowed INIT may take to reach the server pod, and a denied one to be counted:
milliseconds here; reached only when broken."""


def test_sctp_by_port_number_with_init_chunks_standing_in_for_sctp_endpoints(
    pods: PolicyPods,
) -> None:
    """Stand-in for SCTP endpoints: this kernel has no SCTP sockets (EPROTONOSUPPORT), but
    nftables matches SCTP ports. The client sends the first packet an SCTP ``connect`` sends,
    an INIT chunk (policy_agent.py ``sctp-init``); the server side is an ``AF_PACKET`` reader
    on the pod's eth0 (``sctp-sniff``) logging every INIT that arrives (the pod's kernel then
    answers "protocol unreachable", which nothing waits for). Before the policy the INIT to
    port 81 arrives; with it, the INIT to 80 arrives, and one to 81 sent before it never
    does while the pod's drop counter on its node counts exactly that one. Server pods: x/a
    (overlay, node1) and x/b (underlay, node2), IPv4 and IPv6."""
    spec = {"podSelector": {}, "ingress": [{"ports": [{"protocol": "SCTP", "port": 80}]}]}
    pairs = ((pods.pod("x/a"), pods.pod("y/b")), (pods.pod("x/b"), pods.pod("z/a")))
    sniffers = {server.name: server.netns.spawn(agent_argv("sctp-sniff", "eth0"))
                for server, _ in pairs}  # fmt: skip
    try:
        for sniffer in sniffers.values():
            sniffer.wait_for_line("^ready$", timeout=SERVER_READY_TIMEOUT)
        for server, client in pairs:
            for family in (4, 6):
                before = _send_init(client, server, 81, family)
                _wait_for_init(sniffers[server.name], before)
        with policies(pods.cluster, policy("x", "sctp-80", spec)):
            for server, client in pairs:
                member = pods.members[server.name]
                host = member.node.host
                interface = policy_cluster.host_interface(host, member.netns.name)
                for family in (4, 6):
                    counted = policy_cluster.drop_count(host, Direction.INGRESS, interface)
                    denied = _send_init(client, server, 81, family)
                    allowed = _send_init(client, server, 80, family)
                    _wait_for_init(sniffers[server.name], allowed)
                    _wait_until(
                        lambda h=host, i=interface, n=counted: policy_cluster.drop_count(
                            h, Direction.INGRESS, i) == n + 1,  # type: ignore[misc]
                        f"{server.name}'s ingress drop counter counting the INIT to 81",
                    )  # fmt: skip
                    assert denied not in _inits(sniffers[server.name]), (
                        f"{client.name} -> {server.name} sctp/81 IPv{family} arrived"
                    )
    finally:
        for server, _ in pairs:
            sniffers[server.name].stop()
            server.netns.processes.remove(sniffers[server.name])


def _send_init(client: Peer, server: Peer, port: int, family: int) -> str:
    tag = str(next(_sctp_tags))
    client.netns.exec(agent_argv("sctp-init", server.addresses[family], str(port), tag))
    return tag


def _inits(sniffer: testbed.Process) -> set[str]:
    return {json.loads(line)["token"] for line in list(sniffer.output_lines) if line[:1] == "{"}


def _wait_for_init(sniffer: testbed.Process, tag: str) -> None:
    _wait_until(lambda: tag in _inits(sniffer), f"the INIT with tag {tag} at the server pod")


def _wait_until(check: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + SCTP_BOUND
    while not check():
        assert time.monotonic() < deadline, f"not within {SCTP_BOUND}s: {what}"
        time.sleep(0.02)


# --------------------------------------------------------------------------- changes


def test_a_pod_relabelled_into_and_out_of_a_peer_selector(pods: PolicyPods) -> None:
    spec = {
        "podSelector": selector(pod="a"),
        "ingress": [{"from": [{"namespaceSelector": {}, "podSelector": selector(role="client")}]}],
    }
    with policies(pods.cluster, policy("x", "clients", spec)):
        assert_matrix(checks(matrix(pods).ingress("x/a", False), TCP80))
        with enforced(pods.cluster):
            pods.relabel("z/c", {"pod": "c", "role": "client"})
        allowed = matrix(pods).ingress("x/a", False).pair("z/c", "x/a", True)
        assert_matrix(checks(allowed, TCP80, UDP80))
        with enforced(pods.cluster):
            pods.relabel("z/c", {"pod": "c"})
        assert_matrix(checks(matrix(pods).ingress("x/a", False), TCP80))


def test_a_pod_relabelled_into_and_out_of_an_isolating_policy(pods: PolicyPods) -> None:
    deny = policy("y", "locked", {"podSelector": selector(lock="yes"), "policyTypes": INGRESS})
    with policies(pods.cluster, deny):
        assert_matrix(checks(matrix(pods), TCP80))
        with enforced(pods.cluster):
            pods.relabel("y/b", {"pod": "b", "lock": "yes"})
        assert_matrix(checks(matrix(pods).ingress("y/b", False), TCP80, UDP80))
        with enforced(pods.cluster):
            pods.relabel("y/b", {"pod": "b"})
        assert_matrix(checks(matrix(pods), TCP80))


def test_a_namespace_relabelled_into_a_namespace_selector(pods: PolicyPods) -> None:
    spec = {
        "podSelector": {},
        "ingress": [{"from": [{"namespaceSelector": selector(team="blue")}]}],
    }
    store = pods.cluster.store
    with policies(pods.cluster, policy("x", "blue-team", spec)):
        assert_matrix(checks(matrix(pods).expect(False, target=in_ns("x")), TCP80))
        namespace = store.get(NamespaceObject, "z")
        namespace.metadata.labels = {"ns": "z", "team": "blue"}
        with enforced(pods.cluster):
            store.update(namespace)
        expected = matrix(pods).expect(False, target=in_ns("x"))
        expected.expect(True, source=in_ns("z"), target=in_ns("x"))
        try:
            assert_matrix(checks(expected, TCP80))
        finally:
            namespace = store.get(NamespaceObject, "z")
            namespace.metadata.labels = {"ns": "z"}
            with enforced(pods.cluster):
                store.update(namespace)


def test_a_new_policy_keeps_established_connections_and_denies_new_ones(
    pods: PolicyPods,
) -> None:
    """Upstream leaves what happens to a connection opened before a policy to the plugin; here
    replies of allowed connections always pass (conntrack), so one opened before the policy
    keeps working, in both directions, while a new one is refused."""
    server, client = pods.pod("x/a"), pods.pod("y/b")
    held = client.netns.spawn(agent_argv("hold", server.addresses[4], "80", "held-connection"))
    try:
        held.wait_for_line("^connected$", timeout=20)
        deny = policy("x", "deny-all", {"podSelector": {}, "policyTypes": INGRESS})
        with policies(pods.cluster, deny):
            ticks_before = _ticks(held)
            assert_matrix(checks(matrix(pods).expect(False, target=in_ns("x")), TCP80))
            # The held connection went on through the whole round, and still does.
            held.wait_for_line(rf"^tock {ticks_before + 20}$", timeout=20)
            assert not [line for line in held.output_lines if line.startswith("broken")]
    finally:
        held.stop()
        client.netns.processes.remove(held)


def _ticks(process: testbed.Process) -> int:
    ticks = [int(line.split()[1]) for line in process.output_lines if line.startswith("tock ")]
    return max(ticks, default=0)


# --------------------------------------------------------------------------- the node


def test_a_pod_s_own_node_always_reaches_it_other_nodes_do_not(pods: PolicyPods) -> None:
    """Upstream: traffic between a pod and its own node (kubelet's health checks) is always
    allowed; another node is just another peer."""
    denies = [
        policy(ns, "deny-all", {"podSelector": {}, "policyTypes": INGRESS})
        for ns in policy_cluster.NAMESPACES
    ]
    with policies(pods.cluster, *denies):
        nodes = list(pods.nodes.values())
        expected = Reachability(nodes, pods.all_pods, False)
        for pod in pods.all_pods:
            assert pod.node is not None
            expected.pair(pod.node.name, pod.name, True)
        assert_matrix(checks(expected, TCP80, UDP80, TCP80_V6))


# --------------------------------------------------------------------------- bad input


def test_a_named_port_nobody_defines_matches_nothing_and_is_reported(pods: PolicyPods) -> None:
    spec = {"podSelector": selector(pod="c"), "ingress": [{"ports": [{"port": "no-such-port"}]}]}
    with policies(pods.cluster, policy("x", "nothing-named", spec)):
        assert_matrix(checks(matrix(pods).ingress("x/c", False), TCP80, UDP80))
        events = [
            e
            for e in pods.cluster.store.list(Event, "x").items
            if e.body.get("involvedObject", {}).get("name") == "nothing-named"
        ]
        assert [e.body["reason"] for e in events] == ["NamedPortUnresolved"]
        assert "no-such-port" in events[0].body["message"]
        node = pods.pod("x/c").node
        assert node is not None
        log = pods.cluster.node(node.name).log.read_text()
        assert "network policy not enforceable as written" in log


def test_a_policy_whose_pod_selector_cannot_be_read_isolates_nothing_and_others_still_apply(
    pods: PolicyPods,
) -> None:
    broken = {
        "podSelector": {"matchExpressions": [{"key": "pod", "operator": "Sometimes"}]},
        "policyTypes": INGRESS,
    }
    deny = {"podSelector": selector(pod="a"), "policyTypes": INGRESS}
    with policies(pods.cluster, policy("y", "broken", broken), policy("y", "deny-a", deny)):
        assert_matrix(checks(matrix(pods).ingress("y/a", False), TCP80))


# --------------------------------------------------------------------------- drift


def test_a_pod_chain_flushed_by_hand_is_drift_for_diagnose_and_check_and_is_mended(
    pods: PolicyPods,
) -> None:
    deny = policy("x", "deny-all", {"podSelector": {}, "policyTypes": INGRESS})
    member = pods.members["x/b"]
    with policies(pods.cluster, deny):
        host = member.node.host
        listed = host.exec(["nft", "-j", "list", "table", "inet", "hybridnet-policy"]).stdout
        (chain,) = [c for c in json.loads(listed)["nftables"]
                    if c.get("chain", {}).get("name", "").startswith("ingress-")]  # fmt: skip
        name = chain["chain"]["name"]
        host.exec(["nft", "flush", "chain", "inet", "hybridnet-policy", name])
        diagnosis = DaemonClient(str(member.node.socket), 10.0).diagnose()
        (difference,) = [d for d in diagnosis.differences if d.kind == "network-policy"]
        assert difference.action == "update"
        assert f"chain {name}: rules differ" in difference.current
        with pytest.raises(CniPluginError) as check:
            member.node.runtime.check(member.attachment)
        assert f"chain {name}: rules differ" in check.value.msg + check.value.details
        # Any change wakes a reconcile, which rebuilds the whole table and mends it.
        with enforced(pods.cluster):
            namespace = pods.cluster.store.get(NamespaceObject, "x")
            namespace.metadata.annotations = {"touched": "yes"}
            pods.cluster.store.update(namespace)
        diagnosis = DaemonClient(str(member.node.socket), 10.0).diagnose()
        assert not [d for d in diagnosis.differences if d.kind == "network-policy"]
        assert_matrix(checks(matrix(pods).expect(False, target=in_ns("x")), TCP80))
