"""The whole path with the real control plane: the manager allocates, the daemon in a node
namespace finds the pod's IPInstances in its informer's cache (waiting there when ADD comes
first), attaches the pod and records the sandbox - one API request per ADD, counted. Its
readiness follows the API server through an outage."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
import time
import urllib.parse
import uuid
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from hack.controlplane import ControlPlane
from hybridnet import lab as testbed
from hybridnet.api import constants as c
from hybridnet.api.resources import IPInstance
from hybridnet.daemon.attachment import host_ifname
from hybridnet.ipamstore import ipinstances
from hybridnet.lab.daemon import start_daemon
from hybridnet.lab.manager import IPAM_NAMESPACE, Harness
from hybridnet.rpc import daemon_pb2 as pb
from hybridnet.rpc import daemon_pb2_grpc as pb_grpc
from hybridnet.store.kube import KubeStore
from tests.cluster.manifests import kubectl
from tests.manager_scenarios import Manager

SIGNAL_TIMEOUT = 60.0
"""How long a test waits for a positive signal (the daemon noticing the API server go and
come back: its informers back off up to 10 s between attempts). A slow machine only makes the
signal later; nothing here depends on it being fast."""


@dataclasses.dataclass
class Cluster:
    harness: Harness
    node: testbed.Node
    stub: pb_grpc.DaemonStub
    url: str
    """Where the node reaches the API server."""
    socket: Path
    request_log: Path
    """Every request the daemon's store made: thread, verb, kind (tests/cluster/counting_daemon)."""

    def requests(self) -> list[tuple[str, str, str]]:
        lines = self.request_log.read_text().splitlines()
        return [(thread, verb, kind) for thread, verb, kind in (li.split("\t") for li in lines)]

    def status(self) -> pb.StatusReply:
        reply: pb.StatusReply = self.stub.Status(pb.StatusRequest(), timeout=10)
        return reply


@pytest.fixture
def cluster(
    control_plane: ControlPlane, fabric: testbed.Fabric, tmp_path: Path
) -> Iterator[Cluster]:
    run = uuid.uuid4().hex[:6]
    store = KubeStore.from_kubeconfig(control_plane.kubeconfig_path)
    harness = Harness(store, run)
    harness.namespace(IPAM_NAMESPACE)
    harness.namespace(f"ns-{run}")
    harness.node(f"node-{run}")
    harness.underlay(f"u-{run}")
    harness.subnet(f"s-{run}", f"u-{run}", "198.18.170.0/24")
    harness.subnet(f"s6-{run}", f"u-{run}", "2001:db8:170::/64", version="6")
    manager = Manager(store).start()
    node = fabric.nodes[0]
    socket = tmp_path / "daemon.sock"
    request_log = tmp_path / "requests.log"
    with control_plane.exposed(fabric.gateway.name, fabric.gateway_ipv4) as url:
        kubeconfig = control_plane.kubeconfig_for(url, tmp_path / "node-kubeconfig")
        process = start_daemon(
            node,
            socket,
            "--node-name",
            f"node-{run}",
            "--kubeconfig",
            str(kubeconfig),
            "--ipam-namespace",
            IPAM_NAMESPACE,
            "--allocation-timeout",
            "3",
            "--request-log",
            str(request_log),
            module="tests.cluster.counting_daemon",
        )
        channel = grpc.insecure_channel(f"unix:{socket}")
        stub = pb_grpc.DaemonStub(channel)  # type: ignore[no-untyped-call]
        try:
            yield Cluster(harness, node, stub, url, socket, request_log)
        finally:
            channel.close()
            process.stop()
            node.processes.remove(process)
            manager.stop()
            store.close()


def eventually_status(cluster: Cluster, ready: bool) -> pb.StatusReply:
    """Wait for the daemon's STATUS to say ``ready`` (a positive signal), up to SIGNAL_TIMEOUT."""
    deadline = time.monotonic() + SIGNAL_TIMEOUT
    reply = cluster.status()
    while reply.ready != ready:
        assert time.monotonic() < deadline, f"STATUS stayed ready={reply.ready}: {reply.reason}"
        time.sleep(0.1)
        reply = cluster.status()
    return reply


