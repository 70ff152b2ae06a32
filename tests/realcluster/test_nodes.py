"""Real nodes: kubelet + containerd in lab node namespaces, pods through the reference chain.

The pod network here is the reference bridge + host-local chain, a named stand-in
(:mod:`hack.realcluster.cni`) until the tier installs hybridnet's chart; what these tests prove
is the cluster itself: nodes Ready, the scheduler placing pods, kubelet and containerd running
them with the CNI plugins, and every deletion reaching the plugins' DEL.
"""

from __future__ import annotations

import ipaddress
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from hack.controlplane.state import process_argv
from hack.realcluster.cluster import RealCluster
from hack.realcluster.cni import ReferenceBridge
from hack.realcluster.workloads import (
    create,
    delete,
    deployment_manifest,
    pod_manifest,
    wait_for,
    wait_gone,
    wait_running,
)
from hybridnet.lab.netns import TestbedRun, leftovers
from hybridnet.lab.realnode import cgroup_hierarchies, cgroup_pids, stale_cgroups
from hybridnet.lab.realnode_config import KUBELET_SYSCTLS

pytestmark = pytest.mark.root

REPO = Path(__file__).resolve().parents[2]
TIMEOUT = 120.0
"""Bound on a pod start or deletion: seconds where a working cluster takes one or two."""


def _pinned(go_mod: Path, module: str) -> str:
    for line in go_mod.read_text().splitlines():
        words = line.split()
        if module in words:
            return words[words.index(module) + 1]
    raise AssertionError(f"{module} not in {go_mod}")


def _node_index(cluster: RealCluster, name: str) -> int:
    return [n.spec.name for n in cluster.nodes].index(name)


def _reserved_on(cluster: RealCluster, name: str) -> dict[str, str]:
    return ReferenceBridge().held_addresses(cluster.node(name))


def _wait_released(cluster: RealCluster, placed: dict[str, str]) -> None:
    """Until host-local on each pod's node no longer holds its address: the CNI DEL ran."""

    def probe() -> bool | None:
        held = {ip: node for ip, node in placed.items() if ip in _reserved_on(cluster, node)}
        return True if not held else None

    wait_for(
        "every address released by CNI DEL",
        probe,
        TIMEOUT,
        lambda: str({ip: n for ip, n in placed.items() if ip in _reserved_on(cluster, n)}),
    )


def test_every_node_is_ready_at_its_fabric_address_running_our_builds(
    real_cluster: RealCluster, kube: client.ApiClient
) -> None:
    kubernetes_version = _pinned(REPO / "hack/controlplane/go.mod", "k8s.io/kubernetes")
    containerd_version = _pinned(
        REPO / "hack/realcluster/containerd/go.mod", "github.com/containerd/containerd/v2"
    )
    nodes: list[Any] = client.CoreV1Api(kube).list_node().items
    assert sorted(n.metadata.name for n in nodes) == ["node1", "node2", "node3"]
    for node in nodes:
        host = real_cluster.node(node.metadata.name).spec.host
        ready = [c for c in node.status.conditions if c.type == "Ready"]
        assert [c.status for c in ready] == ["True"], ready
        internal = {a.address for a in node.status.addresses if a.type == "InternalIP"}
        assert internal == {host.ipv4, host.ipv6}
        assert node.status.node_info.kubelet_version == kubernetes_version
        assert node.status.node_info.container_runtime_version == (
            f"containerd://{containerd_version.removeprefix('v')}"
        )
        # Ready removed the not-ready taint the node lifecycle controller put on at first.
        assert not node.spec.taints, node.spec.taints


def test_kubelet_sets_its_sysctls_inside_the_node_and_not_on_the_host(
    real_cluster: RealCluster,
) -> None:
    differing = {
        key: wanted
        for key, wanted in KUBELET_SYSCTLS.items()
        if Path("/proc/sys", key).exists() and Path("/proc/sys", key).read_text().strip() != wanted
    }
    if not differing:
        pytest.skip("this host already has every value kubelet wants: nothing to tell apart")
    for node in real_cluster.nodes:
        for key, wanted in differing.items():
            # What kubelet wrote at start is what the node sees ...
            assert node.exec(["cat", f"/proc/sys/{key}"]).strip() == wanted, (node.spec.name, key)
    for key, wanted in differing.items():
        # ... and the host's kernel kept its own value.
        assert Path("/proc/sys", key).read_text().strip() != wanted, key


def test_a_pod_runs_through_kubelet_and_containerd_and_its_deletion_reaches_cni_del(
    real_cluster: RealCluster, kube: client.ApiClient
) -> None:
    create(kube, pod_manifest("solo", labels={"test": "solo"}))
    try:
        (pod,) = wait_running(kube, "default", "test=solo", 1, TIMEOUT)
        node_name = pod.spec.node_name
        subnet = ReferenceBridge().subnet(_node_index(real_cluster, node_name))
        assert ipaddress.ip_address(pod.status.pod_ip) in subnet
        # host-local holds the address on the pod's node: the CNI ADD of the real runtime.
        assert pod.status.pod_ip in _reserved_on(real_cluster, node_name)
        # The container itself ran: its log, which the API server reads from kubelet.
        wait_for(
            "the container's first line",
            lambda: True if "started" in _log(kube, "solo") else None,
            TIMEOUT,
            lambda: repr(_log(kube, "solo")),
        )
    finally:
        delete(kube, "Pod", "solo")
    wait_gone(kube, "default", "test=solo", TIMEOUT)
    _wait_released(real_cluster, {pod.status.pod_ip: node_name})


