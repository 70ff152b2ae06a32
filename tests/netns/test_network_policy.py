"""Issue 15 §3: Kubernetes NetworkPolicy with traffic, on the virtual cluster.

Three nodes with their real daemons on one embedded store, namespaces x, y, z with pods a, b,
c each (overlay and underlay pods on every node, see tests/netns/policy_cluster.py), TCP and
UDP servers on ports 80-82 in every pod and on the outside host. Each case writes policies,
waits until every node's daemon has logged that it enforces exactly the store's current inputs
(``network policy applied`` with their digest: the positive signal), and probes every pair at
once against a truth table, as the upstream network-policy e2e suite does
(tests/netns/policy_matrix.py says what proves an allow and a deny). The cases are
tests/netns/policy_cases.py's, which the real-kubelet cluster runs too; the ones here after
them need the lab (its store's Events, a broken selector no API server would take, a table
damaged by hand). One cluster for the module; each case removes its policies (and that too is
waited for) before the next. The daemons resync only every 10 minutes: every reconcile here is
one a change woke, so a table damaged by hand stays damaged until the test asks for a
reconcile.
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import json
import time
from collections.abc import Callable, Iterator, Mapping

import pytest

from hybridnet import lab as testbed
from hybridnet.api.builtin import Event
from hybridnet.api.builtin import Namespace as NamespaceObject
from hybridnet.lab.cluster import Cluster, ClusterConfig
from hybridnet.lab.cni_runtime import CniPluginError
from hybridnet.policy.model import Direction
from hybridnet.rpc.client import DaemonClient
from tests.netns import policy_cluster
from tests.netns.policy_cases import (
    CASES,
    INGRESS,
    TCP80,
    UDP80,
    Case,
    Policy,
    checks,
    in_ns,
    matrix,
    selector,
)
from tests.netns.policy_cluster import PolicyPods, enforced, policies, policy
from tests.netns.policy_matrix import SERVER_READY_TIMEOUT, Peer, agent_argv, assert_matrix

pytestmark = pytest.mark.root


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


@dataclasses.dataclass
class VirtualBed:
    """The virtual cluster as tests/netns/policy_cases.py drives it."""

    built: PolicyPods
    ipv6: bool = True

    @property
    def pods(self) -> Mapping[str, Peer]:
        return self.built.pods

    @property
    def nodes(self) -> Mapping[str, Peer]:
        return self.built.nodes

    @property
    def outside(self) -> Peer:
        return self.built.outside

    @property
    def outside_extra(self) -> Peer:
        return self.built.outside_extra

    def policies(self, *items: Policy) -> contextlib.AbstractContextManager[None]:
        written = [policy(p.namespace, p.name, p.spec) for p in items]
        return policies(self.built.cluster, *written)

    def relabel_pod(self, name: str, labels: Mapping[str, str]) -> None:
        with enforced(self.built.cluster):
            self.built.relabel(name, labels)

    def relabel_namespace(self, name: str, labels: Mapping[str, str]) -> None:
        store = self.built.cluster.store
        namespace = store.get(NamespaceObject, name)
        namespace.metadata.labels = dict(labels)
        with enforced(self.built.cluster):
            store.update(namespace)

    @contextlib.contextmanager
    def hold(self, source: Peer, target: Peer, port: int) -> Iterator[testbed.Process]:
        netns = self.built.members[source.name].netns
        held = netns.spawn(agent_argv("hold", target.addresses[4], str(port), "held-connection"))
        try:
            yield held
        finally:
            held.stop()
            netns.processes.remove(held)


@pytest.mark.parametrize("case", CASES, ids=str)
def test_policy_case(case: Case, pods: PolicyPods) -> None:
    case.run(VirtualBed(pods))


# --------------------------------------------------------------------------- bad input


def test_a_named_port_nobody_defines_matches_nothing_and_is_reported(pods: PolicyPods) -> None:
    spec = {"podSelector": selector(pod="c"), "ingress": [{"ports": [{"port": "no-such-port"}]}]}
    with policies(pods.cluster, policy("x", "nothing-named", spec)):
        assert_matrix(checks(matrix(VirtualBed(pods)).ingress("x/c", False), TCP80, UDP80))
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
        assert_matrix(checks(matrix(VirtualBed(pods)).ingress("y/a", False), TCP80))


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
        assert_matrix(checks(matrix(VirtualBed(pods)).expect(False, target=in_ns("x")), TCP80))


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
            pods.members[server.name].netns.processes.remove(sniffers[server.name])


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