def sandbox(pod_ns: testbed.Namespace, cluster: Cluster, pod_name: str) -> pb.Attachment:
    return pb.Attachment(
        container_id=pod_ns.name,
        netns=pod_ns.path,
        ifname="eth0",
        pod_namespace=f"ns-{cluster.harness.run}",
        pod_name=pod_name,
    )


def test_add_waits_for_the_managers_allocation_and_attaches(
    cluster: Cluster, fabric: testbed.Fabric
) -> None:
    harness, node, stub = cluster.harness, cluster.node, cluster.stub
    run = harness.run
    pod_ns = fabric.add_pod("kp")
    # ADD is sent while the pod is still being created and allocated: the daemon waits.
    harness.pod(f"ns-{run}", "web", node=f"node-{run}")
    attachment = pb.Attachment(
        container_id=pod_ns.name,
        netns=pod_ns.path,
        ifname="eth0",
        pod_namespace=f"ns-{run}",
        pod_name="web",
    )
    reply = stub.Add(pb.AddRequest(attachment=attachment))
    (instance,) = harness.instances(f"ns-{run}", "web")
    assert reply.ips[0].address == instance.spec.address.ip
    assert pod_ns.addresses("eth0") == [instance.spec.address.ip]
    stored = harness.store.get(IPInstance, instance.name, IPAM_NAMESPACE)
    assert stored.status.sandbox_id == pod_ns.name
    assert stored.status.node_name == f"node-{run}"
    assert host_ifname(pod_ns.name, "eth0") in node.links()


def test_add_without_an_address_in_time_is_try_again_later_and_leaves_nothing(
    cluster: Cluster, fabric: testbed.Fabric
) -> None:
    harness, node, stub = cluster.harness, cluster.node, cluster.stub
    run = harness.run
    pod_ns = fabric.add_pod("kq")
    harness.pod(
        f"ns-{run}",
        "lost",
        node=f"node-{run}",
        annotations={c.ANNOTATION_SPECIFIED_NETWORK: f"ghost-{run}"},
    )
    before = node.links()
    attachment = pb.Attachment(
        container_id=pod_ns.name,
        netns=pod_ns.path,
        ifname="eth0",
        pod_namespace=f"ns-{run}",
        pod_name="lost",
    )
    with pytest.raises(grpc.RpcError) as failed:
        stub.Add(pb.AddRequest(attachment=attachment))
    assert dict(failed.value.trailing_metadata() or ()).get("cni-code") == "11"
    assert node.links() == before
    assert pod_ns.links() == ["lo"]


def test_add_while_the_api_server_is_unreachable_is_try_again_later(
    cluster: Cluster, fabric: testbed.Fabric, control_plane: ControlPlane
) -> None:
    harness, node, stub, url = cluster.harness, cluster.node, cluster.stub, cluster.url
    pod_ns = fabric.add_pod("kr")
    harness.pod(f"ns-{harness.run}", "cut", node=f"node-{harness.run}")
    control_plane.unexpose(url)  # the node loses its path to the API server
    before = node.links()
    attachment = pb.Attachment(
        container_id=pod_ns.name,
        netns=pod_ns.path,
        ifname="eth0",
        pod_namespace=f"ns-{harness.run}",
        pod_name="cut",
    )
    with pytest.raises(grpc.RpcError) as failed:
        stub.Add(pb.AddRequest(attachment=attachment), timeout=60)
    assert dict(failed.value.trailing_metadata() or ()).get("cni-code") == "11"
    assert "unavailable" in failed.value.details()
    assert node.links() == before
    assert pod_ns.links() == ["lo"]


def test_a_dual_stack_pod_gets_both_families_without_the_daemon_reading_the_pod(
    cluster: Cluster, fabric: testbed.Fabric
) -> None:
    """The manager's two IPInstances each say "4,6"; the daemon reads nothing but its cache."""
    harness = cluster.harness
    pod_ns = fabric.add_pod("kd")
    harness.pod(
        f"ns-{harness.run}",
        "dual",
        node=f"node-{harness.run}",
        annotations={c.ANNOTATION_IP_FAMILY: "DualStack"},
    )
    v4, v6 = harness.wait_instances(f"ns-{harness.run}", "dual", 2)
    for instance in (v4, v6):
        assert ipinstances.families_of(instance) == frozenset({"4", "6"})
    reply = cluster.stub.Add(pb.AddRequest(attachment=sandbox(pod_ns, cluster, "dual")))
    assert [ip.address for ip in reply.ips] == [v4.spec.address.ip, v6.spec.address.ip]
    assert sorted(pod_ns.addresses("eth0")) == sorted([v4.spec.address.ip, v6.spec.address.ip])
    assert not [r for r in cluster.requests() if r[1] in ("get", "list") and "informer" not in r[0]]


