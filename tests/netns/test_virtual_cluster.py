"""Issue 10 §2 on the virtual cluster (hybridnet.lab.cluster): three nodes on the lab's fabric,
each running the real hybridnet-daemon with its node datapath on one shared embedded store, an
untagged underlay and a VXLAN overlay, an overlay and an underlay pod on every node attached by
the real plugin from Pod objects carrying the reference's annotations. Traffic proves it: ping,
TCP echoes that report the peer address the receiver saw, and a capture at the outside host.

The cluster is built once for the module; tests that add pods or hosts remove them. (VLAN-tagged
underlays run in user-mode-linux: tests/netns/test_cluster_vlan.py.)
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from hybridnet import lab as testbed
from hybridnet.api import constants as c
from hybridnet.api.builtin import Event
from hybridnet.api.naming import pod_selector
from hybridnet.api.resources import IPInstance
from hybridnet.lab.cluster import (
    LABEL_FABRIC,
    OUTSIDE_V4,
    OUTSIDE_V6,
    OVERLAY,
    UNDERLAY,
    Cluster,
    ClusterPod,
    SubnetPlan,
)
from hybridnet.lab.cni_runtime import CniPluginError
from hybridnet.lab.netns import LOCK_DIR
from hybridnet.lab.reach import answers

pytestmark = pytest.mark.root

DIRECT_SUBNET = "overlay-direct-v4"
"""An overlay subnet without autoNatOutgoing, private: only pods that name it get it."""
PORT = 7100


@pytest.fixture(scope="module")
def cluster(
    testbed_run: testbed.TestbedRun, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Cluster]:
    with Cluster(testbed_run, tmp_path_factory.mktemp("cluster")) as built:
        built.create_networks()
        built.create_subnet(
            SubnetPlan(DIRECT_SUBNET, OVERLAY, "198.19.1.0/24", nat=False, private=True)
        )
        built.wait_converged()
        built.add_pods_of_both_kinds()
        yield built


def pod(cluster: Cluster, name: str) -> ClusterPod:
    (found,) = [p for p in cluster.pods if p.name == name]
    return found


def gateway(cluster: Cluster, version: int) -> str:
    return cluster.fabric.gateway_ipv4 if version == 4 else cluster.fabric.gateway_ipv6


def seen_source(
    client: testbed.Namespace, server: testbed.Namespace, address: str, payload: str
) -> str:
    """The client's address as the server's socket saw it (after any NAT on the way)."""
    echo = testbed.start_tcp_echo_server(server, address, PORT)
    try:
        reply = testbed.tcp_echo(client, address, PORT, payload)
    finally:
        echo.stop()
        server.processes.remove(echo)
    assert reply.payload == payload
    return reply.seen_source


def instances_of(cluster: Cluster, name: str) -> list[IPInstance]:
    return cluster.store.list(IPInstance, "kube-system", pod_selector("default", name)).items


# --------------------------------------------------------------------------- the pods


def test_every_pod_is_dual_stack_from_its_own_network(cluster: Cluster) -> None:
    assert [(p.name, p.node.name) for p in cluster.pods] == [
        ("overlay-1", "node1"), ("underlay-1", "node1"),
        ("overlay-2", "node2"), ("underlay-2", "node2"),
        ("overlay-3", "node3"), ("underlay-3", "node3"),
    ]  # fmt: skip
    for each in cluster.pods:
        stored = instances_of(cluster, each.name)
        assert sorted(i.spec.address.version for i in stored) == ["4", "6"], each.name
        assert {i.spec.network for i in stored} == {each.name.split("-")[0]}
        assert sorted(i.spec.address.ip for i in stored) == sorted(each.addresses)
        assert sorted(each.netns.addresses("eth0")) == sorted(each.addresses)


# --------------------------------------------------------------------------- overlay


@pytest.mark.parametrize("version", [4, 6])
def test_overlay_pods_on_different_nodes_ping_and_talk_tcp_both_ways(
    cluster: Cluster, version: int
) -> None:
    one, two = pod(cluster, "overlay-1"), pod(cluster, "overlay-2")
    assert answers(one.netns, two.address(version))
    assert answers(two.netns, one.address(version))
    for client, server in ((one, two), (two, one)):
        seen = seen_source(client.netns, server.netns, server.address(version), "overlay")
        assert seen == client.address(version)


# --------------------------------------------------------------------------- underlay


@pytest.mark.parametrize("version", [4, 6])
def test_underlay_pods_reach_the_gateway_the_outside_and_each_other_and_are_reached(
    cluster: Cluster, version: int
) -> None:
    one, three = pod(cluster, "underlay-1"), pod(cluster, "underlay-3")
    outside = OUTSIDE_V4 if version == 4 else OUTSIDE_V6
    for source in (one, three):
        assert answers(source.netns, gateway(cluster, version)), source.name
        assert answers(source.netns, outside), source.name
        assert answers(cluster.fabric.gateway, source.address(version)), source.name
    assert answers(one.netns, three.address(version))
    assert answers(three.netns, one.address(version))
    # Underlay addresses are the fabric's own: nothing rewrites them on the way out.
    assert seen_source(one.netns, cluster.outside, outside, "underlay") == one.address(version)


# --------------------------------------------------------------------------- between the two


@pytest.mark.parametrize("version", [4, 6])
@pytest.mark.parametrize(
    ("client", "server"),
    [
        ("overlay-1", "underlay-2"),  # across nodes
        ("underlay-2", "overlay-1"),
        ("overlay-3", "underlay-3"),  # on one node
        ("underlay-3", "overlay-3"),
    ],
)
def test_overlay_and_underlay_pods_see_each_others_own_addresses(
    cluster: Cluster, client: str, server: str, version: int
) -> None:
    sender, receiver = pod(cluster, client), pod(cluster, server)
    seen = seen_source(sender.netns, receiver.netns, receiver.address(version), "no-nat")
    assert seen == sender.address(version)


# --------------------------------------------------------------------------- leaving the cluster


@pytest.mark.parametrize("version", [4, 6])
def test_an_overlay_pod_reaches_the_outside_masqueraded_when_its_subnet_says(
    cluster: Cluster, version: int
) -> None:
    """overlay-v4/-v6 have autoNatOutgoing (the cluster's default): the outside host sees the
    pod's node, and its replies come back through it."""
    sender = pod(cluster, "overlay-2")
    outside = OUTSIDE_V4 if version == 4 else OUTSIDE_V6
    node = sender.node.host
    seen = seen_source(sender.netns, cluster.outside, outside, "nat")
    assert seen == (node.ipv4 if version == 4 else node.ipv6)


def test_without_auto_nat_an_overlay_pod_leaves_with_its_own_address(cluster: Cluster) -> None:
    """The fabric has no route back to overlay subnets, so no reply can come: what the
    outside host receives is the evidence."""
    annotations = {
        c.ANNOTATION_SPECIFIED_NETWORK: OVERLAY,
        c.ANNOTATION_SPECIFIED_SUBNET: DIRECT_SUBNET,
        c.ANNOTATION_IP_FAMILY: "IPv4",
    }
    direct = cluster.add_pod(cluster.node("node1"), "direct", "Overlay", annotations=annotations)
    try:
        assert direct.ipv4.startswith("198.19.1.")
        captured = testbed.capture_source(
            cluster.outside,
            "eth0",
            "icmp",
            lambda: direct.netns.exec(["ping", "-c", "1", "-W", "1", OUTSIDE_V4], check=False),
        )
        assert (captured.source, captured.destination) == (direct.ipv4, OUTSIDE_V4)
    finally:
        cluster.delete_pod(direct)


# --------------------------------------------------------------------------- nodes


@pytest.mark.parametrize("version", [4, 6])
def test_a_node_reaches_its_own_pods(cluster: Cluster, version: int) -> None:
    for node in cluster.nodes[:3]:
        for each in (p for p in cluster.pods if p.node is node):
            assert answers(node.host, each.address(version)), (node.name, each.name)


# --------------------------------------------------------------------------- refusals


def test_an_underlay_pod_on_a_node_the_underlay_does_not_attach_is_refused(
    cluster: Cluster,
) -> None:
    """CNI code 101 (NETWORK_NOT_ON_NODE): the node's labels do not match the network's
    nodeSelector; nothing is allocated or built. The node stays in the cluster."""
    stray = cluster.add_node(labels={LABEL_FABRIC: "elsewhere"})
    annotations = {c.ANNOTATION_SPECIFIED_NETWORK: UNDERLAY}
    refused_pod = cluster.create_pod(stray, "stray", "Underlay", annotations=annotations)
    links_before = stray.host.links()
    try:
        with pytest.raises(CniPluginError) as refused:
            cluster.attach(refused_pod)
        assert refused.value.code == 101
        assert refused.value.msg.startswith(
            f"underlay network {UNDERLAY} does not attach node {stray.name} (its nodeSelector "
            "hybridnet.lab/fabric=lab does not match the node's labels)"
        )
        assert refused_pod.netns.links() == ["lo"]
        assert stray.host.links() == links_before
        assert instances_of(cluster, "stray") == []
    finally:
        cluster.delete_pod(refused_pod)
    # Asking only for the type: no underlay network attaches the node, also code 101.
    typed_pod = cluster.create_pod(stray, "stray-typed", "Underlay", annotations={})
    try:
        with pytest.raises(CniPluginError) as refused:
            cluster.attach(typed_pod)
        assert refused.value.code == 101
        assert "attached to no Underlay network (labels" in refused.value.msg
        assert typed_pod.netns.links() == ["lo"]
        assert instances_of(cluster, "stray-typed") == []
    finally:
        cluster.delete_pod(typed_pod)


def test_a_planted_duplicate_of_an_underlay_address_fails_add_and_leaves_nothing(
    cluster: Cluster,
) -> None:
    """CNI code 102 (ADDRESS_IN_USE) naming the holder, a Warning Event on the pod, no veth,
    no IPInstance: the ARP probe at ADD found the squatter."""
    squatter = cluster.add_fabric_host("squatter", ["198.18.0.150/24"])
    node = cluster.node("node2")
    annotations = {c.ANNOTATION_IP_POOL: "198.18.0.150/2001:db8::150"}
    doomed = cluster.create_pod(node, "duplicate", "Underlay", annotations=annotations)
    links_before = node.host.links()
    try:
        with pytest.raises(CniPluginError) as failed:
            cluster.attach(doomed)
        assert failed.value.code == 102
        holder = json.loads(squatter.ip("-j", "link", "show", "eth0").stdout)[0]["address"]
        assert "198.18.0.150 is already in use" in failed.value.msg
        assert holder in failed.value.msg
        assert doomed.netns.links() == ["lo"]
        assert node.host.links() == links_before
        assert instances_of(cluster, "duplicate") == []
        events = [
            e for e in cluster.store.list(Event, "default").items
            if e.body["involvedObject"]["name"] == "duplicate"
        ]  # fmt: skip
        assert [(e.body["type"], e.body["reason"]) for e in events] == [("Warning", "AddressInUse")]
    finally:
        cluster.delete_pod(doomed)
        cluster.remove_host(squatter)


# --------------------------------------------------------------------------- the command line


def lab_command(*args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "hybridnet.lab", "cluster", *args],
        capture_output=True, text=True, timeout=timeout, check=False,
    )  # fmt: skip


