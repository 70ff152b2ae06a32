"""BGP-mode underlay pods with the real control plane and BIRD 2 as the fabric's routers.

* Two nodes of the lab's fabric run hybridnet-daemon (as its ServiceAccount); the
  leader-elected manager (as its ServiceAccount) runs in node 1's namespace, as a
  host-network manager pod would, and speaks BGP from there: ExaBGP is its child.
* BIRD in the gateway namespace is the fabric's router (AS 65000): an IPv4 and an IPv6
  session per manager, exporting what it learns into its kernel's main table, so the
  gateway forwards by the routes BIRD learned. A host "outside" sits behind the gateway.
  A second router on the fabric (its own BIRD, MD5) is a second IPv4 peer that does not
  route traffic (``doesNotRouteTraffic``).
* The BGP network (``netID`` 65010) attaches both nodes; its pods take addresses from
  198.19.0.0/24 and 2001:db8:19::/64, which are on no segment: only the routes make them
  reachable.

What arrives is read from BIRD (``birdc show route all``), never from the manager. Every
wait is for a state, bounded generously; nothing is timed (bench/bgp_announce.py measures).
"""

from __future__ import annotations

import dataclasses
import ipaddress
import json
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

from hack.controlplane import DEFAULT_CRD_DIR, ControlPlane
from hybridnet import lab as testbed
from hybridnet.api import constants as c
from hybridnet.api.builtin import Lease, Node
from hybridnet.api.meta import ObjectMeta
from hybridnet.api.resources import (
    AddressRange,
    BGPPeer,
    Network,
    NetworkConfig,
    NetworkSpec,
    Subnet,
    SubnetSpec,
)
from hybridnet.ipamstore import ipinstances
from hybridnet.lab.bird import Bird, BirdNeighbor
from hybridnet.lab.cni_runtime import Attachment, CniPluginError
from hybridnet.lab.manager import IPAM_NAMESPACE, Harness, manager_argv
from hybridnet.store.errors import Conflict, NotFound
from hybridnet.store.kube import KubeStore
from tests.cluster.conftest import control_plane_binaries
from tests.cluster.datapath_cluster import KubeNode
from tests.cluster.manifests import apply, render

pytestmark = pytest.mark.root

FABRIC_ASN, LOCAL_ASN = 65000, 65010
NETWORK, GLOBAL = "bgp", "global"
POD_V4, POD_V6, GLOBAL_V4 = "198.19.0.0/24", "2001:db8:19::/64", "198.20.0.0/24"
GATEWAY_V4, GATEWAY_V6 = "198.18.0.1", "2001:db8::1"
SPINE = "198.18.0.2"
"""The second router: a BGP peer that does not route traffic."""
SPINE_PASSWORD = "spine secret"  # noqa: S105 - the lab router's MD5 key
WRONG_PASSWORD = "not the spine key"  # noqa: S105
OUTSIDE_V4, OUTSIDE_V6 = "198.18.200.2", "2001:db8:200::2"
RACK = {"hybridnet.test/rack": "bgp"}
APPS = "apps"
GRACE = 300
"""gracefulRestartSeconds of every peer (the default): so long that a stale route leaving
within BOUND left by End-of-RIB, not because its restart time ended."""
BOUND = 60.0
"""How long any state may take to be reached: routes reach BIRD within milliseconds here,
sessions come up within seconds; the rest is slack for a loaded machine."""
ANNOUNCE_TIMEOUT = "10"
"""The daemons' --bgp-announce-timeout: how long a refused ADD takes to say so."""
NO_EXPORT = frozenset({(65535, 65281)})

T = TypeVar("T")


def eventually(probe: Callable[[], T], what: str, bound: float = BOUND) -> T:
    deadline = time.monotonic() + bound
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {bound:.0f}s: {what}; last seen: {value!r}")
        time.sleep(0.05)


# --------------------------------------------------------------------------- the cluster


Table = dict[str, tuple[str, frozenset[tuple[int, int]]]]
"""BIRD's routes from one protocol: prefix -> (BGP next hop, communities)."""


@dataclasses.dataclass
class ManagerProcess:
    identity: str
    node: KubeNode
    log: Path
    process: testbed.Process

    def text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


