"""Two VLANs on one trunk, end to end: the lab's fabric (a switch), a gateway routing VLAN 101
and 102 on its trunk port, a host outside behind it, two nodes whose ``eth0`` is a trunk on the
switch, each running the real hybridnet-daemon on ONE shared embedded store, and pods attached
through the real plugin, each choosing its VLAN's subnet on its Pod object.

The store holds one underlay network with two subnets: VLAN 101 comes from the Network's netID
(its subnet has none), VLAN 102 from its subnet's own. (Two underlay networks cannot both attach
one node: the datapath serves only the oldest that selects it.) Nothing here configures a
node's datapath: the daemons make ``eth0.101`` and ``eth0.102`` and the subnets' routing.

Runs natively where the kernel has 8021q, otherwise the whole topology runs inside one
user-mode-linux guest (tests/netns/uml.py), where every syscall costs about 30 times more: so
one test, two nodes, four pods and single pings.
"""

from __future__ import annotations

import dataclasses
import functools
import ipaddress
import json
import re
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from hybridnet import lab as testbed
from hybridnet.api import constants
from hybridnet.api.builtin import Node, Pod
from hybridnet.api.meta import ObjectMeta
from hybridnet.api.resources import (
    AddressRange,
    IPInstance,
    Network,
    NetworkSpec,
    NodeInfo,
    Subnet,
    SubnetSpec,
)
from hybridnet.lab import daemon as harness
from hybridnet.lab.cni_runtime import Attachment, CniRuntime
from hybridnet.lab.processes import Process
from hybridnet.store.sqlite import SQLiteStore

pytestmark = [pytest.mark.root, pytest.mark.requires_8021q]

NETWORK = "vlans"
POD_NAMESPACE = "default"
IPAM_NAMESPACE = "kube-system"
TRUNK_LABELS = {"fabric": "trunk"}
OUTSIDE_HOST, OUTSIDE_GATEWAY = "198.19.200.2", "198.19.200.1"
FIRST_REPLY_BOUND = 60.0
"""A pod's first ping waits for its node's reconcile worker (woken by the ADD) and ARP; both
take well under a second natively and a few inside user-mode-linux: the rest is slack for a
loaded host, never waited for once the reply comes."""


@dataclasses.dataclass(frozen=True)
class Vlan:
    vlan_id: int
    subnet: str
    cidr: str
    gateway: str

    @property
    def trunk_ifname(self) -> str:
        """The sub-interface on a trunk port, the gateway's and (made by the daemon) a node's."""
        return f"eth0.{self.vlan_id}"


VLAN_A = Vlan(101, "vlan101", "198.19.101.0/24", "198.19.101.1")
VLAN_B = Vlan(102, "vlan102", "198.19.102.0/24", "198.19.102.1")


def cluster_store(path: Path, nodes: list[str]) -> Path:
    """The nodes (their Node objects put them on the trunk) and the underlay network ``vlans``
    over them: subnet ``vlan101`` takes the Network's netID, ``vlan102`` has its own."""
    store = SQLiteStore(path)
    try:
        for node in nodes:
            store.create(Node(ObjectMeta(name=node, labels=TRUNK_LABELS)))
        spec = NetworkSpec(
            type=constants.TYPE_UNDERLAY, mode=constants.MODE_VLAN,
            net_id=VLAN_A.vlan_id, node_selector=TRUNK_LABELS,
        )  # fmt: skip
        store.create(Network(ObjectMeta(name=NETWORK), spec))
        for vlan, net_id in ((VLAN_A, None), (VLAN_B, VLAN_B.vlan_id)):
            addresses = AddressRange(version="4", cidr=vlan.cidr, gateway=vlan.gateway)
            subnet = SubnetSpec(network=NETWORK, range=addresses, net_id=net_id)
            store.create(Subnet(ObjectMeta(name=vlan.subnet), subnet))
    finally:
        store.close()
    return path


def route_both_vlans(fabric: testbed.Fabric) -> None:
    """The gateway routes both VLANs: on its trunk port, one sub-interface per VLAN holding
    the subnet's gateway address (its forwarding is on: testbed.Fabric)."""
    gateway = fabric.gateway
    for vlan in (VLAN_A, VLAN_B):
        gateway.ip(
            "link", "add", "link", "eth0", "name", vlan.trunk_ifname,
            "type", "vlan", "id", str(vlan.vlan_id),
        )  # fmt: skip
        prefix = ipaddress.ip_network(vlan.cidr).prefixlen
        gateway.ip("addr", "add", f"{vlan.gateway}/{prefix}", "dev", vlan.trunk_ifname)
        gateway.ip("link", "set", vlan.trunk_ifname, "up")


