"""The node datapath with the real control plane: the manager allocates, hybridnet-daemon
serves three nodes of the lab's fabric, an Underlay and an Overlay network coexist with pods of
both kinds on every node, and a node joining or leaving reaches every other node's VXLAN state.

* The control plane is this module's own (kube-apiserver + etcd, as the session's): a cluster
  has at most one Overlay network (the webhook enforces it) and the session's API server keeps
  other tests' Overlay networks and NodeInfos, which every daemon here would read.
* The shipped RBAC (deploy/daemon, deploy/manager) is applied; the manager runs as a process
  with leader election, as its ServiceAccount; each daemon runs in its node namespace as the
  daemon's ServiceAccount, reaching the API server through the forwarder on the gateway.
* The harness plays kubelet and the scheduler: it creates the Nodes (labelled so that the
  Underlay network's nodeSelector attaches them), creates pods bound to them with the
  reference's annotations (network-type Underlay / Overlay, ip-family DualStack), and ADDs
  them through the installed plugin executed in the node namespace.
* The Underlay network is the fabric itself, untagged (netID 0) on each node's eth0, with the
  fabric gateway; the Overlay network is VXLAN with its VTEP on eth0.

Nothing here configures a node's datapath: each daemon's reconcile worker builds it from what
the API server holds. Join and leave are timed (from the write that triggers them to the FDB
entry present / absent in each other node's kernel) and the figures printed, never asserted.
"""

from __future__ import annotations

import collections
import dataclasses
import functools
import ipaddress
import itertools
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from hack.controlplane import DEFAULT_CRD_DIR, ControlPlane
from hybridnet import lab as testbed
from hybridnet.api import constants as c
from hybridnet.api.builtin import Lease, Node
from hybridnet.api.meta import ObjectMeta
from hybridnet.api.resources import (
    AddressRange,
    Network,
    NetworkSpec,
    NodeInfo,
    Subnet,
    SubnetSpec,
)
from hybridnet.lab.cni_runtime import Attachment
from hybridnet.lab.manager import IPAM_NAMESPACE, Harness, manager_argv
from hybridnet.store.errors import NotFound
from hybridnet.store.informer import Informer
from hybridnet.store.interface import WatchEvent
from hybridnet.store.kube import KubeStore
from tests.cluster.conftest import control_plane_binaries
from tests.cluster.datapath_cluster import KubeNode, Remote, time_until_each, wait_for
from tests.cluster.manifests import apply, render

pytestmark = pytest.mark.root

VNI = 4
VXLAN = f"eth0.vxlan{VNI}"
UNDERLAY, OVERLAY = "fabric", "pods"
OVERLAY_V4, OVERLAY_V6 = "198.19.80.0/24", "2001:db8:80::/64"
UNDERLAY_V4 = AddressRange(
    version="4", cidr=str(testbed.FABRIC_V4), gateway="198.18.0.1",
    start="198.18.0.100", end="198.18.0.149",
)  # fmt: skip
UNDERLAY_V6 = AddressRange(
    version="6", cidr=str(testbed.FABRIC_V6), gateway="2001:db8::1",
    start="2001:db8::100", end="2001:db8::1ff",
)  # fmt: skip
"""The fabric's own segment (the nodes are .10 and up, ::a and up): pods take .100-.149."""
APPS = "apps"
"""The namespace of the pods."""
RACK = {"hybridnet.test/rack": "dp"}
"""The label the Underlay network's nodeSelector picks."""

SIGNAL_BOUND = 60.0
"""How long a test waits for a positive signal: a datapath change reaches another node in
well under a second here (see the printed figures); the rest is slack for a loaded machine."""
LEADER_BOUND = 60.0
"""The manager takes the free Lease at once and lists six kinds; seconds at most here."""


# --------------------------------------------------------------------------- the cluster


@pytest.fixture(scope="module")
def plane() -> Iterator[ControlPlane]:
    plane = ControlPlane(bin_dir=control_plane_binaries())
    plane.start()
    try:
        plane.install_crds(DEFAULT_CRD_DIR)
        yield plane
    finally:
        plane.stop()


@dataclasses.dataclass(frozen=True)
class PodInCluster:
    name: str
    kind: str
    """Underlay or Overlay."""
    node: str
    netns: testbed.Namespace
    addresses: dict[str, str]
    """"4" / "6" -> the pod's address (no prefix length)."""
    attachment: Attachment