def running(pid: int) -> bool:
    """The process exists and is not a zombie (ended, not yet reaped by init)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"


def test_cluster_up_status_down_from_the_command_line(tmp_path: Path) -> None:
    """``up`` leaves a cluster running after it exits (a keeper holds its run's lock, so stale
    cleanup leaves it alone), ``status`` reports it from the store and the kernel, ``down``
    ends its processes and removes every namespace and its directory."""
    directory = tmp_path / "state"
    up = lab_command("up", "--nodes", "2", "--dir", str(directory))
    state_file = directory / "cluster.json"
    pids: list[int] = []
    prefix = json.loads(state_file.read_text())["prefix"] if state_file.exists() else None
    try:
        assert up.returncode == 0, up.stdout + up.stderr
        assert prefix is not None
        namespaces = [n for n in testbed.list_namespaces() if n.startswith(prefix + "-")]
        assert {f"{prefix}-node1", f"{prefix}-node2", f"{prefix}-outside"} <= set(namespaces)
        assert not [f for f in testbed.leftovers() if prefix in f]  # alive: not a leftover
        pids = [
            int(p)
            for n in namespaces
            for p in testbed.ip("netns", "pids", n).stdout.split()
        ]  # fmt: skip
        assert len(pids) == 3  # two daemons and the keeper

        again = lab_command("up", "--dir", str(directory))
        assert again.returncode == 1 and "already up" in again.stderr

        status = lab_command("status", "--dir", str(directory))
        assert status.returncode == 0, status.stderr
        for expected in ("node1", "node2", "overlay-1", "underlay-2", "underlay-v6", "VNI 4"):
            assert expected in status.stdout
        lines = status.stdout.splitlines()
        pod_rows = [line for line in lines if line.startswith(("overlay-", "underlay-"))]
        assert len(pod_rows) == 4 and all(row.endswith("matches") for row in pod_rows)
    finally:
        down = lab_command("down", "--dir", str(directory))
    assert down.returncode == 0, down.stdout + down.stderr
    assert not [n for n in testbed.list_namespaces() if n.startswith(f"{prefix}-")]
    assert not directory.exists()
    assert not [p for p in pids if running(p)]
    assert not (LOCK_DIR / f"{prefix}.lock").exists()


def test_a_cluster_whose_processes_died_is_a_stale_run_that_clean_removes(tmp_path: Path) -> None:
    """Once the keeper is gone (killed here, as a crash or a reboot would), the run's lock is
    free: ``leftovers`` lists its namespaces, ``clean`` removes them with the daemons in them,
    and ``down`` still removes the directory."""
    directory = tmp_path / "state"
    up = lab_command("up", "--nodes", "1", "--no-pods", "--dir", str(directory))
    state = json.loads((directory / "cluster.json").read_text())
    prefix = state["prefix"]
    try:
        assert up.returncode == 0, up.stdout + up.stderr
        daemons = [int(p) for p in testbed.ip("netns", "pids", f"{prefix}-node1").stdout.split()]
        os.kill(state["keeper"], signal.SIGKILL)
        gone = wait_until(lambda: not running(state["keeper"]))
        assert gone, "the keeper did not end"
        assert f"netns {prefix}-node1" in testbed.leftovers()
        clean = subprocess.run(
            [sys.executable, "-m", "hybridnet.lab", "clean"],
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        assert clean.returncode == 0, clean.stderr
        assert f"removed netns {prefix}-node1" in clean.stdout.splitlines()
        assert not [n for n in testbed.list_namespaces() if n.startswith(f"{prefix}-")]
        assert daemons and not [p for p in daemons if running(p)]
    finally:
        down = lab_command("down", "--dir", str(directory))
    assert down.returncode == 0, down.stdout + down.stderr
    assert not directory.exists()


def wait_until(check: Callable[[], bool], bound: float = 10.0) -> bool:
    """Poll ``check`` until true; the bound is for a process that SIGKILL did not end."""
    deadline = time.monotonic() + bound
    while not check():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True