@dataclasses.dataclass
class BgpPod:
    name: str
    node: KubeNode
    netns: testbed.Namespace
    attachment: Attachment
    addresses: dict[str, str]
    """"4" / "6" -> the address (no prefix length)."""


@dataclasses.dataclass
class Cluster:
    plane: ControlPlane
    fabric: testbed.Fabric
    store: KubeStore
    harness: Harness
    nodes: list[KubeNode]
    gateway_bird: Bird
    spine_bird: Bird
    outside: testbed.Namespace
    spine: testbed.Namespace
    directory: Path
    manager_kubeconfig: Path
    managers: list[ManagerProcess] = dataclasses.field(default_factory=list)
    pods: list[BgpPod] = dataclasses.field(default_factory=list)

    def start_manager(self, node: KubeNode, identity: str) -> ManagerProcess:
        """hybridnet-manager in ``node``'s namespace (host network), leader-elected."""
        log = self.directory / f"{identity}.log"
        argv = manager_argv(
            self.manager_kubeconfig, IPAM_NAMESPACE, identity,
            "--metrics-address", "127.0.0.1:9899", "--bgp-workdir",
            str(self.directory / f"{identity}-exabgp"),
        )  # fmt: skip
        process = testbed.Process(argv, netns=node.netns.name, log_path=log)
        manager = ManagerProcess(identity, node, log, process)
        self.managers.append(manager)
        return manager

    def leader(self) -> str:
        try:
            lease = self.store.get(Lease, "hybridnet-manager", IPAM_NAMESPACE)
        except NotFound:
            return ""
        return str(lease.body.get("spec", {}).get("holderIdentity") or "")

    def wait_serving(self, manager: ManagerProcess) -> None:
        def serving() -> bool:
            assert manager.process.poll() is None, manager.text()[-3000:]
            return self.leader() == manager.identity and "manager serving" in manager.text()

        eventually(serving, f"{manager.identity} leading and serving")

    def add_pod(
        self, node: KubeNode, name: str, annotations: dict[str, str] | None = None
    ) -> BgpPod:
        """A dual-stack pod of the BGP network bound to ``node``, ADDed through the plugin:
        the ADD returns once the manager has announced its routes."""
        wanted = annotations or {
            c.ANNOTATION_NETWORK_TYPE: c.TYPE_UNDERLAY,
            c.ANNOTATION_IP_FAMILY: "DualStack",
        }
        self.harness.pod(APPS, name, node=node.name, annotations=wanted)
        netns = self.fabric.add_pod(name)
        attachment = node.add(netns, APPS, name)
        return self._recorded(name, node, netns, attachment)

    def _recorded(
        self, name: str, node: KubeNode, netns: testbed.Namespace, attachment: Attachment
    ) -> BgpPod:
        instances = self.harness.instances(APPS, name)
        addresses = {i.spec.address.version: ipinstances.address_of(i) for i in instances}
        pod = BgpPod(name, node, netns, attachment, addresses)
        self.pods.append(pod)
        return pod

    def remove_pod(self, pod: BgpPod) -> None:
        pod.node.cni().delete(pod.attachment)
        self.harness.delete_pod(APPS, pod.name)
        self.pods.remove(pod)

    def network(self) -> Network:
        return self.store.get(Network, NETWORK)

    def change_peer(self, address: str, **changes: Any) -> None:
        """Change one peer of the BGP network (retrying a Conflict with the status writer)."""
        for _ in range(10):
            network = self.network()
            assert network.spec.config is not None
            network.spec.config.bgp_peers = [
                dataclasses.replace(p, **changes) if p.address == address else p
                for p in network.spec.config.bgp_peers
            ]
            try:
                self.store.update(network)
            except Conflict:
                continue
            return
        raise AssertionError(f"could not change peer {address}")

    def peer_state(self, address: str) -> tuple[str, str | None]:
        for entry in self.network().status.bgp_peers:
            if entry.address == address:
                return entry.state, entry.last_error
        return "", None