@dataclasses.dataclass
class Cluster:
    plane: ControlPlane
    fabric: testbed.Fabric
    store: KubeStore
    harness: Harness
    nodes: list[KubeNode]
    pods: list[PodInCluster]
    node_kubeconfig: Path
    directory: Path

    def add_node(self) -> KubeNode:
        """A fabric node namespace, not yet a Node nor running a daemon."""
        index = len(self.fabric.nodes) + 1
        netns = self.fabric.add_node()
        return KubeNode(netns, f"dp{index}", self.directory / f"dp{index}", VXLAN)

    def start_daemon(self, node: KubeNode) -> None:
        node.start(self.node_kubeconfig, IPAM_NAMESPACE)

    def add_pod(self, node: KubeNode, kind: str) -> PodInCluster:
        """Create a pod bound to ``node`` with the reference's annotations, and ADD it."""
        name = f"{kind[0].lower()}-{node.name}"
        annotations = {c.ANNOTATION_NETWORK_TYPE: kind, c.ANNOTATION_IP_FAMILY: "DualStack"}
        self.harness.pod(APPS, name, node=node.name, annotations=annotations)
        netns = self.fabric.add_pod(name)
        attachment = node.add(netns, APPS, name)
        instances = self.harness.instances(APPS, name)
        addresses = {i.spec.address.version: i.spec.address.ip.split("/")[0] for i in instances}
        pod = PodInCluster(name, kind, node.name, netns, addresses, attachment)
        self.pods.append(pod)
        return pod


@pytest.fixture(scope="module")
def cluster(
    plane: ControlPlane, testbed_run: testbed.TestbedRun, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Cluster]:
    directory = tmp_path_factory.mktemp("datapath-kube")
    fabric = testbed.Fabric(testbed_run)
    store = KubeStore.from_kubeconfig(plane.kubeconfig_path)
    manager: testbed.Process | None = None
    nodes: list[KubeNode] = []
    try:
        harness = Harness(store, "dp")
        harness.namespace(APPS)
        for manifest in ("daemon", "manager"):
            apply(plane, render(f"{manifest}/rbac.yaml", IPAM_NAMESPACE))
        manager = start_manager(plane, store, directory)
        with plane.exposed(fabric.gateway.name, fabric.gateway_ipv4) as url:
            node_kubeconfig = plane.service_account_kubeconfig(
                IPAM_NAMESPACE, "hybridnet-daemon", server_url=url, path=directory / "node.kc"
            )
            world = Cluster(plane, fabric, store, harness, nodes, [], node_kubeconfig, directory)
            try:
                networks(store)
                for _ in range(3):
                    node = world.add_node()
                    harness.node(node.name, labels=dict(RACK))
                    nodes.append(node)
                for node in nodes:
                    world.start_daemon(node)
                for node, kind in itertools.product(nodes, (c.TYPE_UNDERLAY, c.TYPE_OVERLAY)):
                    world.add_pod(node, kind)
                yield world
            finally:
                for node in nodes:
                    node.stop()
    finally:
        if manager is not None:
            manager.stop(timeout=15)
        store.close()
        fabric.teardown()


def networks(store: KubeStore) -> None:
    """The Underlay network on the fabric (untagged) for the nodes of RACK, and the Overlay."""
    underlay = NetworkSpec(type=c.TYPE_UNDERLAY, mode=c.MODE_VLAN, net_id=0, node_selector=RACK)
    store.create(Network(ObjectMeta(name=UNDERLAY), underlay))
    store.create(Network(ObjectMeta(name=OVERLAY), NetworkSpec(type=c.TYPE_OVERLAY, net_id=VNI)))
    for name, network, address_range in (
        ("fabric-v4", UNDERLAY, UNDERLAY_V4),
        ("fabric-v6", UNDERLAY, UNDERLAY_V6),
        ("pods-v4", OVERLAY, AddressRange(version="4", cidr=OVERLAY_V4)),
        ("pods-v6", OVERLAY, AddressRange(version="6", cidr=OVERLAY_V6)),
    ):
        spec = SubnetSpec(network=network, range=address_range)
        store.create(Subnet(ObjectMeta(name=name), spec))


def start_manager(plane: ControlPlane, store: KubeStore, directory: Path) -> testbed.Process:
    """hybridnet-manager as its ServiceAccount, leader-elected; returns once it leads and
    serves (its Lease names it and it logged so)."""
    kubeconfig = plane.service_account_kubeconfig(
        IPAM_NAMESPACE, "hybridnet-manager", path=directory / "manager.kc"
    )
    log = directory / "manager.log"
    argv = manager_argv(kubeconfig, IPAM_NAMESPACE, "dp-manager", "--metrics-address", "")
    manager = testbed.Process(argv, log_path=log)

    def serving() -> bool:
        assert manager.poll() is None, log.read_text()[-3000:]
        try:
            lease = store.get(Lease, "hybridnet-manager", IPAM_NAMESPACE)
        except NotFound:
            return False
        leads = lease.body.get("spec", {}).get("holderIdentity") == "dp-manager"
        return leads and "manager serving" in log.read_text()

    try:
        wait_for("the manager leading and serving", serving, LEADER_BOUND)
    except BaseException:
        manager.stop()
        raise
    return manager