def add_outside_host(fabric: testbed.Fabric) -> testbed.Namespace:
    """A host behind the gateway on a link of its own, on no VLAN."""
    outside = fabric.add_pod("outside")
    testbed.connect(fabric.gateway, "out0", outside, "eth0")
    fabric.gateway.ip("addr", "add", f"{OUTSIDE_GATEWAY}/24", "dev", "out0")
    outside.ip("addr", "add", f"{OUTSIDE_HOST}/24", "dev", "eth0")
    outside.ip("route", "add", "default", "via", OUTSIDE_GATEWAY)
    return outside


def refuse_routing_between_vlans(fabric: testbed.Fabric) -> None:
    """The gateway stops routing from one VLAN into the other, answering "packet filtered"
    (ICMP administratively prohibited) instead; it still routes each VLAN to the outside."""
    for here, there in ((VLAN_A, VLAN_B), (VLAN_B, VLAN_A)):
        fabric.gateway.ip("rule", "add", "iif", here.trunk_ifname, "to", there.cidr, "prohibit")


@dataclasses.dataclass
class NodeDaemon:
    node: testbed.Node
    name: str
    directory: Path
    store: Path
    process: Process | None = None

    @property
    def socket(self) -> Path:
        return self.directory / "run" / "daemon.sock"

    def start(self) -> None:
        """No --network: every pod names its network on its Pod object. No VTEP either: the
        store has no overlay network."""
        self.process = harness.start_daemon(
            self.node, self.socket,
            "--node-name", self.name, "--store", str(self.store),
            "--ipam-namespace", IPAM_NAMESPACE,
            "--ip-family", "IPv4", "--underlay-interface", "eth0",
        )  # fmt: skip

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()
            self.process = None

    def cni(self) -> CniRuntime:
        conflist = {
            "cniVersion": "1.1.0",
            "name": "hybridnet",
            "plugins": [{"type": "hybridnet", "socket": str(self.socket)}],
        }
        plugins = harness.plugin_dir(self.directory / "cni-bin")
        return CniRuntime(
            conflist, [str(plugins)], self.directory / "cni-cache", exec_netns=self.node.name
        )


@dataclasses.dataclass(frozen=True)
class VlanPod:
    namespace: testbed.Namespace
    vlan: Vlan
    address: str


def start_pod(fabric: testbed.Fabric, daemon: NodeDaemon, vlan: Vlan, role: str) -> VlanPod:
    """The API server's and the scheduler's part (a Pod bound to the node, asking for the
    VLAN's subnet), then the runtime's: CNI ADD through the real plugin."""
    pod = fabric.add_pod(role)
    annotations = {
        constants.ANNOTATION_SPECIFIED_NETWORK: NETWORK,
        constants.ANNOTATION_SPECIFIED_SUBNET: vlan.subnet,
    }
    meta = ObjectMeta(name=pod.name, namespace=POD_NAMESPACE, annotations=annotations)
    store = SQLiteStore(daemon.store)
    try:
        store.create(Pod(meta, body={"spec": {"nodeName": daemon.name}}))
    finally:
        store.close()
    attachment = Attachment(
        container_id=pod.name,
        netns=pod.path,
        args={"K8S_POD_NAMESPACE": POD_NAMESPACE, "K8S_POD_NAME": pod.name, "IgnoreUnknown": "1"},
    )
    daemon.cni().add(attachment)
    return VlanPod(pod, vlan, stored_address(daemon.store, pod.name))


def stored_address(path: Path, pod: str) -> str:
    store = SQLiteStore(path)
    try:
        found = store.list(IPInstance, IPAM_NAMESPACE).items
    finally:
        store.close()
    (address,) = [
        i.spec.address.ip.split("/")[0]
        for i in found
        if i.spec.binding and i.spec.binding.pod_name == pod
    ]
    return address


def node_problems(path: Path, node: str) -> list[str]:
    store = SQLiteStore(path)
    try:
        info = store.get(NodeInfo, node)
    finally:
        store.close()
    return [f"{p.code} {p.subject}" for p in info.status.problems]


def vlan_device(namespace: testbed.Namespace, ifname: str) -> dict[str, object]:
    shown = json.loads(namespace.ip("-j", "-d", "link", "show", ifname).stdout)[0]
    return {
        "kind": shown["linkinfo"]["info_kind"],
        "id": shown["linkinfo"]["info_data"]["id"],
        "parent": shown["link"],
        "alias": shown.get("ifalias"),
    }


@dataclasses.dataclass(frozen=True)
class Echo:
    replied: bool
    ttl: int | None
    """The reply's TTL: every router on the way back took one off."""
    output: str


def echo(source: testbed.Namespace, address: str) -> Echo:
    """One ping; it ends at the reply, at an ICMP error (an answer too) or after 5 s."""
    done = source.exec(["ping", "-n", "-c", "1", "-W", "5", address], check=False, timeout=15)
    ttl = re.search(r" ttl=(\d+) ", done.stdout)
    return Echo(done.returncode == 0, int(ttl.group(1)) if ttl else None, done.stdout)