def set_node_status(store: KubeStore, node: KubeNode, ready: bool) -> None:
    """What kubelet reports: the node's fabric addresses as InternalIPs, Ready or not."""
    for _ in range(10):
        current = store.get(Node, node.name)
        current.body["status"] = {
            "addresses": [
                {"type": "InternalIP", "address": node.netns.ipv4},
                {"type": "InternalIP", "address": node.netns.ipv6},
                {"type": "Hostname", "address": node.name},
            ],
            "conditions": [
                {
                    "type": "Ready",
                    "status": "True" if ready else "False",
                    "reason": "KubeletReady" if ready else "KubeletNotReady",
                    "message": "set by the test",
                    "lastHeartbeatTime": ipinstances.now(),
                    "lastTransitionTime": ipinstances.now(),
                }
            ],
        }
        try:
            store.update_status(current)
        except Conflict:  # the node labeler wrote its labels meanwhile
            continue
        return
    raise AssertionError(f"could not write {node.name}'s status")


def bird_neighbors(
    nodes: list[KubeNode], *, password: str | None = None, v6: bool = True
) -> list[BirdNeighbor]:
    """Every node may run a manager: an IPv4 (and IPv6) session for each, named after the
    node (``dp1v4``), graceful restart on."""
    found = []
    for node in nodes:
        found.append(BirdNeighbor(f"{node.name}v4", node.netns.ipv4, LOCAL_ASN, password=password))
        if v6:
            found.append(
                BirdNeighbor(f"{node.name}v6", node.netns.ipv6, LOCAL_ASN, local_address=GATEWAY_V6)
            )
    return found


def build_outside(fabric: testbed.Fabric, run: testbed.TestbedRun) -> testbed.Namespace:
    """A host behind the gateway (198.18.200.2, 2001:db8:200::2), default route back to it."""
    outside = testbed.create_namespace(run.unique("outside"))
    fabric.namespaces.append(outside)
    testbed.connect(fabric.gateway, "eth1", outside, "eth0")
    fabric.gateway.ip("addr", "add", "198.18.200.1/24", "dev", "eth1")
    fabric.gateway.ip("-6", "addr", "add", "2001:db8:200::1/64", "dev", "eth1", "nodad")
    outside.ip("addr", "add", f"{OUTSIDE_V4}/24", "dev", "eth0")
    outside.ip("-6", "addr", "add", f"{OUTSIDE_V6}/64", "dev", "eth0", "nodad")
    outside.ip("route", "add", "default", "via", "198.18.200.1")
    outside.ip("-6", "route", "add", "default", "via", "2001:db8:200::1")
    return outside


def build_spine(fabric: testbed.Fabric) -> testbed.Namespace:
    spine = fabric.add_pod("spine")
    fabric.attach(spine, "eth0")
    spine.ip("addr", "add", f"{SPINE}/24", "dev", "eth0")
    return spine


def create_networks(store: KubeStore) -> None:
    peers = [
        BGPPeer(address=GATEWAY_V4, asn=FABRIC_ASN, graceful_restart_seconds=GRACE),
        BGPPeer(address=GATEWAY_V6, asn=FABRIC_ASN, graceful_restart_seconds=GRACE),
        BGPPeer(
            address=SPINE,
            asn=FABRIC_ASN,
            password=SPINE_PASSWORD,
            graceful_restart_seconds=GRACE,
            does_not_route_traffic=True,
        ),
    ]
    spec = NetworkSpec(
        type=c.TYPE_UNDERLAY,
        mode=c.MODE_BGP,
        net_id=LOCAL_ASN,
        node_selector=dict(RACK),
        config=NetworkConfig(bgp_peers=peers),
    )
    store.create(Network(ObjectMeta(name=NETWORK), spec))
    global_spec = NetworkSpec(type=c.TYPE_GLOBAL_BGP, mode=c.MODE_GLOBAL_BGP)
    store.create(Network(ObjectMeta(name=GLOBAL), global_spec))
    for name, network, version, cidr in (
        ("bgp-v4", NETWORK, "4", POD_V4),
        ("bgp-v6", NETWORK, "6", POD_V6),
        ("global-v4", GLOBAL, "4", GLOBAL_V4),
    ):
        subnet = SubnetSpec(network=network, range=AddressRange(version=version, cidr=cidr))
        store.create(Subnet(ObjectMeta(name=name), subnet))


