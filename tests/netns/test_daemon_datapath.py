"""The node datapath wired into hybridnet-daemon: two nodes of the lab's fabric, each running
the real daemon on ONE shared embedded store (SQLite; the daemons' watches see each other's
writes), the overlay network ``pods`` (VXLAN, VNI 5). Pods are attached through the real plugin.

Everything node-wide (VXLAN device, FDB, routes, rules) is made by each daemon's reconcile
worker from the NodeInfos the daemons publish; nothing here configures a node's datapath.
"""

from __future__ import annotations

import dataclasses
import functools
import ipaddress
import json
import re
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from hybridnet import lab as testbed
from hybridnet.api import constants
from hybridnet.api.builtin import Event, Node, Pod
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
from hybridnet.lab.cni_runtime import Attachment, CniPluginError, CniRuntime
from hybridnet.lab.processes import Process
from hybridnet.store.errors import NotFound
from hybridnet.store.sqlite import SQLiteStore

pytestmark = pytest.mark.root

VXLAN = "eth0.vxlan5"
RESYNC = 1.0
"""Short, so that healing is quick to see; the default is 30 s."""
HEAL_BOUND = 30.0
"""Healing takes one resync period plus one reconcile (well under 2 s here); the rest is
slack for a loaded host, never waited for when the object comes back sooner."""
METRICS_PORT = 9911
"""The daemon's /metrics on the loopback of its own node namespace (one per node)."""
OVERLAY_V4, OVERLAY_V6 = "198.19.60.0/24", "2001:db8:60::/64"


@dataclasses.dataclass
class NodeDaemon:
    node: testbed.Node
    name: str
    directory: Path
    store: Path
    extra: tuple[str, ...] = ()
    process: Process | None = None
    socket: Path | None = None
    last_output: str | None = None
    """What the last stopped process printed (its log)."""

    def start(self) -> NodeDaemon:
        self.process, self.socket = harness.start_node_daemon(
            self.node,
            self.name,
            self.directory,
            self.store,
            "--ip-family",
            "DualStack",
            "--resync-period",
            str(RESYNC),
            "--metrics-address",
            f"127.0.0.1:{METRICS_PORT}",
            *self.extra,
        )
        return self

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()
            self.last_output = self.process.read_remaining()
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

    def metric(self, name: str, **labels: str) -> float:
        """One sample of the daemon's /metrics, read from inside its node (0 when absent)."""
        script = (
            "import urllib.request, sys; sys.stdout.write(urllib.request.urlopen("
            f"'http://127.0.0.1:{METRICS_PORT}/metrics', timeout=5).read().decode())"
        )
        text = self.node.exec([sys.executable, "-c", script]).stdout
        wanted = {f'{key}="{value}"' for key, value in labels.items()}
        total = 0.0
        for line in text.splitlines():
            match = re.match(rf"^{name}\{{(.*)\}} (\S+)$", line)
            if match and wanted <= set(match.group(1).split(",")):
                total += float(match.group(2))
        return total


def wait_for(what: str, check: Callable[[], object], bound: float = HEAL_BOUND) -> object:
    """Poll until ``check`` returns something truthy (the positive signal)."""
    deadline = time.monotonic() + bound
    while True:
        found = check()
        if found:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {bound}s")
        time.sleep(0.05)


def stored_node_info(store: Path, name: str) -> NodeInfo | None:
    opened = SQLiteStore(store)
    try:
        return opened.get(NodeInfo, name)
    except NotFound:
        return None
    finally:
        opened.close()


def pod_addresses(store: Path, pod: str) -> dict[str, str]:
    """Version ("4"/"6") -> the address of ``pod`` (no prefix length)."""
    opened = SQLiteStore(store)
    try:
        found = opened.list(IPInstance, "kube-system").items
    finally:
        opened.close()
    return {
        i.spec.address.version: i.spec.address.ip.split("/")[0]
        for i in found
        if i.spec.binding and i.spec.binding.pod_name == pod
    }


def stored_events(store: Path) -> list[Event]:
    return stored_events_in(store, "default")


def stored_events_in(store: Path, namespace: str) -> list[Event]:
    opened = SQLiteStore(store)
    try:
        return opened.list(Event, namespace).items
    finally:
        opened.close()


