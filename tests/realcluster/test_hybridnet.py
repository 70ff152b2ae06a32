"""hybridnet installed by its Helm chart on 3 real nodes, through the real kubelet and containerd.

One cluster for the module (:class:`hack.realcluster.hybridnet.HybridnetChart`: the image
imported into each node's containerd, ``helm install --wait``, an overlay and an underlay
network). The stand-ins are the tier's (no kube-proxy, the API server's relay and egress proxy,
images without a registry); see :mod:`hack.realcluster.cluster` and the setup's docstring.

Waits are for the state they name (pods Running, a rollout's pods Ready, kubelet's retry
Events); they give up only at bounds a working cluster never reaches on a loaded machine.
"""

from __future__ import annotations

import ipaddress
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import client

from hack.controlplane import close_api_client
from hack.realcluster.cluster import RealCluster
from hack.realcluster.hybridnet import (
    DAEMON_LABEL,
    NAMESPACE,
    OVERLAY_CIDR,
    UNDERLAY_CIDR,
    HybridnetChart,
    held_addresses_in,
    label_node,
)
from hack.realcluster.workloads import (
    create,
    delete,
    deployment_manifest,
    pod_manifest,
    pods_with_label,
    wait_for,
    wait_gone,
    wait_running,
)
from hybridnet.lab.cluster_model import OUTSIDE_V4
from hybridnet.lab.netns import TestbedRun
from hybridnet.lab.traffic import start_tcp_echo_server
from tests.realcluster.conftest import NODES, running_cluster
from tests.realcluster.pod_network import ECHO_PORT, PodNet, echo, pod_net, start_echo

TIMEOUT = 300.0
pytestmark = pytest.mark.timeout(1200)  # the cluster's start counts in the first test's time
UNDERLAY_ANNOTATION = {"networking.alibaba.com/network-type": "Underlay"}
DAEMON_SELECTOR = "app.kubernetes.io/name=hybridnet-daemon"


@pytest.fixture(scope="module")
def cluster(testbed_run: TestbedRun) -> Iterator[RealCluster]:
    """Three nodes Ready with hybridnet's chart installed; removed after the module."""
    with running_cluster(testbed_run, HybridnetChart()) as real:
        yield real


@pytest.fixture
def kube(cluster: RealCluster) -> Iterator[client.ApiClient]:
    api_client = cluster.api_client()
    yield api_client
    close_api_client(api_client)


def _deployment(name: str, replicas: int, annotations: dict[str, str]) -> dict[str, Any]:
    manifest = deployment_manifest(name, replicas)
    manifest["spec"]["template"]["metadata"]["annotations"] = dict(annotations)
    return manifest


def _in(address: str, cidr: str) -> bool:
    return ipaddress.ip_address(address) in ipaddress.ip_network(cidr)


def _node_address(cluster: RealCluster, name: str) -> str:
    return str(cluster.node(name).spec.host.ipv4)


def test_overlay_and_underlay_pods_reach_each_other_and_the_outside_host(
    cluster: RealCluster, kube: client.ApiClient
) -> None:
    create(kube, _deployment("overlay", NODES, {}))
    create(kube, _deployment("underlay", NODES, UNDERLAY_ANNOTATION))
    overlay = wait_running(kube, "default", "app=overlay", NODES, TIMEOUT)
    underlay = wait_running(kube, "default", "app=underlay", NODES, TIMEOUT)
    assert {p.spec.node_name for p in overlay} == {n.spec.name for n in cluster.nodes}
    assert {p.spec.node_name for p in underlay} == {n.spec.name for n in cluster.nodes}
    assert all(_in(p.status.pod_ip, OVERLAY_CIDR) for p in overlay), [
        p.status.pod_ip for p in overlay
    ]
    assert all(_in(p.status.pod_ip, UNDERLAY_CIDR) for p in underlay), [
        p.status.pod_ip for p in underlay
    ]
    nets = [pod_net(cluster, p) for p in [*overlay, *underlay]]
    servers = [start_echo(net) for net in nets]
    assert cluster.outside is not None
    outside_server = start_tcp_echo_server(cluster.outside, OUTSIDE_V4, ECHO_PORT)
    try:
        seen = {
            (source.name, target.name): echo(source, target.ip, "hello").seen_source
            for source in nets
            for target in nets
            if source is not target
        }
        want = {
            (source.name, target.name): source.ip
            for source in nets
            for target in nets
            if source is not target
        }
        assert seen == want  # every pod's own address at the receiver: no NAT in the cluster
        outside = {net.name: echo(net, OUTSIDE_V4, "out").seen_source for net in nets}
    finally:
        for server in [*servers, outside_server]:
            server.stop()
    # Underlay pods are on the fabric: the outside host sees them as they are. The overlay's
    # subnet is masqueraded (autoNatOutgoing) as its node on the way out of the cluster, since
    # the outside host has no route to it.
    assert outside == {
        net.name: net.ip if _in(net.ip, UNDERLAY_CIDR) else _node_address(cluster, net.node)
        for net in nets
    }
    for name in ("overlay", "underlay"):
        delete(kube, "Deployment", name)
    for name in ("overlay", "underlay"):
        wait_gone(kube, "default", f"app={name}", TIMEOUT)