@pytest.fixture(scope="module")
def plane() -> Iterator[ControlPlane]:
    plane = ControlPlane(bin_dir=control_plane_binaries())
    plane.start()
    try:
        plane.install_crds(DEFAULT_CRD_DIR)
        yield plane
    finally:
        plane.stop()


@pytest.fixture(scope="module")
def cluster(
    plane: ControlPlane, testbed_run: testbed.TestbedRun, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Cluster]:
    directory = tmp_path_factory.mktemp("bgp-kube")
    fabric = testbed.Fabric(testbed_run)
    store = KubeStore.from_kubeconfig(plane.kubeconfig_path)
    birds: list[Bird] = []
    world: Cluster | None = None
    try:
        harness = Harness(store, "bgp")
        harness.namespace(APPS)
        for manifest in ("daemon", "manager"):
            apply(plane, render(f"{manifest}/rbac.yaml", IPAM_NAMESPACE))
        nodes = [
            KubeNode(fabric.add_node(), f"dp{i}", directory / f"dp{i}", "unused") for i in (1, 2)
        ]
        outside = build_outside(fabric, testbed_run)
        spine = build_spine(fabric)
        gateway_bird = Bird(
            fabric.gateway, directory / "bird-gateway", router_id=GATEWAY_V4, asn=FABRIC_ASN,
            neighbors=bird_neighbors(nodes), local_address=GATEWAY_V4, kernel_table=254,
        )  # fmt: skip
        spine_bird = Bird(
            spine, directory / "bird-spine", router_id=SPINE, asn=FABRIC_ASN,
            neighbors=bird_neighbors(nodes, password=SPINE_PASSWORD, v6=False),
        )  # fmt: skip
        for bird in (gateway_bird, spine_bird):
            birds.append(bird)
            bird.start()
        create_networks(store)
        for node in nodes:
            harness.node(node.name, labels=dict(RACK))
            set_node_status(store, node, ready=True)
        with plane.exposed(fabric.gateway.name, fabric.gateway_ipv4) as url:
            node_kubeconfig = plane.service_account_kubeconfig(
                IPAM_NAMESPACE, "hybridnet-daemon", server_url=url, path=directory / "node.kc"
            )
            manager_kubeconfig = plane.service_account_kubeconfig(
                IPAM_NAMESPACE, "hybridnet-manager", server_url=url,
                path=directory / "manager.kc",
            )  # fmt: skip
            world = Cluster(
                plane, fabric, store, harness, nodes, gateway_bird, spine_bird, outside,
                spine, directory, manager_kubeconfig,
            )  # fmt: skip
            world.wait_serving(world.start_manager(nodes[0], "bgp-a"))
            for node in nodes:
                node.start(node_kubeconfig, IPAM_NAMESPACE, "--bgp-announce-timeout",
                           ANNOUNCE_TIMEOUT)  # fmt: skip
            yield world
    finally:
        if world is not None:
            for node in world.nodes:
                node.stop()
            for manager in world.managers:
                manager.process.stop(timeout=15)
        for bird in birds:
            bird.stop()
        store.close()
        fabric.teardown()


# --------------------------------------------------------------------------- reading BIRD


def learned(bird: Bird, protocol: str) -> Table:
    found: Table = {}
    for prefix, routes in bird.routes().items():
        for route in routes:
            if route.protocol == protocol:
                found[prefix] = (route.next_hop, route.communities)
    return found


def host(address: str) -> str:
    return f"{address}/{128 if ':' in address else 32}"


def expected(cluster: Cluster, speaker: KubeNode, version: str) -> Table:
    """What the manager speaking from ``speaker`` should have told a peer of IP ``version``:
    the BGP subnet via itself, each BGP pod via its node (NO_EXPORT), each GlobalBGP pod via
    its node (no community)."""
    own = speaker.netns.ipv4 if version == "4" else speaker.netns.ipv6
    table: Table = {POD_V4 if version == "4" else POD_V6: (own, frozenset())}
    for pod in cluster.pods:
        address = pod.addresses.get(version)
        if address is None:
            continue
        hop = pod.node.netns.ipv4 if version == "4" else pod.node.netns.ipv6
        in_global = ipaddress.ip_address(address) in ipaddress.ip_network(GLOBAL_V4)
        table[host(address)] = (hop, frozenset() if in_global else NO_EXPORT)
    return table


