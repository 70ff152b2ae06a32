"""The whole path with the real control plane: the manager allocates, the daemon in a node
namespace waits for the pod's IPInstance on a watch, attaches the pod and records the sandbox."""

from __future__ import annotations

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
from hybridnet.lab.daemon import start_daemon
from hybridnet.lab.manager import IPAM_NAMESPACE, Harness
from hybridnet.rpc import daemon_pb2 as pb
from hybridnet.rpc import daemon_pb2_grpc as pb_grpc
from hybridnet.store.kube import KubeStore
from tests.manager_scenarios import Manager


@pytest.fixture
def cluster(
    control_plane: ControlPlane, fabric: testbed.Fabric, tmp_path: Path
) -> Iterator[tuple[Harness, testbed.Node, pb_grpc.DaemonStub, str]]:
    run = uuid.uuid4().hex[:6]
    store = KubeStore.from_kubeconfig(control_plane.kubeconfig_path)
    harness = Harness(store, run)
    harness.namespace(IPAM_NAMESPACE)
    harness.namespace(f"ns-{run}")
    harness.node(f"node-{run}")
    harness.underlay(f"u-{run}")
    harness.subnet(f"s-{run}", f"u-{run}", "198.18.170.0/24")
    manager = Manager(store).start()
    node = fabric.nodes[0]
    socket = tmp_path / "daemon.sock"
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
        )
        channel = grpc.insecure_channel(f"unix:{socket}")
        try:
            yield harness, node, pb_grpc.DaemonStub(channel), url  # type: ignore[no-untyped-call]
        finally:
            channel.close()
            process.stop()
            node.processes.remove(process)
            manager.stop()
            store.close()


def test_add_waits_for_the_managers_allocation_and_attaches(
    cluster: tuple[Harness, testbed.Node, pb_grpc.DaemonStub, str], fabric: testbed.Fabric
) -> None:
    harness, node, stub, _ = cluster
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
    cluster: tuple[Harness, testbed.Node, pb_grpc.DaemonStub, str], fabric: testbed.Fabric
) -> None:
    harness, node, stub, _ = cluster
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
    cluster: tuple[Harness, testbed.Node, pb_grpc.DaemonStub, str],
    fabric: testbed.Fabric,
    control_plane: ControlPlane,
) -> None:
    harness, node, stub, url = cluster
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