def pings(source: testbed.Namespace, address: str) -> bool:
    return testbed.ping(source, address, count=1, timeout=5)


def remotes_of(cluster: Cluster, node: KubeNode) -> list[Remote]:
    return [other.as_remote() for other in cluster.nodes if other is not node]


def running(cluster: Cluster) -> list[KubeNode]:
    return [node for node in cluster.nodes if node.process is not None]


# --------------------------------------------------------------------------- tests


def test_pods_of_both_kinds_run_on_every_node(cluster: Cluster) -> None:
    """Every node has an underlay and an overlay pod, each with an address of both families
    from its own network's subnets, recorded for that node; every node published its VTEP."""
    subnets = {
        c.TYPE_UNDERLAY: {"4": UNDERLAY_V4.cidr, "6": UNDERLAY_V6.cidr},
        c.TYPE_OVERLAY: {"4": OVERLAY_V4, "6": OVERLAY_V6},
    }
    network = {c.TYPE_UNDERLAY: UNDERLAY, c.TYPE_OVERLAY: OVERLAY}
    kinds = {(pod.node, pod.kind) for pod in cluster.pods}
    assert kinds == {(n.name, k) for n in cluster.nodes for k in (c.TYPE_UNDERLAY, c.TYPE_OVERLAY)}
    for pod in cluster.pods:
        instances = cluster.harness.instances(APPS, pod.name)
        assert sorted(i.spec.address.version for i in instances) == ["4", "6"], pod
        for instance in instances:
            assert instance.spec.network == network[pod.kind]
            assert instance.status.node_name == pod.node
            assert instance.status.sandbox_id == pod.netns.name
            cidr = subnets[pod.kind][instance.spec.address.version]
            assert inside(cidr, instance.spec.address.ip.split("/")[0]), instance
        on_eth0 = {a.split("/")[0] for a in pod.netns.addresses("eth0")}
        assert on_eth0 == set(pod.addresses.values())
    for node in cluster.nodes:
        info = cluster.store.get(NodeInfo, node.name)
        assert info.spec.vtep_info is not None
        assert (info.spec.vtep_info.ip, info.spec.vtep_info.mac) == (
            node.netns.ipv4,
            node.as_remote().mac,
        )
        assert info.status.problems == []
        for remote in remotes_of(cluster, node):
            wait_for(
                f"{node.name}'s VXLAN state for {remote.name}",
                functools.partial(node.holds_state_for, remote),
                SIGNAL_BOUND,
            )


def inside(cidr: str, address: str) -> bool:
    return ipaddress.ip_address(address) in ipaddress.ip_network(cidr)


def test_every_pod_reaches_every_other_pod_over_ipv4_and_ipv6(
    cluster: Cluster, capsys: pytest.CaptureFixture[str]
) -> None:
    """The whole matrix: underlay and overlay, same node and across nodes, both families."""
    pairs = [(a, b) for a, b in itertools.permutations(cluster.pods, 2)]
    for source, target in pairs:
        for version in ("4", "6"):
            # The first packets of a pair may wait for ARP/NDP over the VXLAN segment, and
            # for IPv6 for the VXLAN device's link-local address to pass DAD.
            wait_for(
                f"IPv{version} {source.name} -> {target.name} ({target.addresses[version]})",
                functools.partial(pings, source.netns, target.addresses[version]),
                SIGNAL_BOUND,
            )
    with capsys.disabled():
        print(
            f"\ndatapath-kube: ping matrix {len(cluster.pods)} pods on {len(cluster.nodes)} "
            f"nodes: {len(pairs) * 2} of {len(pairs) * 2} pairs x families answered"
        )


def test_overlay_and_underlay_pods_see_each_others_own_addresses(cluster: Cluster) -> None:
    """A TCP echo server in every pod reports the address the connection came from: between
    an overlay and an underlay pod (either way, either family, any two nodes) it is the
    sender's own pod address - nothing inside the cluster translates it."""
    port = 7000
    servers = [
        testbed.start_tcp_echo_server(pod.netns, pod.addresses[version], port)
        for pod in cluster.pods
        for version in ("4", "6")
    ]
    try:
        overlay = [p for p in cluster.pods if p.kind == c.TYPE_OVERLAY]
        underlay = [p for p in cluster.pods if p.kind == c.TYPE_UNDERLAY]
        for one, other in itertools.product(overlay, underlay):
            for source, target in ((one, other), (other, one)):
                for version in ("4", "6"):
                    reply = testbed.tcp_echo(
                        source.netns, target.addresses[version], port, f"from-{source.name}"
                    )
                    assert reply.payload == f"from-{source.name}"
                    assert reply.seen_source == source.addresses[version], (
                        f"{source.name} -> {target.name} IPv{version}"
                    )
    finally:
        for server in servers:
            server.stop()