def wait_for_tables(cluster: Cluster, speaker: KubeNode, *, spine: bool = True) -> None:
    """The gateway's IPv4 and IPv6 sessions with ``speaker`` (and the spine's) hold exactly
    what it should have announced."""
    checks = [
        (cluster.gateway_bird, f"{speaker.name}v4", "4"),
        (cluster.gateway_bird, f"{speaker.name}v6", "6"),
    ]
    if spine:
        checks.append((cluster.spine_bird, f"{speaker.name}v4", "4"))
    for bird, protocol, version in checks:
        wanted = expected(cluster, speaker, version)
        eventually(
            lambda b=bird, p=protocol, w=wanted: learned(b, p) == w,  # type: ignore[misc]
            f"{protocol} at {bird.directory.name} holds {wanted}",
        )


def pings(source: testbed.Namespace, address: str) -> bool:
    return testbed.ping(source, address, count=1, timeout=5)


# --------------------------------------------------------------------------- tests


def test_routes_reach_bird_with_exact_prefixes_next_hops_and_communities(
    cluster: Cluster,
) -> None:
    """A dual-stack BGP pod on each node: its ADD returns once the routes are announced
    (the IPInstances carry the manager's mark for their node); both routers hold the
    subnets and every pod's /32 and /128 with the pod's node as next hop and NO_EXPORT;
    the Network's status shows each peer Established."""
    a, b = cluster.nodes
    for node in (a, b):
        pod = cluster.add_pod(node, f"p-{node.name}")
        for instance in cluster.harness.instances(APPS, pod.name):
            assert instance.spec.network == NETWORK
            assert ipinstances.bgp_announced_for(instance) == node.name
        node.cni().check(pod.attachment)  # its routes announced, its tables in place
    wait_for_tables(cluster, a)
    for address in (GATEWAY_V4, GATEWAY_V6, SPINE):
        eventually(
            lambda x=address: cluster.peer_state(x)[0] == "Established",  # type: ignore[misc]
            f"{address} Established on the Network's status",
        )
    entries = {e.address: e for e in cluster.network().status.bgp_peers}
    eventually(
        lambda: (
            {e.address: e.announced_routes for e in cluster.network().status.bgp_peers}
            == {GATEWAY_V4: 3, GATEWAY_V6: 3, SPINE: 3}
        ),
        "each peer's announced route count on the status",
    )
    assert all(e.last_transition_time for e in entries.values())
    metrics = a.netns.exec(
        ["python3", "-c", "import urllib.request as u;"
         "print(u.urlopen('http://127.0.0.1:9899/metrics').read().decode())"]
    ).stdout  # fmt: skip
    assert f'hybridnet_bgp_session_state{{peer="{GATEWAY_V4}",state="Established"}} 1.0' in metrics
    assert "hybridnet_manager_bgp_announce_seconds_count" in metrics


def test_pods_reach_each_other_and_a_host_behind_the_router_through_birds_routes(
    cluster: Cluster,
) -> None:
    """The gateway forwards by what BIRD learned and put in its kernel table (its main
    table holds each pod's /32 and /128 from BIRD); pods on two nodes reach each other and
    the outside host over IPv4 and IPv6, with their own addresses."""
    gateway_routes = (
        cluster.fabric.gateway.exec(["ip", "-4", "route", "show", "proto", "bird"]).stdout
        + cluster.fabric.gateway.exec(["ip", "-6", "route", "show", "proto", "bird"]).stdout
    )
    for pod in cluster.pods:
        for address in pod.addresses.values():
            assert f"{address} via" in gateway_routes, gateway_routes
    first, second = cluster.pods[:2]
    for source, target in ((first, second), (second, first)):
        for version in ("4", "6"):
            eventually(
                lambda s=source, t=target, v=version: pings(s.netns, t.addresses[v]),  # type: ignore[misc]
                f"IPv{version} {source.name} -> {target.name}",
            )
    for pod in (first, second):
        for version, outside in (("4", OUTSIDE_V4), ("6", OUTSIDE_V6)):
            eventually(
                lambda p=pod, o=outside: pings(p.netns, o),  # type: ignore[misc]
                f"IPv{version} {pod.name} -> the outside host",
            )
        server = testbed.start_tcp_echo_server(cluster.outside, OUTSIDE_V4, 7100)
        try:
            reply = testbed.tcp_echo(pod.netns, OUTSIDE_V4, 7100, pod.name)
        finally:
            server.stop()
        assert reply.seen_source == pod.addresses["4"]