def test_a_deployment_spreads_over_every_node_and_its_deletion_releases_every_address(
    real_cluster: RealCluster, kube: client.ApiClient
) -> None:
    replicas = 2 * len(real_cluster.nodes)
    create(kube, deployment_manifest("spread", replicas))
    try:
        pods = wait_running(kube, "default", "app=spread", replicas, TIMEOUT)
        per_node: dict[str, int] = {}
        placed: dict[str, str] = {}
        for pod in pods:
            per_node[pod.spec.node_name] = per_node.get(pod.spec.node_name, 0) + 1
            placed[pod.status.pod_ip] = pod.spec.node_name
            index = _node_index(real_cluster, pod.spec.node_name)
            assert ipaddress.ip_address(pod.status.pod_ip) in ReferenceBridge().subnet(index)
            assert pod.status.pod_ip in _reserved_on(real_cluster, pod.spec.node_name)
        assert per_node == {n.spec.name: 2 for n in real_cluster.nodes}
        assert len(placed) == replicas  # every pod its own address
    finally:
        delete(kube, "Deployment", "spread")
    wait_gone(kube, "default", "app=spread", TIMEOUT)
    _wait_released(real_cluster, placed)


def _log(kube: client.ApiClient, pod: str) -> str:
    core: Any = client.CoreV1Api(kube)
    text: str = core.read_namespaced_pod_log(pod, "default")
    return text


def test_the_api_server_reaches_kubelets_and_host_network_pods_on_the_fabric(
    real_cluster: RealCluster, kube: client.ApiClient, tmp_path: Path
) -> None:
    """Through the egress proxy: kubectl exec (kubelet's 10250 in a node namespace) and the
    pod proxy (a host-network pod's port, the path a webhook on a node is called by)."""
    script = (
        "mkdir -p /www && echo served-by-$(hostname) > /www/index.html && echo started"
        " && exec httpd -f -p 18080 -h /www"
    )
    manifest = pod_manifest("web", script=script, node="node2", labels={"test": "web"})
    manifest["spec"]["hostNetwork"] = True
    create(kube, manifest)
    try:
        (pod,) = wait_running(kube, "default", "test=web", 1, TIMEOUT)
        assert pod.status.pod_ip == real_cluster.node("node2").spec.host.ipv4
        exec_done = subprocess.run(
            [str(real_cluster.plane.kubectl), "exec", "web", "--", "cat", "/www/index.html"],
            env={
                "KUBECONFIG": str(real_cluster.plane.kubeconfig_path),
                "PATH": os.defpath,
                "HOME": str(tmp_path),  # kubectl's discovery cache, not the checkout's
            },
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert exec_done.returncode == 0, exec_done.stderr
        served = exec_done.stdout.strip()
        assert served.startswith("served-by-")
        core: Any = client.CoreV1Api(kube)

        def proxied() -> str | None:
            try:
                text: str = core.connect_get_namespaced_pod_proxy_with_path(
                    "web:18080", "default", "index.html"
                )
            except client.ApiException:
                return None  # httpd not listening yet ("started" is printed just before)
            return text

        assert wait_for("the pod proxy", proxied, TIMEOUT, lambda: "no answer").strip() == served
        assert real_cluster.egress is not None and real_cluster.egress.connections >= 2
    finally:
        delete(kube, "Pod", "web")
    wait_gone(kube, "default", "test=web", TIMEOUT)


def _alive(pid: int) -> bool:
    return process_argv(pid) is not None


def test_stopping_a_cluster_leaves_no_process_mount_cgroup_or_namespace() -> None:
    """A cluster of its own (its own run), with a pod running when it is stopped."""
    if os.geteuid() != 0:
        pytest.skip("needs root")
    run = TestbedRun()
    cluster = RealCluster(run, nodes=1, cni=ReferenceBridge())
    try:
        cluster.start()
        with cluster.api() as kube:
            create(kube, pod_manifest("left", labels={"test": "left"}))
            wait_running(kube, "default", "test=left", 1, TIMEOUT)
        (node,) = cluster.nodes
        holder = node.pids["holder"]
        mount_namespace = os.readlink(f"/proc/{holder}/ns/mnt")
        pids = {*node.pids.values(), *(p.pid for p in cluster.components.values())}
        roots = [h / node.cgroup_name for h in cgroup_hierarchies()]
        in_tree = set().union(*(cgroup_pids(r) for r in roots))
        assert len(in_tree) >= 4, in_tree  # containerd, kubelet, the shim, pause, the sleeper
        work_dir = cluster.directory
    finally:
        cluster.stop()
        namespaces = run.namespaces()
        run.close()
    assert namespaces == []
    assert [pid for pid in pids | in_tree if _alive(pid)] == []
    assert [r for r in roots if r.exists()] == []
    assert not work_dir.exists()
    # No process is left in the node's mount namespace (it is gone with its last one).
    still_there = [
        entry.name
        for entry in Path("/proc").iterdir()
        if entry.name.isdigit() and _readlink(entry / "ns/mnt") == mount_namespace
    ]
    assert still_there == []
    assert stale_cgroups() == []
    assert [f for f in leftovers() if run.prefix in f] == []


def _readlink(path: Path) -> str | None:
    try:
        return os.readlink(path)
    except OSError:
        return None