def _statefulset(name: str) -> dict[str, Any]:
    labels = {"app": name}
    return {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": {"name": name},
        "spec": {
            "serviceName": name,
            "replicas": 1,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": pod_manifest("unused")["spec"],
            },
        },
    }


def test_a_statefulset_pod_comes_back_with_its_address(
    cluster: RealCluster, kube: client.ApiClient
) -> None:
    apps: Any = client.AppsV1Api(kube)
    core = client.CoreV1Api(kube)
    apps.create_namespaced_stateful_set("default", _statefulset("web"))
    (first,) = wait_running(kube, "default", "app=web", 1, TIMEOUT)
    core.delete_namespaced_pod(first.metadata.name, "default")

    def recreated() -> Any | None:
        pods = pods_with_label(kube, "default", "app=web")
        fresh = [
            p for p in pods if p.metadata.uid != first.metadata.uid and p.status.phase == "Running"
        ]
        return fresh[0] if fresh and len(pods) == 1 else None

    second = wait_for(
        "web-0 recreated by the StatefulSet controller", recreated, TIMEOUT, lambda: "not yet"
    )
    assert second.metadata.name == first.metadata.name == "web-0"
    assert second.status.pod_ip == first.status.pod_ip
    apps.delete_namespaced_stateful_set("web", "default")
    wait_gone(kube, "default", "app=web", TIMEOUT)


def _ctl(cluster: RealCluster, *args: str) -> subprocess.CompletedProcess[str]:
    argv = [
        os.path.join(os.path.dirname(sys.executable), "hybridnet-ctl"),
        "--kubeconfig",
        str(cluster.plane.kubeconfig_path),
        "--ipam-namespace",
        NAMESPACE,
        *args,
    ]
    return subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)


def test_pods_deleted_en_masse_release_every_address(
    cluster: RealCluster, kube: client.ApiClient
) -> None:
    replicas = 5 * NODES
    create(kube, _deployment("mass", replicas, {}))
    running = wait_running(kube, "default", "app=mass", replicas, TIMEOUT)
    names = {p.metadata.name for p in running}

    def held() -> set[str]:
        return {
            pod
            for node in cluster.nodes
            for pod in held_addresses_in(cluster, node.spec.name).values()
            if pod in names
        }

    assert held() == names
    delete(kube, "Deployment", "mass")
    wait_gone(kube, "default", "app=mass", TIMEOUT)
    wait_for(
        "every address of the deleted pods released",
        lambda: True if not held() else None,
        TIMEOUT,
        lambda: f"still held: {sorted(held())}",
    )
    # The manager writes the Subnet and Network counters a second or two after the releases
    # (its status batches); `ipam check` confirms what it finds with a second reading, and
    # the counters must come right without anyone's help.
    checks: list[subprocess.CompletedProcess[str]] = []

    def clean() -> bool | None:
        checks.append(_ctl(cluster, "ipam", "check"))
        return True if checks[-1].returncode == 0 else None

    wait_for("ipam check clean", clean, TIMEOUT, lambda: checks[-1].stdout + checks[-1].stderr)


def _daemon_pods(kube: client.ApiClient) -> list[Any]:
    return pods_with_label(kube, NAMESPACE, DAEMON_SELECTOR)


def _ready(pod: Any) -> bool:
    return any(c.type == "Ready" and c.status == "True" for c in pod.status.conditions or [])


def _two_pods_on_two_nodes(cluster: RealCluster, kube: client.ApiClient, name: str) -> list[PodNet]:
    create(kube, _deployment(name, 2, {}))
    pods = wait_running(kube, "default", f"app={name}", 2, TIMEOUT)
    assert len({p.spec.node_name for p in pods}) == 2
    return [pod_net(cluster, p) for p in pods]