def test_a_released_address_leaves_both_routers(cluster: Cluster) -> None:
    a = cluster.nodes[0]
    pod = cluster.add_pod(a, "p-released")
    wait_for_tables(cluster, a)
    cluster.remove_pod(pod)
    eventually(lambda: not cluster.harness.instances(APPS, pod.name), "its addresses released")
    wait_for_tables(cluster, a)  # exactly the others: the pod's /32 and /128 are gone


def test_a_node_going_not_ready_withdraws_its_pods_routes_until_it_is_ready_again(
    cluster: Cluster,
) -> None:
    a, b = cluster.nodes
    on_b = [p for p in cluster.pods if p.node is b]
    set_node_status(cluster.store, b, ready=False)
    hidden = {host(address) for p in on_b for address in p.addresses.values()}
    eventually(
        lambda: (
            not hidden & set(learned(cluster.gateway_bird, f"{a.name}v4"))
            and not hidden & set(learned(cluster.gateway_bird, f"{a.name}v6"))
        ),
        f"{b.name}'s pods withdrawn while it is NotReady",
    )
    set_node_status(cluster.store, b, ready=True)
    wait_for_tables(cluster, a)


def test_a_global_bgp_pod_is_announced_without_community_and_without_subnet_route(
    cluster: Cluster,
) -> None:
    """A GlobalBGP pod (named network) on node 2: its /32 goes to the node's BGP network's
    peers without NO_EXPORT, its subnet is not announced, and it reaches the outside host
    through the BGP network's router."""
    b = cluster.nodes[1]
    annotations = {c.ANNOTATION_SPECIFIED_NETWORK: GLOBAL, c.ANNOTATION_IP_FAMILY: "IPv4"}
    pod = cluster.add_pod(b, "p-global", annotations)
    assert ipaddress.ip_address(pod.addresses["4"]) in ipaddress.ip_network(GLOBAL_V4)
    wait_for_tables(cluster, cluster.nodes[0])  # includes its /32, no community
    assert GLOBAL_V4 not in learned(cluster.gateway_bird, f"{cluster.nodes[0].name}v4")
    eventually(lambda: pings(pod.netns, OUTSIDE_V4), "the GlobalBGP pod -> the outside host")
    cluster.remove_pod(pod)
    wait_for_tables(cluster, cluster.nodes[0])