class NodeInfoTimes:
    """When the test saw each NodeInfo written with a VTEP, and each NodeInfo's deletion: the
    test's own informer, so within milliseconds of the write."""

    def __init__(self, store: KubeStore):
        self.published: dict[str, list[float]] = collections.defaultdict(list)
        self.deleted: dict[str, list[float]] = collections.defaultdict(list)
        self._informer = Informer(store, NodeInfo, self._event, watch_timeout=30)

    def __enter__(self) -> NodeInfoTimes:
        self._informer.start()
        assert self._informer.synced.wait(SIGNAL_BOUND), "NodeInfo informer did not list"
        return self

    def __exit__(self, *_: object) -> None:
        self._informer.stop(timeout=5)

    def _event(self, event: WatchEvent[NodeInfo]) -> None:
        name = event.object.name
        if event.type == "DELETED":
            self.deleted[name].append(time.monotonic())
        elif event.object.spec.vtep_info is not None:
            self.published[name].append(time.monotonic())

    def published_after(self, name: str, since: float) -> float | None:
        return next((t for t in self.published[name] if t >= since), None)

    def deleted_after(self, name: str, since: float) -> float | None:
        return next((t for t in self.deleted[name] if t >= since), None)


def summary(figures: dict[str, float]) -> str:
    each = ", ".join(f"{name} {seconds * 1000:.0f} ms" for name, seconds in sorted(figures.items()))
    return f"max {max(figures.values()) * 1000:.0f} ms ({each})"


def test_a_node_joining_and_leaving_reaches_every_other_nodes_vxlan_state(
    cluster: Cluster, capsys: pytest.CaptureFixture[str]
) -> None:
    """Join: a fourth Node and its daemon; its NodeInfo (the write the others react to) puts
    it into every other node's FDB, neighbours and routes, and its pods of both kinds talk to
    the others. Leave: its pods go, its daemon stops, its Node is deleted (the write); the
    manager deletes its NodeInfo and every other node drops it, keeping everything else."""
    others = running(cluster)
    with NodeInfoTimes(cluster.store) as times:
        newcomer = cluster.add_node()
        cluster.harness.node(newcomer.name, labels=dict(RACK))
        started = time.monotonic()
        cluster.start_daemon(newcomer)
        cluster.nodes.append(newcomer)
        arrival = newcomer.as_remote()
        published = wait_for(
            f"{newcomer.name}'s NodeInfo",
            lambda: times.published_after(newcomer.name, started),
            SIGNAL_BOUND,
        )
        joined = time_until_each(
            others, lambda node: node.has_fdb_for(arrival), published, SIGNAL_BOUND
        )
        from_start = published - started
        for node in others:
            wait_for(
                f"{node.name}'s neighbours and routes for {newcomer.name}",
                functools.partial(node.holds_state_for, arrival),
                SIGNAL_BOUND,
            )
        for remote in remotes_of(cluster, newcomer):
            wait_for(
                f"{newcomer.name}'s VXLAN state for {remote.name}",
                functools.partial(newcomer.holds_state_for, remote),
                SIGNAL_BOUND,
            )
        # The newcomer serves pods of both kinds (the Underlay network's nodeSelector
        # attaches it), which reach the first node's pods of the other kind.
        first = cluster.nodes[0].name
        new_pods = [cluster.add_pod(newcomer, kind) for kind in (c.TYPE_UNDERLAY, c.TYPE_OVERLAY)]
        for pod in new_pods:
            (target,) = [p for p in cluster.pods if p.node == first and p.kind != pod.kind]
            for version in ("4", "6"):
                wait_for(
                    f"IPv{version} {pod.name} -> {target.name}",
                    functools.partial(pings, pod.netns, target.addresses[version]),
                    SIGNAL_BOUND,
                )

        # Leave, as a node is retired: its pods are deleted, its daemon stops, its Node goes.
        for pod in new_pods:
            newcomer.cni().delete(pod.attachment)
            cluster.harness.delete_pod(APPS, pod.name)
            cluster.pods.remove(pod)
        newcomer.stop()
        assert all(node.has_fdb_for(arrival) for node in others)  # a stopped daemon is no leave
        deleting = time.monotonic()
        cluster.store.delete(Node, newcomer.name)
        left = time_until_each(
            others, lambda node: not node.has_any_fdb_for(arrival), deleting, SIGNAL_BOUND
        )
        info_deleted = wait_for(
            f"{newcomer.name}'s NodeInfo deleted",
            lambda: times.deleted_after(newcomer.name, deleting),
            SIGNAL_BOUND,
        )
        for node in others:
            wait_for(
                f"{node.name} holding nothing for {newcomer.name}",
                functools.partial(node.holds_nothing_for, arrival),
                SIGNAL_BOUND,
            )
            for remote in remotes_of(cluster, node):
                if remote.name != newcomer.name:
                    assert node.holds_state_for(remote), f"{node.name} lost {remote.name}"
    cluster.nodes.remove(newcomer)
    with capsys.disabled():
        print(
            f"\ndatapath-kube: join (NodeInfo written -> FDB entry on each other node): "
            f"{summary(joined)}; daemon start -> NodeInfo {from_start * 1000:.0f} ms"
            f"\ndatapath-kube: leave (Node deleted -> FDB entries gone on each other node): "
            f"{summary(left)}; Node deleted -> NodeInfo deleted "
            f"{(info_deleted - deleting) * 1000:.0f} ms"
        )