def reaches(source: testbed.Namespace, address: str) -> bool:
    return echo(source, address).replied


def wait_for(what: str, check: Callable[[], bool], bound: float = FIRST_REPLY_BOUND) -> None:
    deadline = time.monotonic() + bound
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {bound}s")
        time.sleep(0.1)


def test_two_vlans_on_a_trunk_reach_gateway_outside_and_each_other_only_via_the_gateway(
    fabric: testbed.Fabric, tmp_path: Path
) -> None:
    route_both_vlans(fabric)
    outside = add_outside_host(fabric)
    names = [f"node{index}" for index in range(1, len(fabric.nodes) + 1)]
    store = cluster_store(tmp_path / "store.db", names)
    daemons = [
        NodeDaemon(node, name, tmp_path / name, store)
        for name, node in zip(names, fabric.nodes, strict=True)
    ]
    assert all(d.node.links() == ["lo", "eth0"] for d in daemons)
    try:
        for daemon in daemons:
            daemon.start()
        one, two = daemons
        a_one = start_pod(fabric, one, VLAN_A, "a-one")
        a_two = start_pod(fabric, two, VLAN_A, "a-two")
        b_one = start_pod(fabric, one, VLAN_B, "b-one")
        b_two = start_pod(fabric, two, VLAN_B, "b-two")
        pods = (a_one, a_two, b_one, b_two)
        for pod in pods:
            assert ipaddress.ip_address(pod.address) in ipaddress.ip_network(pod.vlan.cidr)

        # Each daemon made one tagged sub-interface per VLAN on its trunk, and nothing is wrong.
        for daemon in daemons:
            for vlan in (VLAN_A, VLAN_B):
                assert vlan_device(daemon.node, vlan.trunk_ifname) == {
                    "kind": "vlan",
                    "id": vlan.vlan_id,
                    "parent": "eth0",
                    "alias": "hybridnet-datapath:vlan",
                }
            assert node_problems(store, daemon.name) == []

        # Every pod reaches its VLAN's gateway (which holds that address only on the VLAN's
        # sub-interface: the frames carry the right tag) and the host outside; the gateway
        # and the outside host reach every pod.
        for pod in pods:
            name = pod.namespace.name
            wait_for(
                f"{name} -> its gateway",
                functools.partial(reaches, pod.namespace, pod.vlan.gateway),
            )
            assert reaches(pod.namespace, OUTSIDE_HOST), name
            assert reaches(fabric.gateway, pod.address), name
            assert reaches(outside, pod.address), name

        # Within a VLAN, pods on different nodes reach each other on the segment: the reply
        # passes two routers (the nodes).
        within = {}
        for left, right in ((a_one, a_two), (b_one, b_two)):
            there, back = echo(left.namespace, right.address), echo(right.namespace, left.address)
            assert there.replied and back.replied, (there.output, back.output)
            within[left.vlan.vlan_id] = there.ttl
        assert within[101] == within[102]

        # Between the VLANs across nodes, the only way is through the gateway: one router more.
        between = echo(a_one.namespace, b_two.address)
        assert between.replied, between.output
        assert between.ttl is not None and within[101] is not None
        assert between.ttl == within[101] - 1, between.output
        back = echo(b_two.namespace, a_one.address)
        assert back.replied and back.ttl == between.ttl, back.output

        # With the gateway refusing to route between them, the VLANs are cut off from each
        # other: the packet goes to the gateway, which answers for it (no layer-2 way around),
        # while traffic within a VLAN and to the outside is untouched.
        refuse_routing_between_vlans(fabric)
        for source, target in ((a_one, b_two), (b_two, a_one)):
            refused = echo(source.namespace, target.address)
            assert not refused.replied, refused.output
            assert f"From {source.vlan.gateway} icmp_seq=1 Packet filtered" in refused.output
        assert reaches(a_one.namespace, a_two.address)
        assert reaches(b_two.namespace, b_one.address)
        assert reaches(a_one.namespace, OUTSIDE_HOST)

        # No node answers ARP on one VLAN for a pod of the other: a gateway that believes
        # VLAN 102's pod is on VLAN 101's segment gets no answer there (proxy_arp would give
        # the node's MAC and carry the packet across).
        gateway_a = VLAN_A.trunk_ifname
        fabric.gateway.ip("route", "add", f"{b_two.address}/32", "dev", gateway_a)
        stray = echo(fabric.gateway, b_two.address)
        assert not stray.replied, stray.output
        neighbour = fabric.gateway.ip("neigh", "show", b_two.address, "dev", gateway_a).stdout
        assert "lladdr" not in neighbour, neighbour
        fabric.gateway.ip("route", "del", f"{b_two.address}/32", "dev", gateway_a)
    finally:
        for daemon in daemons:
            daemon.stop()