def test_a_wrong_peer_asn_or_password_is_a_peer_state_and_blocks_no_allocation(
    cluster: Cluster,
) -> None:
    """The spine told the wrong AS number: its session is refused, which the Network's
    status shows (state and the NOTIFICATION); a new pod still gets its addresses, and its
    ADD says it cannot finish while that peer, which it waits for, is down. The peer
    allowed not to be established: the ADD goes through. A wrong MD5 password: a state
    too. Put right again: Established, the routes back."""
    a = cluster.nodes[0]
    cluster.change_peer(SPINE, asn=65099)
    eventually(
        lambda: (
            cluster.peer_state(SPINE)[1] is not None
            and "bad peer AS" in str(cluster.peer_state(SPINE)[1])
            and cluster.peer_state(SPINE)[0] != "Established"
        ),
        "the spine's refusal on the Network's status",
    )
    manager = cluster.managers[0]
    assert manager.process.poll() is None, "the manager kept running"

    name = "p-blocked"
    cluster.harness.pod(APPS, name, node=a.name, annotations={c.ANNOTATION_IP_FAMILY: "IPv4"})
    netns = cluster.fabric.add_pod(name)
    attachment = Attachment(
        container_id=netns.name, netns=netns.path,
        args={"K8S_POD_NAMESPACE": APPS, "K8S_POD_NAME": name, "IgnoreUnknown": "1"},
    )  # fmt: skip
    with pytest.raises(CniPluginError) as refused:
        a.cni().add(attachment)
    assert refused.value.code == 11, refused.value  # try again later
    assert SPINE in refused.value.msg and "bad peer AS" in refused.value.msg, refused.value.msg
    (allocated,) = cluster.harness.instances(APPS, name)  # allocation was not blocked
    assert ipaddress.ip_interface(allocated.spec.address.ip) in ipaddress.ip_network(POD_V4)

    cluster.change_peer(SPINE, allow_not_established=True)
    a.cni().add(attachment)
    cluster._recorded(name, a, netns, attachment)
    wait_for_tables(cluster, a, spine=False)

    before = md5_failures(cluster.spine)
    cluster.change_peer(SPINE, asn=FABRIC_ASN, password=WRONG_PASSWORD)
    eventually(
        lambda: md5_failures(cluster.spine) > before,
        "the spine's kernel refusing the manager's MD5 signature",
    )
    state = cluster.peer_state(SPINE)[0]
    assert state not in ("Established", ""), state
    cluster.change_peer(SPINE, password=SPINE_PASSWORD, allow_not_established=False)
    eventually(lambda: cluster.peer_state(SPINE)[0] == "Established", "the spine back")
    wait_for_tables(cluster, a)


def md5_failures(namespace: testbed.Namespace) -> int:
    """TcpExt TCPMD5Failure of the namespace: segments dropped for a wrong MD5 signature."""
    lines = namespace.exec(["cat", "/proc/net/netstat"]).stdout.splitlines()
    for names, values in zip(lines[::2], lines[1::2], strict=True):
        if names.startswith("TcpExt:"):
            table = dict(zip(names.split()[1:], values.split()[1:], strict=True))
            return int(table["TCPMD5Failure"])
    raise AssertionError("no TcpExt line in /proc/net/netstat")


class Watcher:
    """Polls the gateway's BIRD all the time and notes every moment one of ``prefixes`` was
    in no protocol's table."""

    def __init__(self, bird: Bird, prefixes: set[str]):
        self.bird = bird
        self.prefixes = prefixes
        self.gaps: list[tuple[float, set[str]]] = []
        self.polls = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Watcher:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.is_set():
            missing = self.prefixes - set(self.bird.routes())
            self.polls += 1
            if missing:
                self.gaps.append((time.monotonic(), missing))
            self._stop.wait(0.05)


def test_leader_change_keeps_the_routes_at_bird_then_reconciles(cluster: Cluster) -> None:
    """A second manager (in node 2's namespace) waits as standby, its sessions up with no
    routes; the leader is killed (kill -9; its ExaBGP ends with it). BIRD keeps the old
    leader's routes (graceful restart) while the standby takes the Lease, and holds every live
    pod's route throughout (watched continuously). A pod deleted while no manager leads is
    released by the new leader, whose sessions then hold exactly the new set. The old replica
    comes back on its node (as the kubelet restarts a container) as a standby: its End-of-RIB
    with nothing makes BIRD drop the stale routes, the released pod's among them, long
    before their restart time. A new pod's ADD is served by the new leader."""
    a, b = cluster.nodes
    old = cluster.managers[0]
    standby = cluster.start_manager(b, "bgp-b")
    eventually(lambda: "waiting for leadership" in standby.text(), "the standby waiting")
    wait_for_empty_sessions(cluster, b)
    gone = cluster.add_pod(a, "p-gone")
    wait_for_tables(cluster, a)
    live = {
        host(address)
        for pod in cluster.pods
        if pod is not gone
        for address in pod.addresses.values()
    } | {POD_V4, POD_V6}
    exabgp = old_exabgp_pid(old)
    with Watcher(cluster.gateway_bird, live) as watcher:
        os.kill(old.process.pid, signal.SIGKILL)
        eventually(lambda: not Path(f"/proc/{exabgp}").exists(), "the old leader's ExaBGP ended")
        eventually(
            lambda: cluster.gateway_bird.protocol(f"{a.name}v4").graceful_restart_active,
            "BIRD holding the old leader's routes for its graceful restart",
        )
        gone.node.cni().delete(gone.attachment)
        cluster.harness.delete_pod(APPS, gone.name)
        cluster.pods.remove(gone)
        cluster.wait_serving(standby)
        wait_for_tables(cluster, b)  # the new leader's sessions: the new set
        assert learned(cluster.gateway_bird, f"{a.name}v4"), "stale routes kept meanwhile"
        returned = cluster.start_manager(a, "bgp-a2")  # same node, same source addresses
        eventually(lambda: "waiting for leadership" in returned.text(), "the old replica back")
        wait_for_empty_sessions(cluster, a)  # the stale routes gone by End-of-RIB
    assert watcher.polls > 10
    assert watcher.gaps == [], f"live routes missing at BIRD: {watcher.gaps[:5]}"
    pod = cluster.add_pod(a, "p-after")
    for instance in cluster.harness.instances(APPS, pod.name):
        assert ipinstances.bgp_announced_for(instance) == a.name
    wait_for_tables(cluster, b)
    wait_for_empty_sessions(cluster, a)