def node_info_absent(cluster: Cluster, name: str) -> bool:
    try:
        cluster.store.get(NodeInfo, name)
    except NotFound:
        return True
    return False


def test_a_node_deleted_while_its_daemon_runs_leaves_and_returns_when_registered_again(
    cluster: Cluster, capsys: pytest.CaptureFixture[str]
) -> None:
    """``kubectl delete node`` while its daemon still runs (a drain leaves DaemonSet pods
    alone): the manager deletes its NodeInfo, the daemon does not write it again while its
    Node is gone (and logs so), and every other node drops it. kubelet registers the Node
    again: the daemon publishes again, every node takes it back, its pods answer again."""
    (leaving,) = [node for node in cluster.nodes if node.name == "dp3"]  # one of the three
    others = [node for node in running(cluster) if node is not leaving]
    remote = leaving.as_remote()
    with NodeInfoTimes(cluster.store) as times:
        deleting = time.monotonic()
        cluster.store.delete(Node, leaving.name)
        left = time_until_each(
            others, lambda node: not node.has_any_fdb_for(remote), deleting, SIGNAL_BOUND
        )
        wait_for(
            f"{leaving.name}'s daemon noticing its Node gone",
            lambda: "node not registered" in leaving.log_path.read_text(),
            SIGNAL_BOUND,
        )
        # From that log line on the daemon writes no NodeInfo; one it wrote before (it may
        # see its NodeInfo go before its Node) the manager deletes on its event.
        wait_for(
            f"{leaving.name}'s NodeInfo gone",
            functools.partial(node_info_absent, cluster, leaving.name),
            SIGNAL_BOUND,
        )
        for node in others:
            wait_for(
                f"{node.name} holding nothing for {leaving.name}",
                functools.partial(node.holds_nothing_for, remote),
                SIGNAL_BOUND,
            )

        registering = time.monotonic()
        cluster.harness.node(leaving.name, labels=dict(RACK))
        published = wait_for(
            f"{leaving.name}'s NodeInfo again",
            lambda: times.published_after(leaving.name, registering),
            SIGNAL_BOUND,
        )
        back = time_until_each(
            others, lambda node: node.has_fdb_for(remote), registering, SIGNAL_BOUND
        )
    for node in others:
        wait_for(
            f"{node.name}'s VXLAN state for {leaving.name} again",
            functools.partial(node.holds_state_for, remote),
            SIGNAL_BOUND,
        )
    first = cluster.nodes[0].name
    for pod in (p for p in cluster.pods if p.node == leaving.name):
        (target,) = [p for p in cluster.pods if p.node == first and p.kind != pod.kind]
        for version in ("4", "6"):
            wait_for(
                f"IPv{version} {pod.name} -> {target.name} after the Node's return",
                functools.partial(pings, pod.netns, target.addresses[version]),
                SIGNAL_BOUND,
            )
    with capsys.disabled():
        print(
            f"\ndatapath-kube: Node deleted, daemon running -> FDB entries gone on each other "
            f"node: {summary(left)}"
            f"\ndatapath-kube: Node registered again -> FDB entry on each other node: "
            f"{summary(back)}; -> NodeInfo {(published - registering) * 1000:.0f} ms"
        )
