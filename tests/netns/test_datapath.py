"""The node datapath reconciler on the real kernel, inside node namespaces of the test bed.

The reconciler runs in-process, in a thread that has entered the node's namespace
(``ns.run_inside``, which checks it got there before anything runs). Kernel state is read
back with iproute2 and nft, independently of the reconciler's own netlink code. Pods are
attached with the daemon's attachment layer (tests/netns/attach_runner.py), as the daemon does.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from hybridnet import lab as testbed
from hybridnet.api.resources import IPInstance, NodeInfo
from hybridnet.daemon.datapath import observe, packetfilter
from hybridnet.daemon.datapath.config import NodeConfig
from hybridnet.daemon.datapath.desired import desired_state
from hybridnet.daemon.datapath.errors import LinkError, RouteError, SysctlError
from hybridnet.daemon.datapath.model import Kind, PacketFilter
from hybridnet.daemon.datapath.plan import Action, Plan, plan
from hybridnet.daemon.datapath.reconcile import Reconciler, ReconcileResult
from hybridnet.daemon.datapath.view import NodeView
from hybridnet.netlink import ns
from tests.unit.daemon.datapath.builders import node_info, overlay, pod_ip, subnet, underlay

pytestmark = pytest.mark.root

CONFIG = NodeConfig(vtep_interface="eth0", underlay_interface="eth0")
VX = "eth0.vxlan4"
OVERLAY_V4, OVERLAY_V6 = "198.19.0.0/24", "2001:db8:10::/64"
RUNNER = str(Path(__file__).with_name("attach_runner.py"))
FAKE_REMOTES = tuple(
    node_info(f"remote{i}", f"198.18.0.{50 + i}", f"52:54:00:00:05:{i:02x}") for i in range(3)
)


# --------------------------------------------------------------------------- helpers


def reconcile(
    node: testbed.Namespace, view: NodeView, config: NodeConfig = CONFIG
) -> ReconcileResult:
    return ns.run_inside(node.path, lambda: Reconciler(config).reconcile(view))


def pending(node: testbed.Namespace, view: NodeView, config: NodeConfig = CONFIG) -> Plan:
    """What a reconcile would do now: observe, desired, plan, without applying."""

    def work() -> Plan:
        snapshot = observe.snapshot(config)
        desired = desired_state(view, config, snapshot.host)
        return plan(desired.objects, snapshot.objects + observe.sysctls(desired.objects))

    return ns.run_inside(node.path, work)


def mac_of(namespace: testbed.Namespace, ifname: str) -> str:
    return str(json.loads(namespace.ip("-j", "link", "show", ifname).stdout)[0]["address"])


def info_of(node: testbed.Node) -> NodeInfo:
    return node_info(node.name, node.ipv4, mac_of(node, "eth0"))


def overlay_view(
    node: testbed.Node,
    infos: tuple[NodeInfo, ...],
    pods: tuple[IPInstance, ...] = (),
    **kwargs: Any,
) -> NodeView:
    kwargs.setdefault("networks", (overlay(),))
    kwargs.setdefault(
        "subnets",
        (subnet("ov4", "overlay", OVERLAY_V4, nat=True), subnet("ov6", "overlay", OVERLAY_V6)),
    )
    return NodeView(node_name=node.name, node_infos=infos, local_ips=pods, **kwargs)


def attach(node: testbed.Namespace, pod: testbed.Namespace, cidrs: list[str], mac: str) -> None:
    request = {
        "op": "attach",
        "container_id": pod.name,
        "netns": pod.path,
        "ifname": "eth0",
        "mac": mac,
        "mtu": 1400,
        "cidrs": cidrs,
    }
    done = node.exec([sys.executable, RUNNER], input_text=json.dumps(request), timeout=30)
    reply = json.loads(done.stdout)
    assert "error" not in reply, reply


def wait_for_ipv6_link_local(namespace: testbed.Namespace, ifname: str) -> None:
    """The kernel sends no neighbour solicitation from a link until its link-local address
    has passed duplicate address detection (about a second after the link comes up)."""
    deadline = time.monotonic() + 15  # DAD takes 1 s by default; 15 s is slack for a busy host
    while time.monotonic() < deadline:
        shown = namespace.ip("-6", "addr", "show", "dev", ifname, "scope", "link").stdout
        if "inet6 fe80" in shown and "tentative" not in shown:
            return
        time.sleep(0.05)
    raise AssertionError(f"{ifname} in {namespace.name} still has no usable link-local address")


def lines(namespace: testbed.Namespace, *args: str) -> list[str]:
    return [line.strip() for line in namespace.ip(*args).stdout.splitlines() if line.strip()]


def bridge(namespace: testbed.Namespace, *args: str) -> str:
    return namespace.exec(["bridge", *args]).stdout


def nft_table(namespace: testbed.Namespace, name: str = "hybridnet") -> str:
    return namespace.exec(["nft", "list", "table", "inet", name]).stdout


def nft_handle(namespace: testbed.Namespace) -> int:
    listing = json.loads(namespace.exec(["nft", "-j", "list", "table", "inet", "hybridnet"]).stdout)
    (table,) = [item["table"] for item in listing["nftables"] if "table" in item]
    return int(table["handle"])


def operations(result: ReconcileResult) -> list[tuple[Action, str]]:
    return [(op.action, op.target.describe()) for op in result.plan.operations]


@pytest.fixture
def node(fabric: testbed.Fabric) -> testbed.Node:
    return fabric.nodes[0]


# --------------------------------------------------------------------------- from scratch


def test_from_scratch_the_kernel_holds_exactly_what_is_desired(node: testbed.Node) -> None:
    view = overlay_view(node, (info_of(node), *FAKE_REMOTES))
    first = reconcile(node, view)
    assert first.failures == ()
    assert first.problems == ()
    assert not first.plan.empty
    assert pending(node, view).empty  # observe == desired
    assert reconcile(node, view).plan.empty

    # Read back with iproute2, independently of the reconciler's netlink code.
    device = json.loads(node.ip("-j", "-d", "link", "show", VX).stdout)[0]
    info = device["linkinfo"]["info_data"]
    assert (info["id"], info["local"], info["port"], info["learning"]) == (
        4,
        node.ipv4,
        8472,
        False,
    )
    assert device["mtu"] == 1450
    assert device["ifalias"] == "hybridnet-datapath:vxlan"
    assert device["address"] == mac_of(node, "eth0")
    fdb = bridge(node, "fdb", "show", "dev", VX)
    for remote in FAKE_REMOTES:
        vtep = remote.spec.vtep_info
        assert vtep is not None
        assert f"00:00:00:00:00:00 dst {vtep.ip} self permanent" in fdb
        assert f"{vtep.mac} dst {vtep.ip} self permanent" in fdb
    table = first.desired.subnet_tables["ov4"]
    assert f"20001:\tfrom {OVERLAY_V4} lookup {table} proto 104" in node.ip("rule").stdout
    assert "20000:\tfrom all lookup 40000 proto 104" in node.ip("rule").stdout
    assert (
        f"{OVERLAY_V4} dev {VX} proto 104 scope link src {node.ipv4}"
        in node.ip("route", "show", "table", "40000").stdout
    )
    assert (
        node.exec(
            ["sysctl", "-n", f"net.ipv4.conf.{VX.replace('.', '/')}.proxy_arp"]
        ).stdout.strip()
        == "0"  # answers come from the proxy entries alone
    )


def test_the_masquerade_table_is_what_desired_says(node: testbed.Node) -> None:
    view = overlay_view(node, (info_of(node), *FAKE_REMOTES))
    result = reconcile(node, view)
    (wanted,) = [o for o in result.desired.objects if isinstance(o, PacketFilter)]
    listed = json.loads(node.exec(["nft", "-j", "list", "table", "inet", "hybridnet"]).stdout)[
        "nftables"
    ]
    assert packetfilter.from_nft("inet", "hybridnet", listed) == wanted
    text = nft_table(node)
    rule = f'ip saddr @nat-v4 ip daddr != @subnets-v4 ip daddr != @nodes-v4 oifname != "{VX}"'
    assert f"{rule} masquerade" in text
    assert "type nat hook postrouting priority srcnat; policy accept;" in text


# --------------------------------------------------------------------------- healing


def test_each_deleted_object_is_restored_and_nothing_else_is_touched(node: testbed.Node) -> None:
    view = overlay_view(node, (info_of(node), *FAKE_REMOTES))
    assert reconcile(node, view).failures == ()
    remote = FAKE_REMOTES[1].spec.vtep_info
    assert remote is not None and remote.ip and remote.mac
    table = reconcile(node, view).desired.subnet_tables["ov4"]

    node.ip("route", "del", OVERLAY_V4, "table", "40000")
    node.ip("rule", "del", "pref", "20001", "from", OVERLAY_V4, "lookup", str(table))
    node.exec(["bridge", "fdb", "del", remote.mac, "dst", remote.ip, "dev", VX, "self"])
    node.ip("neigh", "del", remote.ip, "dev", VX)
    node.ip("route", "del", f"{remote.ip}/32", "table", str(table))

    result = reconcile(node, view)
    assert result.failures == ()
    assert sorted(operations(result)) == sorted(
        [
            (Action.CREATE, f"route {OVERLAY_V4} dev {VX} src {node.ipv4} table 40000"),
            (Action.CREATE, f"rule ipv4 pref 20001 from {OVERLAY_V4} lookup {table}"),
            (Action.CREATE, f"fdb {remote.mac} dst {remote.ip} dev {VX}"),
            (Action.CREATE, f"neighbour {remote.ip} lladdr {remote.mac} dev {VX}"),
            (Action.CREATE, f"route {remote.ip}/32 dev {VX} table {table}"),
        ]
    )
    assert pending(node, view).empty


def test_a_changed_sysctl_and_a_downed_device_are_put_back(node: testbed.Node) -> None:
    view = overlay_view(node, (info_of(node), *FAKE_REMOTES))
    reconcile(node, view)
    node.sysctl(f"net.ipv4.conf.{VX.replace('.', '/')}.proxy_arp", "1")
    node.ip("link", "set", VX, "down")  # the kernel drops the IPv4 routes through it
    result = reconcile(node, view)
    assert result.failures == ()
    counts = result.plan.counts()
    assert counts[(Kind.LINK, Action.UPDATE)] == 1
    assert counts[(Kind.SYSCTL, Action.UPDATE)] == 1
    assert (Kind.LINK, Action.CREATE) not in counts
    assert pending(node, view).empty


def test_a_vxlan_device_someone_changed_is_replaced_with_everything_on_it(
    node: testbed.Node,
) -> None:
    view = overlay_view(node, (info_of(node), *FAKE_REMOTES))
    reconcile(node, view)
    # nolearning -> learning cannot be undone in place: the device is rebuilt.
    node.ip("link", "set", VX, "type", "vxlan", "learning")
    result = reconcile(node, view)
    assert result.failures == ()
    assert (Action.DELETE, Kind.LINK) in {
        (op.action, op.target.kind) for op in result.plan.operations
    }
    assert pending(node, view).empty


# --------------------------------------------------------------------------- what is not ours


def test_foreign_routes_rules_links_neighbours_and_tables_are_untouched(node: testbed.Node) -> None:
    node.ip("route", "add", "10.99.0.0/16", "dev", "eth0", "table", "40000")  # in our table
    node.ip("route", "add", "10.98.0.0/16", "dev", "eth0", "table", "77")
    node.ip("rule", "add", "pref", "30000", "from", "10.99.0.0/16", "lookup", "77")
    node.ip(
        "neigh",
        "add",
        "198.18.0.200",
        "lladdr",
        "02:00:00:00:00:c8",
        "dev",
        "eth0",
        "nud",
        "permanent",
    )
    node.ip("link", "add", "fx0", "type", "veth", "peer", "name", "fx1")
    node.ip("link", "set", "fx0", "alias", "hybridnet:some-container/eth0")  # a pod host end's mark
    node.ip("link", "add", "vxlan99", "type", "vxlan", "id", "99", "dstport", "4789", "dev", "eth0")
    node.exec(["nft", "add", "table", "inet", "site"])
    node.exec(
        ["nft", "add", "chain", "inet", "site", "input", "{ type filter hook input priority 0 ; }"]
    )
    before = {
        "routes": lines(node, "route", "show", "table", "all"),
        "rules": lines(node, "rule"),
        "neigh": lines(node, "neigh", "show", "dev", "eth0", "nud", "permanent"),
        "links": sorted(node.links()),
        "site": nft_table(node, "site"),
    }

    view = overlay_view(node, (info_of(node), *FAKE_REMOTES))
    assert reconcile(node, view).failures == ()
    # Then take everything of ours away again: an empty view.
    result = reconcile(node, NodeView(node_name=node.name))
    assert result.failures == ()
    removed = {(op.target.kind, op.action) for op in result.plan.operations}
    # Routes, FDB and neighbour entries all live on the VXLAN device and go with it.
    assert removed == {
        (Kind.LINK, Action.DELETE),
        (Kind.RULE, Action.DELETE),
        (Kind.PACKET_FILTER, Action.DELETE),
    }
    assert VX not in node.links()
    assert node.exec(["nft", "list", "table", "inet", "hybridnet"], check=False).returncode != 0

    def ours(line: str) -> bool:
        # The kernel's own routes change as forwarding is switched on (IPv6 anycast routes).
        return "proto 104" in line or "lookup 39999" in line or "proto kernel" in line

    routes_now = lines(node, "route", "show", "table", "all")
    assert [r for r in routes_now if not ours(r)] == [r for r in before["routes"] if not ours(r)]
    assert [r for r in lines(node, "rule") if not ours(r)] == [
        r for r in before["rules"] if not ours(r)
    ]
    # (Tunnel traffic to the fake remotes leaves dynamic ARP entries; permanent ones are set.)
    assert lines(node, "neigh", "show", "dev", "eth0", "nud", "permanent") == before["neigh"]
    assert sorted(node.links()) == before["links"]
    assert nft_table(node, "site") == before["site"]
    assert "10.99.0.0/16 dev eth0" in node.ip("route", "show", "table", "40000").stdout


# --------------------------------------------------------------------------- one node changes


def test_a_change_of_one_remote_node_changes_only_its_objects(node: testbed.Node) -> None:
    infos = (info_of(node), *FAKE_REMOTES)
    reconcile(node, overlay_view(node, infos))
    fdb_before = bridge(node, "fdb", "show", "dev", VX)
    table_before = nft_handle(node)
    moved = node_info("remote1", "198.18.0.99", "52:54:00:00:05:01")
    after = overlay_view(node, (infos[0], infos[1], moved, infos[3]))
    result = reconcile(node, after)
    assert result.failures == ()
    assert pending(node, after).empty
    assert nft_handle(node) == table_before  # the node set's elements changed, not the table
    assert "198.18.0.99" in nft_table(node) and "198.18.0.51" not in nft_table(node)
    for action, description in operations(result):
        assert (
            "198.18.0.51" in description
            or "198.18.0.99" in description
            or (description == "nftables table inet hybridnet" and action is Action.UPDATE)
        ), description
    fdb_after = bridge(node, "fdb", "show", "dev", VX)
    for untouched in ("198.18.0.50", "198.18.0.52"):
        assert [e for e in fdb_before.splitlines() if untouched in e] == [
            e for e in fdb_after.splitlines() if untouched in e
        ]
    assert "dst 198.18.0.99" in fdb_after and "dst 198.18.0.51" not in fdb_after


# --------------------------------------------------------------------------- traffic


def test_vxlan_carries_pods_traffic_between_nodes_without_nat(fabric: testbed.Fabric) -> None:
    first, second = fabric.nodes
    infos = (info_of(first), info_of(second))
    pod1, pod2 = fabric.add_pod("pa"), fabric.add_pod("pb")
    attach(first, pod1, ["198.19.0.5/24", "2001:db8:10::5/64"], "02:00:00:00:00:05")
    attach(second, pod2, ["198.19.0.6/24", "2001:db8:10::6/64"], "02:00:00:00:00:06")
    for node, pod, host in ((first, "pa", 5), (second, "pb", 6)):
        ips = (
            pod_ip(pod, "ov4", f"198.19.0.{host}/24"),
            pod_ip(pod, "ov6", f"2001:db8:10::{host}/64"),
        )
        assert reconcile(node, overlay_view(node, infos, ips)).failures == ()
    for node in (first, second):
        wait_for_ipv6_link_local(node, VX)

    for target in ("198.19.0.6", "2001:db8:10::6"):
        assert testbed.ping(pod1, target), f"pod on node 1 cannot reach {target} on node 2"
    assert testbed.ping(first, "198.19.0.6"), "node 1 cannot reach the pod on node 2"
    assert testbed.ping(pod1, second.ipv4), "the pod cannot reach the other node"
    arrived = testbed.capture_source(
        second, VX, "icmp", lambda: testbed.ping(pod1, "198.19.0.6", count=2)
    )
    assert arrived.source == "198.19.0.5"  # through the VXLAN device, address unchanged
    to_node = testbed.capture_source(
        second, VX, "icmp", lambda: testbed.ping(pod1, second.ipv4, count=2)
    )
    assert to_node.source == "198.19.0.5"  # pod -> node: through the overlay, no NAT


def test_leaving_the_cluster_is_masqueraded_and_only_that(fabric: testbed.Fabric) -> None:
    first, second = fabric.nodes
    infos = (info_of(first), info_of(second))
    pod = fabric.add_pod("pn")
    attach(first, pod, ["198.19.0.7/24"], "02:00:00:00:00:07")
    ips = (pod_ip("pn", "ov4", "198.19.0.7/24"),)
    assert reconcile(first, overlay_view(first, infos, ips)).failures == ()
    assert reconcile(second, overlay_view(second, infos)).failures == ()

    outside = testbed.capture_source(
        fabric.gateway, "eth0", "icmp", lambda: testbed.ping(pod, fabric.gateway_ipv4, count=2)
    )
    assert outside.source == first.ipv4  # autoNatOutgoing: the node's address
    inside = testbed.capture_source(
        second, VX, "icmp", lambda: testbed.ping(pod, second.ipv4, count=2)
    )
    assert inside.source == "198.19.0.7"  # a node is inside the cluster: not masqueraded


# --------------------------------------------------------------------------- refusals


def test_a_device_that_fails_after_creation_is_removed_again(node: testbed.Node) -> None:
    """The kernel creates the VXLAN device but refuses to bring it up while another socket
    holds its UDP port: apply deletes the half-made device and reports it."""
    holder = node.spawn(
        [
            sys.executable,
            "-c",
            "import socket, time\n"
            "s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
            "s.bind(('0.0.0.0', 8472))\n"
            "print('ready', flush=True)\n"
            "time.sleep(600)\n",
        ]
    )
    holder.wait_for_line("^ready$")
    view = overlay_view(node, (info_of(node), *FAKE_REMOTES))
    result = reconcile(node, view)
    link_errors = [f for f in result.failures if isinstance(f, LinkError)]
    assert len(link_errors) == 1 and "Address already in use" in str(link_errors[0])
    assert VX not in node.links()
    assert all(VX in str(f) for f in result.failures)  # only what lives on it failed
    assert any(isinstance(f, RouteError) for f in result.failures)
    assert "20000:\tfrom all lookup 40000" in node.ip("rule").stdout  # the rest was applied

    holder.stop()
    node.processes.remove(holder)
    assert reconcile(node, view).failures == ()
    assert pending(node, view).empty


def test_a_vlan_the_kernel_refuses_leaves_no_device_and_names_it(node: testbed.Node) -> None:
    """Loopback cannot carry VLANs on any kernel (and this one has no 802.1Q at all)."""
    view = NodeView(
        node_name=node.name,
        node_labels={"rack": "a"},
        networks=(underlay(vlan=100),),
        subnets=(subnet("u", "underlay", "198.19.8.0/24", gateway="198.19.8.1"),),
    )
    result = reconcile(node, view, NodeConfig(underlay_interface="lo"))
    (link_error,) = [f for f in result.failures if isinstance(f, LinkError)]
    assert link_error.subject == "vlan lo.100 (id 100 on lo)"
    assert link_error.errno == 95  # EOPNOTSUPP
    assert "lo.100" not in node.links()
    # What lives on the link (its routes, its sysctls) fails with it, naming it; nothing else.
    assert {type(f) for f in result.failures} == {LinkError, RouteError, SysctlError}
    assert all("lo.100" in str(f) for f in result.failures)


def test_bad_input_is_reported_and_configures_nothing_of_it(node: testbed.Node) -> None:
    view = overlay_view(node, (info_of(node),))
    missing = reconcile(node, view, NodeConfig(vtep_interface="eth9"))
    wrong = reconcile(node, view, NodeConfig(vtep_interface="eth0", vtep_address="198.18.0.250"))
    assert [p.code.value for p in missing.problems] == ["ParentInterfaceMissing"]
    assert [p.code.value for p in wrong.problems] == ["VTEPAddressNotOnNode"]
    for result in (missing, wrong):
        assert result.failures == ()
        assert {op.target.kind for op in result.plan.operations} <= {Kind.SYSCTL, Kind.RULE}
    assert not [name for name in node.links() if "vxlan" in name]