def _ping(source: PodNet, target: str) -> subprocess.Popen[str]:
    """Echo requests every 0.2 s until SIGINT; ``-O`` reports each unanswered one."""
    return subprocess.Popen(
        source.argv(["ping", "-n", "-O", "-i", "0.2", target]),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _ping_result(probe: subprocess.Popen[str]) -> str:
    probe.send_signal(signal.SIGINT)
    output, _ = probe.communicate(timeout=30)
    return output


def test_a_daemon_rollout_keeps_running_pods_traffic_flowing(
    cluster: RealCluster, kube: client.ApiClient
) -> None:
    first, second = _two_pods_on_two_nodes(cluster, kube, "steady")
    before = {p.metadata.uid for p in _daemon_pods(kube)}
    apps = client.AppsV1Api(kube)
    probe = _ping(first, second.ip)
    try:
        # A new daemon version as `helm upgrade` with a changed setting makes one: a changed
        # pod template, which the DaemonSet rolls out node by node.
        patch = {"spec": {"template": {"metadata": {"annotations": {"hybridnet.lab/rev": "2"}}}}}
        apps.patch_namespaced_daemon_set("hybridnet-daemon", NAMESPACE, patch)

        def rolled_out() -> bool | None:
            pods = _daemon_pods(kube)
            fresh = [p for p in pods if p.metadata.uid not in before and _ready(p)]
            return True if len(fresh) == NODES == len(pods) else None

        wait_for(
            "every node's daemon replaced and Ready",
            rolled_out,
            TIMEOUT,
            lambda: str([(p.spec.node_name, _ready(p)) for p in _daemon_pods(kube)]),
        )
        # Traffic after the rollout too, on the new daemons' datapath.
        assert echo_ok(first, second)
    finally:
        output = _ping_result(probe)
    assert "no answer yet" not in output, output
    assert " 0% packet loss" in output, output
    delete(kube, "Deployment", "steady")
    wait_gone(kube, "default", "app=steady", TIMEOUT)


def echo_ok(source: PodNet, target: PodNet) -> bool:
    server = start_echo(target)
    try:
        return echo(source, target.ip, "after").seen_source == source.ip
    finally:
        server.stop()


def _running(pod: Any) -> Any | None:
    return pod if pod.status.phase == "Running" else None


WAITING_REASONS = {"NetworkNotReady", "FailedCreatePodSandBox"}
"""kubelet's Events for a pod it holds back and retries: the plugin's CNI STATUS says the
daemon is not available, so the runtime reports the network not ready and kubelet waits
(NetworkNotReady); or an ADD is refused with "try again later" (FailedCreatePodSandBox)."""


def _kubelet_retries(kube: client.ApiClient, pod: str) -> int:
    """How many times kubelet said it could not start the pod's sandbox yet (each a retry)."""
    events = client.CoreV1Api(kube).list_namespaced_event(
        "default", field_selector=f"involvedObject.name={pod}"
    )
    return sum(e.count or 1 for e in events.items if e.reason in WAITING_REASONS)


def test_a_node_without_its_daemon_keeps_its_pods_and_new_pods_wait(
    cluster: RealCluster, kube: client.ApiClient
) -> None:
    first, second = _two_pods_on_two_nodes(cluster, kube, "kept")
    node = second.node
    core = client.CoreV1Api(kube)
    label_node(cluster, node, {DAEMON_LABEL[0]: None})
    try:
        wait_for(
            f"the daemon on {node} deleted by the DaemonSet controller",
            lambda: None if any(p.spec.node_name == node for p in _daemon_pods(kube)) else True,
            TIMEOUT,
            lambda: str([p.spec.node_name for p in _daemon_pods(kube)]),
        )
        assert echo_ok(first, second)  # the node's datapath outlives its daemon
        create(kube, pod_manifest("waiting", node=node))
        wait_for(
            "kubelet retrying the sandbox of the new pod",
            lambda: True if _kubelet_retries(kube, "waiting") >= 2 else None,
            TIMEOUT,
            lambda: str(core.read_namespaced_pod("waiting", "default").status),
        )
        waiting: Any = core.read_namespaced_pod("waiting", "default")
        assert waiting.status.phase == "Pending"
        (state,) = waiting.status.container_statuses or [None]
        assert state is None or state.state.waiting.reason == "ContainerCreating"
    finally:
        label_node(cluster, node, {DAEMON_LABEL[0]: DAEMON_LABEL[1]})
    pod = wait_for(
        "the waiting pod Running once its node's daemon is back",
        lambda: _running(core.read_namespaced_pod("waiting", "default")),
        TIMEOUT,
        lambda: str(core.read_namespaced_pod("waiting", "default").status),
    )
    assert _in(pod.status.pod_ip, OVERLAY_CIDR)
    core.delete_namespaced_pod("waiting", "default")
    delete(kube, "Deployment", "kept")
    wait_gone(kube, "default", "app=kept", TIMEOUT)
