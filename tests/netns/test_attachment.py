"""Pod attachments on the real kernel: pods on one node reach each other and the node over IPv4
and IPv6; detach removes everything; check reports drift; a failed attach leaves nothing."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest

from hybridnet import lab as testbed

RUNNER = str(Path(__file__).with_name("attach_runner.py"))
MTU = 1400


def run_in(node: testbed.Namespace, request: dict[str, Any]) -> Any:
    done = node.exec([sys.executable, RUNNER], input_text=json.dumps(request), timeout=30)
    reply = json.loads(done.stdout)
    if "error" in reply:
        raise AssertionError(reply["error"] + "\n" + reply["trace"])
    return reply["ok"]


def attach(node: testbed.Namespace, pod: testbed.Namespace, cidrs: list[str], mac: str) -> str:
    request = {
        "op": "attach",
        "container_id": pod.name,
        "netns": pod.path,
        "ifname": "eth0",
        "mac": mac,
        "mtu": MTU,
        "cidrs": cidrs,
    }
    return str(run_in(node, request))


@pytest.fixture
def node(fabric: testbed.Fabric) -> testbed.Node:
    first = fabric.nodes[0]
    first.sysctl("net.ipv4.ip_forward", "1")
    first.sysctl("net.ipv6.conf.all.forwarding", "1")
    return first


def test_pods_reach_each_other_and_the_node(fabric: testbed.Fabric, node: testbed.Node) -> None:
    a, b = fabric.add_pod("pa"), fabric.add_pod("pb")
    attach(node, a, ["198.19.40.5/24", "2001:db8:40::5/64"], "02:00:00:00:40:05")
    attach(node, b, ["198.19.40.6/24", "2001:db8:40::6/64"], "02:00:00:00:40:06")
    assert a.addresses("eth0") == ["198.19.40.5/24", "2001:db8:40::5/64"]
    for target in ("198.19.40.6", "2001:db8:40::6", node.ipv4, node.ipv6):
        assert testbed.ping(a, target), f"pod a cannot reach {target}"
    assert testbed.ping(node, "198.19.40.5")
    # The address arrives unchanged: no NAT on the node.
    packet = testbed.capture_source(
        b, "eth0", "icmp", lambda: testbed.ping(a, "198.19.40.6", count=2)
    )
    assert packet.source == "198.19.40.5"
    link = json.loads(a.ip("-j", "link", "show", "eth0").stdout)[0]
    assert (link["address"], link["mtu"]) == ("02:00:00:00:40:05", MTU)


def test_detach_removes_everything_and_tolerates_repeats(
    fabric: testbed.Fabric, node: testbed.Node
) -> None:
    pod = fabric.add_pod()
    host = attach(node, pod, ["198.19.41.5/24"], "02:00:00:00:41:05")
    assert host in node.links()
    assert "198.19.41.5" in node.ip("route", "show", "table", "39999").stdout
    assert run_in(node, {"op": "detach", "container_id": pod.name, "ifname": "eth0"}) is True
    assert host not in node.links()
    assert pod.links() == ["lo"]
    assert "198.19.41.5" not in node.ip("route", "show", "table", "39999").stdout
    assert run_in(node, {"op": "detach", "container_id": pod.name, "ifname": "eth0"}) is False


def test_detach_after_the_netns_is_gone(fabric: testbed.Fabric, node: testbed.Node) -> None:
    pod = fabric.add_pod()
    host = attach(node, pod, ["198.19.42.5/24"], "02:00:00:00:42:05")
    testbed.delete_namespace(pod.name)
    run_in(node, {"op": "detach", "container_id": pod.name, "ifname": "eth0"})
    assert host not in node.links()


def test_check_reports_what_drifted(fabric: testbed.Fabric, node: testbed.Node) -> None:
    pod = fabric.add_pod()
    request: dict[str, Any] = {
        "container_id": pod.name,
        "netns": pod.path,
        "ifname": "eth0",
        "mac": "02:00:00:00:43:05",
        "mtu": MTU,
        "cidrs": ["198.19.43.5/24"],
    }
    attach(node, pod, request["cidrs"], request["mac"])
    assert run_in(node, {"op": "check", **request}) == []
    pod.ip("route", "del", "default")
    node.ip("route", "del", "198.19.43.5/32", "table", "39999")
    problems = run_in(node, {"op": "check", **request})
    assert "pod IPv4 default route is missing" in problems
    assert any("route 198.19.43.5/32" in p for p in problems)


def test_a_failed_attach_leaves_nothing(fabric: testbed.Fabric, node: testbed.Node) -> None:
    pod = fabric.add_pod()
    links_before = node.links()
    with pytest.raises(AssertionError, match=r"NetlinkError|Invalid"):
        attach(node, pod, ["198.19.44.5/24"], "01:00:5e:00:00:01")  # multicast MAC: refused
    assert node.links() == links_before
    assert pod.links() == ["lo"]
    with pytest.raises(AssertionError, match="NetnsGone"):
        attach(node, testbed.Namespace("gone"), ["198.19.44.6/24"], "02:00:00:00:44:06")
    assert node.links() == links_before