def apiserver_status_writes(control_plane: ControlPlane) -> int:
    """How many IPInstance status writes (PUT .../status) kube-apiserver has served, from its
    own /metrics (apiserver_request_total, summed over response codes)."""
    metrics = kubectl(control_plane, "get", "--raw", "/metrics")
    assert metrics.returncode == 0, metrics.stderr
    total = 0
    for line in metrics.stdout.splitlines():
        if line.startswith("apiserver_request_total{") and all(
            label in line
            for label in ('resource="ipinstances"', 'subresource="status"', 'verb="PUT"')
        ):
            total += int(float(line.rsplit(" ", 1)[1]))
    return total


ADDS = 5


def test_an_add_costs_exactly_one_api_request(
    cluster: Cluster, fabric: testbed.Fabric, control_plane: ControlPlane
) -> None:
    """At steady state (the daemon's informers have listed, the manager has allocated) each
    ADD makes exactly one request: the IPInstance status write. No get, no list, no watch of
    its own. Counted twice: by the daemon's store, per thread (its informers' long-running
    watches go on beside and are not per ADD; tests/cluster/counting_daemon.py), and by
    kube-apiserver, which served exactly that many IPInstance status writes (only the daemon
    writes them)."""
    harness, run = cluster.harness, cluster.harness.run
    pods = [fabric.add_pod("kc") for _ in range(ADDS)]
    for index in range(ADDS):
        harness.pod(f"ns-{run}", f"count-{index}", node=f"node-{run}")
    for index in range(ADDS):
        harness.wait_instances(f"ns-{run}", f"count-{index}", 1)
    eventually_status(cluster, ready=True)
    seen = len(cluster.requests())
    served_before = apiserver_status_writes(control_plane)
    for index, pod_ns in enumerate(pods):
        cluster.stub.Add(pb.AddRequest(attachment=sandbox(pod_ns, cluster, f"count-{index}")))
    served = apiserver_status_writes(control_plane) - served_before
    made = cluster.requests()[seen:]
    by_adds = [(verb, kind) for thread, verb, kind in made if not thread.startswith("informer-")]
    assert by_adds == [("update_status", "IPInstance")] * ADDS
    # The informers only ever list and watch; a relist after a compaction is not per ADD.
    assert {verb for thread, verb, _ in made if thread.startswith("informer-")} <= {
        "list",
        "watch",
    }
    assert served == ADDS


def test_readiness_follows_the_api_server_through_an_outage(
    cluster: Cluster, fabric: testbed.Fabric, control_plane: ControlPlane
) -> None:
    """STATUS and ``probe --ready`` answer from the informers, without a request of their own:
    ready while the store answers their latest list or watch. The node loses its path to the
    API server: the watches fail, the daemon says not ready; the path returns at the same
    address: ready again."""

    def probe_ready() -> int:
        argv = [sys.executable, "-m", "hybridnet.daemon.main", "--socket", str(cluster.socket)]
        done = subprocess.run([*argv, "probe", "--ready"], capture_output=True, check=False)
        return done.returncode

    assert cluster.status().ready and probe_ready() == 0
    seen = len(cluster.requests())
    cluster.status()
    assert [r for r in cluster.requests()[seen:] if not r[0].startswith("informer-")] == []
    control_plane.unexpose(cluster.url)
    reply = eventually_status(cluster, ready=False)
    assert "ipinstances" in reply.reason or "networks" in reply.reason, reply.reason
    assert probe_ready() == 1
    port = urllib.parse.urlsplit(cluster.url).port
    assert port is not None
    control_plane.expose_in_namespace(fabric.gateway.name, fabric.gateway_ipv4, port)
    eventually_status(cluster, ready=True)
    assert probe_ready() == 0
