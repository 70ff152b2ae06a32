"""Issue 15 §3: the NetworkPolicy probe matrix on the real-kubelet cluster.

hybridnet installed by its Helm chart on three real nodes (kubelet + containerd, see
test_hybridnet.py for what the tier stands in for), and tests/netns/policy_cases.py's cases,
the ones the virtual cluster runs: namespaces x, y, z with real Pods a, b, c each, overlay and
underlay pods on every node (tests/realcluster/policy_bed.py), TCP and UDP probes between every
pair against a truth table (tests/netns/policy_matrix.py says what proves an allow and a deny:
a deny only beside control probes that went through to the same server in the same round).

What is real: the API server's NetworkPolicies, Pods and Namespaces, the Pods' named
containerPorts (named ports resolve from them), the scheduler and kubelet placing and starting
the pods, hybridnet's chart daemons enforcing, and kubelet's own readiness and liveness probes.
What stands in: the probe servers and clients are host processes entered into each pod's network
namespace (policy_bed.py), and the cluster is IPv4 only (the chart's overlay and the underlay
network have no IPv6 subnet), so the cases' IPv6 flows are left out and the one case that needs
pods' IPv6 addresses is skipped.

Pods are created once for the module; each case writes its policies and waits for every node's
daemon to log the digest of exactly what the API server then holds (the positive signal), and
removes them (waited for the same way) after.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import client

from hack.controlplane import close_api_client
from hack.realcluster.cluster import RealCluster
from hack.realcluster.hybridnet import HybridnetChart
from hack.realcluster.workloads import wait_for
from hybridnet.lab.netns import TestbedRun
from tests.netns.policy_cases import (
    CASES,
    NAMESPACES,
    TCP80,
    UDP80,
    Case,
    Policy,
    checks,
    deny_all,
    matrix,
    selector,
)
from tests.netns.policy_matrix import Peer, Reachability, assert_matrix
from tests.realcluster.conftest import running_cluster
from tests.realcluster.policy_bed import RealBed, build, wait_probes_logged

pytestmark = pytest.mark.timeout(1200)  # the cluster's start counts in the first test's time
PROBES_AFTER = 4
"""kubelet probes each pod must answer once the deny is enforced: two seconds of its readiness
and liveness probes (one each a second), more than the liveness failureThreshold allows to
miss before a restart."""

EVENT_TIMEOUT = 60.0
"""Bound on the daemon's Event reaching the API server after its reconcile (which the policy's
enforcement wait already saw): reached only when broken."""


@pytest.fixture(scope="module")
def cluster(testbed_run: TestbedRun) -> Iterator[RealCluster]:
    """Three nodes Ready with hybridnet's chart installed; removed after the module."""
    with running_cluster(testbed_run, HybridnetChart()) as real:
        yield real


@pytest.fixture(scope="module")
def bed(cluster: RealCluster) -> Iterator[RealBed]:
    api = cluster.api_client()
    try:
        built = build(cluster, api)
        try:
            yield built
        finally:
            built.stop()
    finally:
        close_api_client(api)


@pytest.mark.parametrize("case", CASES, ids=str)
def test_policy_case(case: Case, bed: RealBed) -> None:
    if case.ipv6 and not bed.ipv6:
        pytest.skip("the real cluster's pods have no IPv6 addresses")
    case.run(bed)


def _node_addresses(cluster: RealCluster, node: Peer) -> set[str]:
    listed = json.loads(cluster.node(node.name).spec.host.ip("-j", "addr", "show").stdout)
    return {
        a["local"] for link in listed for a in link.get("addr_info", []) if a["family"] == "inet"
    }


def _probe_failures(core: Any) -> int:
    """kubelet's Unhealthy Events (a failed readiness or liveness probe) in the namespaces."""
    events = [e for ns in NAMESPACES for e in core.list_namespaced_event(ns).items]
    return sum(e.count or 1 for e in events if e.reason == "Unhealthy")


def test_kubelet_probes_from_the_pod_s_node_pass_under_default_deny_ingress(bed: RealBed) -> None:
    """Upstream documents that a pod's own node (kubelet's health checks) always reaches it.
    Under a default-deny-ingress policy in every namespace, the other pods are cut off (the
    matrix), yet every pod's httpd goes on answering kubelet's readiness and liveness probes
    from its node's address after the policy was enforced: the pods stay Ready, are not
    restarted, and kubelet reports no failed probe."""
    core: Any = client.CoreV1Api(bed.api)
    failures_before = _probe_failures(core)
    with bed.policies(*(deny_all(ns) for ns in NAMESPACES)):
        logs = {name: bed.container_log(name) for name in bed.pods}
        offsets = {name: path.stat().st_size for name, path in logs.items()}
        pods = list(bed.pods.values())
        assert_matrix(checks(Reachability(pods, pods, False), TCP80, UDP80))
        for name, peer in bed.pods.items():
            assert peer.node is not None
            sources = _node_addresses(bed.cluster, peer.node)
            wait_probes_logged(logs[name], offsets[name], PROBES_AFTER, sources)
        for name, before in bed.objects.items():
            namespace, _, pod_name = name.partition("/")
            now = core.read_namespaced_pod(pod_name, namespace)
            assert now.metadata.uid == before.metadata.uid
            ready = {c.type: c.status for c in now.status.conditions}["Ready"]
            restarts = [s.restart_count for s in now.status.container_statuses]
            assert (ready, restarts) == ("True", [0]), f"{name}: Ready={ready} restarts={restarts}"
        assert _probe_failures(core) == failures_before


def test_a_named_port_no_pod_defines_matches_nothing_and_is_reported_as_an_event(
    bed: RealBed,
) -> None:
    """Upstream: a named port no selected pod declares matches nothing, so the pod is isolated
    with nothing allowed; the daemon says so with a Warning Event on the NetworkPolicy, which
    the real API server holds (waited for: the daemon sends it after the reconcile)."""
    spec = {"podSelector": selector(pod="c"), "ingress": [{"ports": [{"port": "no-such-port"}]}]}
    core: Any = client.CoreV1Api(bed.api)
    with bed.policies(Policy("x", "nothing-named", spec)):
        assert_matrix(checks(matrix(bed).ingress("x/c", False), TCP80, UDP80))

        def reported() -> list[Any] | None:
            selector_ = "involvedObject.kind=NetworkPolicy,involvedObject.name=nothing-named"
            found = core.list_namespaced_event("x", field_selector=selector_).items
            return found or None

        events = wait_for(
            "the daemon's Event on the policy", reported, EVENT_TIMEOUT, lambda: "none yet"
        )
        assert {(e.type, e.reason) for e in events} == {("Warning", "NamedPortUnresolved")}
        assert all("no-such-port" in e.message for e in events)