def test_a_leader_stopping_on_purpose_hands_its_routes_over_without_a_gap(
    cluster: Cluster,
) -> None:
    """SIGTERM to the leader (to its process alone, as the kubelet stops a container's
    first process): it releases the Lease, keeps announcing until the standby (back from the
    test before) says on the Lease that its routes are out, then withdraws its own, so BIRD
    is left with the new leader's routes and nothing stale, and never misses a live route."""
    a, b = cluster.nodes
    leader = next(m for m in cluster.managers if m.identity == cluster.leader())
    standby = next(m for m in cluster.managers if m.process.poll() is None and m is not leader)
    assert (leader.node, standby.node) == (b, a), "the test before leaves b leading"
    wait_for_tables(cluster, b)
    wait_for_empty_sessions(cluster, a)
    live = {host(address) for pod in cluster.pods for address in pod.addresses.values()}
    with Watcher(cluster.gateway_bird, live | {POD_V4, POD_V6}) as watcher:
        os.kill(leader.process.pid, signal.SIGTERM)
        eventually(lambda: leader.process.poll() is not None, "the old leader's exit")
        assert "BGP routes handed over" in leader.text(), leader.text()[-3000:]
        cluster.wait_serving(standby)
        wait_for_tables(cluster, a)
        for bird, protocol in (
            (cluster.gateway_bird, f"{b.name}v4"),
            (cluster.gateway_bird, f"{b.name}v6"),
            (cluster.spine_bird, f"{b.name}v4"),
        ):
            assert not learned(bird, protocol), f"{protocol} left routes at {bird.directory}"
    assert leader.process.poll() == 0
    assert watcher.polls > 10
    assert watcher.gaps == [], f"live routes missing at BIRD: {watcher.gaps[:5]}"


def wait_for_empty_sessions(cluster: Cluster, speaker: KubeNode) -> None:
    """A standby's sessions (from ``speaker``): Established at both routers, no routes."""
    for bird, protocol in (
        (cluster.gateway_bird, f"{speaker.name}v4"),
        (cluster.gateway_bird, f"{speaker.name}v6"),
        (cluster.spine_bird, f"{speaker.name}v4"),
    ):
        eventually(
            lambda b=bird, p=protocol: (  # type: ignore[misc]
                b.protocol(p).state == "Established"
                and not b.protocol(p).graceful_restart_active
                and not learned(b, p)
            ),
            f"{protocol} at {bird.directory.name} Established with no routes",
        )


def old_exabgp_pid(manager: ManagerProcess) -> int:
    """The PID of the ExaBGP the manager started last (its log says)."""
    for line in reversed(manager.text().splitlines()):
        if "ExaBGP started" in line:
            return int(json.loads(line)["exabgp_pid"])
    raise AssertionError(f"{manager.identity} started no ExaBGP:\n{manager.text()[-2000:]}")