def mac_of(namespace: testbed.Namespace, ifname: str) -> str:
    return str(json.loads(namespace.ip("-j", "link", "show", ifname).stdout)[0]["address"])


def attach(daemon: NodeDaemon, pod: testbed.Namespace) -> Attachment:
    attachment = Attachment(
        container_id=pod.name,
        netns=pod.path,
        args={"K8S_POD_NAMESPACE": "default", "K8S_POD_NAME": pod.name, "IgnoreUnknown": "1"},
    )
    daemon.cni().add(attachment)
    return attachment


def pings(source: testbed.Namespace, address: str) -> bool:
    return testbed.ping(source, address, count=1, timeout=5)


@pytest.fixture
def nodes(fabric: testbed.Fabric, tmp_path: Path) -> Iterator[list[NodeDaemon]]:
    store = harness.embedded_store(tmp_path / "store.db", OVERLAY_V4, OVERLAY_V6)
    daemons = [
        NodeDaemon(node, f"node{index}", tmp_path / f"node{index}", store)
        for index, node in enumerate(fabric.nodes, start=1)
    ]
    try:
        for daemon in daemons:
            daemon.start()
        yield daemons
    finally:
        for daemon in daemons:
            daemon.stop()


def remote_fdb_entry(daemon: NodeDaemon, remote: NodeDaemon) -> bool:
    shown = daemon.node.exec(["bridge", "fdb", "show", "dev", VXLAN], check=False).stdout
    return f"{mac_of(remote.node, 'eth0')} dst {remote.node.ipv4}" in shown


def has_reconciled(daemon: NodeDaemon) -> bool:
    return daemon.metric("hybridnet_datapath_reconcile_seconds_count") >= 1


def vtep_published(daemon: NodeDaemon) -> NodeInfo | None:
    info = stored_node_info(daemon.store, daemon.name)
    return info if info is not None and info.spec.vtep_info is not None else None


def overlay_route(daemon: NodeDaemon) -> str:
    return daemon.node.ip("route", "show", "table", "40000", OVERLAY_V4).stdout.strip()


# --------------------------------------------------------------------------- tests


def test_each_daemon_publishes_its_vtep_on_its_nodeinfo(nodes: list[NodeDaemon]) -> None:
    for daemon in nodes:
        info = wait_for(
            f"{daemon.name}'s NodeInfo with a VTEP", functools.partial(vtep_published, daemon)
        )
        assert isinstance(info, NodeInfo) and info.spec.vtep_info is not None
        assert info.spec.vtep_info.ip == daemon.node.ipv4
        assert info.spec.vtep_info.mac == mac_of(daemon.node, "eth0")
        assert info.spec.vtep_info.local_ips == [daemon.node.ipv4, daemon.node.ipv6]
        assert info.status.problems == []
    one, two = nodes
    wait_for("node1's FDB entry for node2", lambda: remote_fdb_entry(one, two))
    wait_for("node2's FDB entry for node1", lambda: remote_fdb_entry(two, one))


def test_pods_on_two_nodes_reach_each_other_over_ipv4_ipv6_and_tcp(
    fabric: testbed.Fabric, nodes: list[NodeDaemon]
) -> None:
    one, two = nodes
    pod_a, pod_b = fabric.add_pod("pa"), fabric.add_pod("pb")
    attach(one, pod_a)
    attach(two, pod_b)
    a, b = pod_addresses(one.store, pod_a.name), pod_addresses(one.store, pod_b.name)
    assert set(a) == set(b) == {"4", "6"}
    for version in ("4", "6"):
        # The first replies wait for both workers (woken by the ADDs) and, for IPv6, for the
        # new VXLAN device's link-local address to pass duplicate address detection.
        wait_for(f"IPv{version} pa -> pb", functools.partial(pings, pod_a, b[version]))
        wait_for(f"IPv{version} pb -> pa", functools.partial(pings, pod_b, a[version]))
    server = testbed.start_tcp_echo_server(pod_b, b["4"], 7000)
    try:
        reply = testbed.tcp_echo(pod_a, b["4"], 7000, "across-nodes")
    finally:
        server.stop()
    assert reply.payload == "across-nodes"
    assert reply.seen_source == a["4"]  # no NAT between overlay pods


def test_a_deleted_fdb_entry_and_route_heal_within_the_resync(
    fabric: testbed.Fabric, nodes: list[NodeDaemon]
) -> None:
    one, two = nodes
    wait_for("node1's FDB entry for node2", lambda: remote_fdb_entry(one, two))
    wait_for("node1's overlay route", lambda: overlay_route(one))
    before = one.metric("hybridnet_datapath_drift_corrected_total", node="node1")
    remote_mac = mac_of(two.node, "eth0")
    one.node.exec(["bridge", "fdb", "del", remote_mac, "dev", VXLAN, "dst", two.node.ipv4, "self"])
    one.node.ip("route", "del", OVERLAY_V4, "table", "40000")
    assert not remote_fdb_entry(one, two)
    wait_for("the FDB entry back", lambda: remote_fdb_entry(one, two))
    wait_for("the overlay route back", lambda: overlay_route(one))
    after = wait_for(
        "the drift counted",
        lambda: (
            (n := one.metric("hybridnet_datapath_drift_corrected_total", node="node1"))
            >= before + 2
            and n
        ),
    )
    assert isinstance(after, float)
    assert one.metric("hybridnet_datapath_reconcile_seconds_count", node="node1") > 0


def test_a_daemon_restart_drops_no_packet_of_a_running_ping(
    fabric: testbed.Fabric, nodes: list[NodeDaemon]
) -> None:
    one, two = nodes
    pod_a, pod_b = fabric.add_pod("pa"), fabric.add_pod("pb")
    attach(one, pod_a)
    attach(two, pod_b)
    target = pod_addresses(one.store, pod_b.name)["4"]
    wait_for("pa -> pb", lambda: pings(pod_a, target))
    count = 120  # 6 s at 0.05 s: spans the whole stop and start below
    ping = subprocess.Popen(
        ["ip", "netns", "exec", pod_a.name, "ping", "-n", "-i", "0.05", "-c", str(count),
         "-W", "1", target],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        time.sleep(0.5)  # the ping is under way before the daemon stops (not a wait for state)
        one.stop()
        two.stop()
        one.start()
        two.start()
        output, _ = ping.communicate(timeout=60)
    finally:
        if ping.poll() is None:
            ping.kill()
            ping.wait()
    summary = re.search(r"(\d+) packets transmitted, (\d+) received", output)
    assert summary is not None, output
    assert summary.groups() == (str(count), str(count)), output
    # The restarted daemons found everything right and changed nothing (their counters
    # start at zero with the process).
    for daemon in (one, two):
        wait_for(
            f"{daemon.name}'s first reconcile after the restart",
            functools.partial(has_reconciled, daemon),
        )
        assert daemon.metric("hybridnet_datapath_operations_applied_total") == 0


def test_a_missing_vtep_interface_is_a_problem_and_overlay_adds_still_work(
    fabric_factory: Callable[[int], testbed.Fabric], tmp_path: Path
) -> None:
    fabric = fabric_factory(1)
    (node,) = fabric.nodes
    store = harness.embedded_store(tmp_path / "store.db", OVERLAY_V4)
    daemon = NodeDaemon(
        node,
        "lonely",
        tmp_path / "lonely",
        store,
        ("--vtep-interface", "eth9", "--ip-family", "IPv4"),
    )
    daemon.start()
    try:
        info = wait_for(
            "the problem on the NodeInfo",
            lambda: (i := stored_node_info(store, "lonely")) and i.status.problems and i,
        )
        assert isinstance(info, NodeInfo)
        assert [(p.code, p.subject) for p in info.status.problems] == [
            ("ParentInterfaceMissing", "link/eth9")
        ]
        assert info.spec.vtep_info is None
        assert VXLAN not in node.links() and "eth9.vxlan5" not in node.links()
        events = stored_events(store)
        assert [(e.body["reason"], e.body["involvedObject"]["name"]) for e in events] == [
            ("ParentInterfaceMissing", "lonely")
        ]
        pod = fabric.add_pod("pc")
        attachment = attach(daemon, pod)
        address = pod_addresses(store, pod.name)["4"]
        assert pings(node, address)  # the node reaches its own pod
        with pytest.raises(CniPluginError) as checked:  # CHECK says what the node lacks
            daemon.cni().check(attachment)
        assert "node datapath: ParentInterfaceMissing link/eth9" in checked.value.details
    finally:
        daemon.stop()


def test_an_underlay_add_on_a_node_the_network_does_not_attach_is_refused(
    fabric_factory: Callable[[int], testbed.Fabric], tmp_path: Path
) -> None:
    """CNI code 101 (hybridnet's NETWORK_NOT_ON_NODE), before anything is allocated or built."""
    fabric = fabric_factory(1)
    (node,) = fabric.nodes
    path = tmp_path / "store.db"
    store = SQLiteStore(path)
    spec = NetworkSpec(type="Underlay", mode="VLAN", net_id=0, node_selector={"rack": "r9"})
    store.create(Network(ObjectMeta(name=harness.POD_NETWORK), spec))
    subnet = SubnetSpec(
        network=harness.POD_NETWORK, range=AddressRange(version="4", cidr=OVERLAY_V4)
    )
    store.create(Subnet(ObjectMeta(name="pods-v4"), subnet))
    store.close()
    flags = ("--ip-family", "IPv4", "--underlay-interface", "eth0")
    daemon = NodeDaemon(node, "elsewhere", tmp_path / "elsewhere", path, flags).start()
    try:
        pod = fabric.add_pod("pu")
        links_before = node.links()
        with pytest.raises(CniPluginError) as refused:
            attach(daemon, pod)
        assert refused.value.code == 101
        assert "underlay network pods does not attach node elsewhere" in refused.value.msg
        assert pod.links() == ["lo"] and node.links() == links_before
        assert pod_addresses(path, pod.name) == {}
    finally:
        daemon.stop()


def underlay_store(path: Path) -> Path:
    """Network ``pods`` as an underlay on the fabric itself (VLAN 0) for the nodes of rack r1
    (node ``u1``'s Node object says it is there), two addresses of the fabric's subnet."""
    store = SQLiteStore(path)
    store.create(Node(ObjectMeta(name="u1", labels={"rack": "r1"})))
    spec = NetworkSpec(type="Underlay", mode="VLAN", net_id=0, node_selector={"rack": "r1"})
    store.create(Network(ObjectMeta(name=harness.POD_NETWORK), spec))
    fabric_range = AddressRange(
        version="4", cidr="198.18.0.0/24", gateway="198.18.0.1",
        start="198.18.0.100", end="198.18.0.101",
    )  # fmt: skip
    subnet = SubnetSpec(network=harness.POD_NETWORK, range=fabric_range)
    store.create(Subnet(ObjectMeta(name="fabric-v4"), subnet))
    store.close()
    return path


@pytest.fixture
def underlay_node(
    fabric_factory: Callable[[int], testbed.Fabric], tmp_path: Path
) -> Iterator[tuple[testbed.Fabric, NodeDaemon]]:
    fabric = fabric_factory(1)
    store = underlay_store(tmp_path / "store.db")
    flags = ("--ip-family", "IPv4", "--underlay-interface", "eth0")
    daemon = NodeDaemon(fabric.nodes[0], "u1", tmp_path / "u1", store, flags).start()
    try:
        yield fabric, daemon
    finally:
        daemon.stop()


def test_an_underlay_pod_is_checked_attached_and_reaches_the_fabric_gateway(
    underlay_node: tuple[testbed.Fabric, NodeDaemon],
) -> None:
    fabric, daemon = underlay_node
    pod = fabric.add_pod("pu")
    attach(daemon, pod)
    assert pod_addresses(daemon.store, pod.name) == {"4": "198.18.0.100"}
    wait_for("pod -> fabric gateway", lambda: pings(pod, fabric.gateway_ipv4))
    # The gateway learned the pod's address from the announcement or the ping: at the node.
    neighbours = fabric.gateway.ip("neigh", "show", "198.18.0.100").stdout
    assert mac_of(daemon.node, "eth0") in neighbours


def test_an_underlay_address_held_by_another_host_fails_add_and_leaves_nothing(
    underlay_node: tuple[testbed.Fabric, NodeDaemon],
) -> None:
    fabric, daemon = underlay_node
    fabric.gateway.ip("addr", "add", "198.18.0.100/24", "dev", "eth0")  # a squatter
    pod = fabric.add_pod("pu")
    links_before = daemon.node.links()
    with pytest.raises(CniPluginError) as refused:
        attach(daemon, pod)
    assert refused.value.code == 102
    said = refused.value.msg
    assert "198.18.0.100 is already in use" in said and mac_of(fabric.gateway, "eth0") in said
    assert pod.links() == ["lo"] and daemon.node.links() == links_before
    assert pod_addresses(daemon.store, pod.name) == {}
    events = [
        e for e in stored_events_in(daemon.store, "default") if e.body["reason"] == "AddressInUse"
    ]
    assert [e.body["involvedObject"]["name"] for e in events] == [pod.name]


def annotated_pod(store: Path, name: str, annotations: dict[str, str]) -> None:
    """The Pod object the embedded daemon reads at ADD (here the test plays the API server)."""
    opened = SQLiteStore(store)
    try:
        opened.create(Pod(ObjectMeta(name=name, namespace="default", annotations=annotations)))
    finally:
        opened.close()


def test_one_embedded_daemon_serves_underlay_and_overlay_pods_by_their_annotations(
    fabric_factory: Callable[[int], testbed.Fabric], tmp_path: Path
) -> None:
    """The default network (--network) serves pods that choose nothing; a Pod object's
    annotations choose another, as the manager would; a bad annotation is refused by name."""
    fabric = fabric_factory(1)
    path = underlay_store(tmp_path / "store.db")  # the underlay network "pods" on rack r1
    opened = SQLiteStore(path)
    overlay = NetworkSpec(type="Overlay", mode="VXLAN", net_id=5)
    opened.create(Network(ObjectMeta(name="vx"), overlay))
    subnet = SubnetSpec(network="vx", range=AddressRange(version="4", cidr=OVERLAY_V4))
    opened.create(Subnet(ObjectMeta(name="vx-v4"), subnet))
    opened.close()
    flags = ("--ip-family", "IPv4", "--underlay-interface", "eth0")
    daemon = NodeDaemon(fabric.nodes[0], "u1", tmp_path / "u1", path, flags).start()
    try:
        plain, overlaid, named, broken = (fabric.add_pod(r) for r in ("pd", "po", "pn", "pb"))
        annotated_pod(path, overlaid.name, {constants.ANNOTATION_NETWORK_TYPE: "Overlay"})
        annotated_pod(path, named.name, {constants.ANNOTATION_SPECIFIED_NETWORK: "vx"})
        annotated_pod(path, broken.name, {constants.ANNOTATION_IP_FAMILY: "IPv5"})
        attach(daemon, plain)  # no Pod object: the daemon's --network, the underlay
        attach(daemon, overlaid)
        attach(daemon, named)
        assert pod_addresses(path, plain.name) == {"4": "198.18.0.100"}
        for pod in (overlaid, named):
            address = pod_addresses(path, pod.name)["4"]
            assert ipaddress.ip_address(address) in ipaddress.ip_network(OVERLAY_V4)
            assert pings(daemon.node, address)
        wait_for("underlay pod -> fabric gateway", lambda: pings(plain, fabric.gateway_ipv4))
        links_before = daemon.node.links()
        with pytest.raises(CniPluginError) as refused:
            attach(daemon, broken)
        assert refused.value.code == 103
        assert constants.ANNOTATION_IP_FAMILY in refused.value.msg
        assert broken.links() == ["lo"] and daemon.node.links() == links_before
        assert pod_addresses(path, broken.name) == {}
    finally:
        daemon.stop()


def test_check_reports_what_the_kernel_lacks_of_the_pods_network(
    fabric_factory: Callable[[int], testbed.Fabric], tmp_path: Path
) -> None:
    """CNI CHECK uses the reconciler's own diff: a route of the pod's table deleted behind
    the daemon's back is named (a resync an hour away cannot have put it back)."""
    fabric = fabric_factory(1)
    store = harness.embedded_store(tmp_path / "store.db", OVERLAY_V4)
    flags = ("--ip-family", "IPv4", "--resync-period", "3600")
    daemon = NodeDaemon(fabric.nodes[0], "n1", tmp_path / "n1", store, flags).start()
    try:
        pod = fabric.add_pod("pc")
        attachment = attach(daemon, pod)
        wait_for("the overlay route", lambda: overlay_route(daemon))
        daemon.cni().check(attachment)  # all there: CHECK passes
        daemon.node.ip("route", "del", OVERLAY_V4, "table", "40000")
        with pytest.raises(CniPluginError) as checked:
            daemon.cni().check(attachment)
        assert checked.value.code == 100
        assert f"node datapath would create route {OVERLAY_V4} dev {VXLAN}" in (
            checked.value.details
        )
    finally:
        daemon.stop()


def test_bad_node_input_is_reported_three_ways_and_the_rest_is_served(
    fabric_factory: Callable[[int], testbed.Fabric], tmp_path: Path
) -> None:
    """A VTEP address that is not the node's and a second underlay network claiming the node:
    both on the NodeInfo, as Events and in the log; no VXLAN device is half-built, and the
    oldest underlay network's pods are still attached."""
    fabric = fabric_factory(1)
    path = underlay_store(tmp_path / "store.db")  # underlay "pods" for rack r1
    # Created in the same second, the two are ordered by name: "pods" counts as the oldest.
    opened = SQLiteStore(path)
    second = NetworkSpec(type="Underlay", mode="VLAN", net_id=0, node_selector={"rack": "r1"})
    opened.create(Network(ObjectMeta(name="rack1-second"), second))
    opened.create(Network(ObjectMeta(name="vx"), NetworkSpec(type="Overlay", net_id=5)))
    subnet = SubnetSpec(network="vx", range=AddressRange(version="4", cidr=OVERLAY_V4))
    opened.create(Subnet(ObjectMeta(name="vx-v4"), subnet))
    opened.close()
    flags = ("--ip-family", "IPv4", "--underlay-interface", "eth0", "--vtep-address", "198.18.9.9")
    daemon = NodeDaemon(fabric.nodes[0], "u1", tmp_path / "u1", path, flags).start()
    try:
        expected = {
            ("UnderlayNetworkConflict", "network/pods"),  # the one it keeps
            ("VTEPAddressNotOnNode", "link/eth0"),
        }

        def problems() -> set[tuple[str, str]]:
            info = stored_node_info(path, "u1")
            found = {(p.code, p.subject) for p in info.status.problems} if info else set()
            return found if found >= expected else set()

        wait_for("both problems on the NodeInfo", problems)
        reasons = {e.body["reason"] for e in stored_events_in(path, "default")}
        assert {"UnderlayNetworkConflict", "VTEPAddressNotOnNode"} <= reasons
        assert VXLAN not in daemon.node.links()  # nothing of the overlay device was made
        pod = fabric.add_pod("pu")
        attach(daemon, pod)  # the oldest underlay network still serves
        assert pod_addresses(path, pod.name) == {"4": "198.18.0.100"}
        wait_for("pod -> fabric gateway", lambda: pings(pod, fabric.gateway_ipv4))
    finally:
        daemon.stop()
    assert daemon_log_problems(daemon) >= {"UnderlayNetworkConflict", "VTEPAddressNotOnNode"}


def daemon_log_problems(daemon: NodeDaemon) -> set[str]:
    """The codes of the daemon's ``datapath problem`` log lines (JSON lines on stderr)."""
    codes = set()
    assert daemon.last_output is not None
    for line in daemon.last_output.splitlines():
        if '"datapath problem"' in line:
            codes.add(json.loads(line[line.index("{") :])["code"])
    return codes


def link_mtu(namespace: testbed.Namespace, ifname: str) -> int:
    return int(json.loads(namespace.ip("-j", "link", "show", ifname).stdout)[0]["mtu"])


def test_an_overlay_pod_gets_the_vxlan_devices_mtu(
    fabric: testbed.Fabric, nodes: list[NodeDaemon]
) -> None:
    """Not the daemon's default 1500: every first full-size packet to a peer would come back
    as "fragmentation needed" from the pod's own node (and be lost where ICMP is filtered)."""
    one, two = nodes
    pod_a, pod_b = fabric.add_pod("pa"), fabric.add_pod("pb")
    attach(one, pod_a)
    attach(two, pod_b)
    vxlan_mtu = link_mtu(one.node, VXLAN)
    assert vxlan_mtu == link_mtu(one.node, "eth0") - 50
    assert link_mtu(pod_a, "eth0") == vxlan_mtu
    target = pod_addresses(one.store, pod_b.name)["4"]
    wait_for("pa -> pb", lambda: pings(pod_a, target))
    payload = str(vxlan_mtu - 28)  # a full-size packet, IPv4 and ICMP headers aside
    done = pod_a.exec(
        ["ping", "-n", "-c", "1", "-W", "5", "-M", "do", "-s", payload, target], check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr  # no "frag needed" on the way
