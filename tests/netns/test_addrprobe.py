"""The underlay address check on the real kernel: a node namespace probes and announces on the
lab's fabric, whose gateway namespace is a Linux router answering ARP and NDP, and another
node namespace plays the host that already holds an address.

The check runs in the node's namespace the way the daemon runs it: the test starts a Python
process there (``ip netns exec``) that runs the requested probes and announcements, all at
once in threads of that one process, and prints what each returned or raised.
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any

import pytest

from hybridnet import lab as testbed

pytestmark = pytest.mark.root

RUNNER = """
import ctypes, ipaddress, json, os, sys, threading
from concurrent.futures import ThreadPoolExecutor
from hybridnet.daemon import addrprobe

requests = json.load(sys.stdin)
everyone_ready = threading.Barrier(len(requests))

def enter(path):
    fd = os.open(path, os.O_RDONLY)
    try:
        if ctypes.CDLL(None, use_errno=True).setns(fd, 0x40000000) != 0:
            raise OSError(ctypes.get_errno(), "setns " + path)
    finally:
        os.close(fd)

def run(request):
    address = ipaddress.ip_address(request["address"])
    everyone_ready.wait(timeout=30)  # one thread per request: one that entered a netns stays
    if "netns" in request:
        enter(request["netns"])
    try:
        if request["op"] == "announce":
            return {"ok": {"mac": addrprobe.announce(request["ifname"], address)}}
        gateway = request["gateway"] and ipaddress.ip_address(request["gateway"])
        result = addrprobe.probe(request["ifname"], address, gateway)
        return {"ok": {"mac": result.mac, "gateway_mac": result.gateway_mac,
                       "probes_sent": result.probes_sent}}
    except addrprobe.AddressCheckError as exc:
        return {"error": type(exc).__name__, "message": str(exc),
                "mac": getattr(exc, "mac", None)}

with ThreadPoolExecutor(max_workers=len(requests)) as pool:
    print(json.dumps(list(pool.map(run, requests))))
"""

GATEWAY = {4: "198.18.0.1", 6: "2001:db8::1"}
NOBODY = {4: "198.18.0.254", 6: "2001:db8::fe"}
"""On the fabric's subnets, held by no namespace: a gateway that is not there."""
FREE = {4: "198.18.0.100", 6: "2001:db8::100"}
PLANTED = {4: "198.18.0.200", 6: "2001:db8::200"}
FAMILIES = pytest.mark.parametrize("family", [4, 6], ids=["IPv4", "IPv6"])


def check(
    node: testbed.Namespace, requests: list[dict[str, Any]], prefix: tuple[str, ...] = ()
) -> list[dict[str, Any]]:
    """Run the requests at once in one process in ``node``; each answer is ``{"ok": ...}`` or
    ``{"error": <class>, "message": ..., "mac": ...}``."""
    done = node.exec(
        [*prefix, sys.executable, "-c", RUNNER], input_text=json.dumps(requests), timeout=60
    )
    answers: list[dict[str, Any]] = json.loads(done.stdout)
    return answers


def probe(
    node: testbed.Namespace, address: str, gateway: str | None, ifname: str = "eth0"
) -> dict[str, Any]:
    request = {"op": "probe", "ifname": ifname, "address": address, "gateway": gateway}
    return check(node, [request])[0]


def announce(node: testbed.Namespace, address: str) -> dict[str, Any]:
    return check(node, [{"op": "announce", "ifname": "eth0", "address": address}])[0]


def mac_of(namespace: testbed.Namespace, ifname: str = "eth0") -> str:
    return str(json.loads(namespace.ip("-j", "link", "show", ifname).stdout)[0]["address"])


def neighbour(namespace: testbed.Namespace, address: str) -> str | None:
    """The MAC in ``namespace``'s neighbour table for ``address`` on eth0, if any."""
    entries = json.loads(namespace.ip("-j", "neigh", "show", address, "dev", "eth0").stdout)
    return str(entries[0]["lladdr"]) if entries and "lladdr" in entries[0] else None


def wait_for_neighbour(namespace: testbed.Namespace, address: str, mac: str) -> None:
    """Until ``namespace`` maps ``address`` to ``mac``: the announcement crosses two veths and
    a bridge after the sender returned, so it lands a moment later."""
    deadline = time.monotonic() + 10
    while (seen := neighbour(namespace, address)) != mac:
        if time.monotonic() > deadline:
            pytest.fail(f"{namespace.name} maps {address} to {seen}, not {mac}, after 10 s")
        time.sleep(0.02)


@pytest.fixture
def holder(fabric: testbed.Fabric) -> testbed.Node:
    """The second node, holding the planted addresses on its eth0."""
    node = fabric.nodes[1]
    node.ip("addr", "add", f"{PLANTED[4]}/24", "dev", "eth0")
    node.ip("-6", "addr", "add", f"{PLANTED[6]}/64", "dev", "eth0", "nodad")
    return node


@FAMILIES
def test_free_address_with_a_live_gateway(fabric: testbed.Fabric, family: int) -> None:
    node = fabric.nodes[0]
    answer = probe(node, FREE[family], GATEWAY[family])
    assert answer == {
        "ok": {"mac": mac_of(node), "gateway_mac": mac_of(fabric.gateway), "probes_sent": 3}
    }
    # Asked in probe form, the gateway learned nothing about the address. Its answer came
    # after it had handled the first probe for the address (sent before the gateway request
    # on the same path), and every later probe is the same frame.
    assert neighbour(fabric.gateway, FREE[family]) is None


@FAMILIES
def test_no_gateway_to_check(fabric: testbed.Fabric, family: int) -> None:
    node = fabric.nodes[0]
    answer = probe(node, FREE[family], None)
    assert answer == {"ok": {"mac": mac_of(node), "gateway_mac": None, "probes_sent": 3}}


@FAMILIES
def test_planted_duplicate_is_in_use(
    fabric: testbed.Fabric, holder: testbed.Node, family: int
) -> None:
    answer = probe(fabric.nodes[0], PLANTED[family], GATEWAY[family])
    assert answer["error"] == "AddressInUse"
    assert answer["mac"] == mac_of(holder)
    assert (
        f"address {PLANTED[family]} is already in use on eth0: {mac_of(holder)}"
        in (answer["message"])
    )


@FAMILIES
def test_dead_gateway(fabric: testbed.Fabric, family: int) -> None:
    answer = probe(fabric.nodes[0], FREE[family], NOBODY[family])
    assert answer["error"] == "GatewayUnreachable"
    assert answer["message"].startswith(f"gateway {NOBODY[family]} does not answer on eth0: ")


@FAMILIES
def test_announcement_teaches_the_gateway(fabric: testbed.Fabric, family: int) -> None:
    """A gateway that takes unsolicited announcements (Linux: ``arp_accept``,
    ``accept_untracked_na``; off by default) gets a new entry from them."""
    gateway, node = fabric.gateway, fabric.nodes[0]
    if family == 4:
        gateway.sysctl("net.ipv4.conf.eth0.arp_accept", "1")
    else:
        gateway.sysctl("net.ipv6.conf.eth0.accept_untracked_na", "1")
    answer = announce(node, FREE[family])
    assert answer == {"ok": {"mac": mac_of(node)}}
    wait_for_neighbour(gateway, FREE[family], mac_of(node))


@FAMILIES
def test_announcement_replaces_a_stale_entry(fabric: testbed.Fabric, family: int) -> None:
    """The address was another MAC's (its pod moved): a gateway with default settings moves
    its entry to the announcer at once instead of sending there until the entry expires."""
    gateway, node = fabric.gateway, fabric.nodes[0]
    previous = "02:00:5e:00:53:01"
    gateway.ip("neigh", "replace", FREE[family], "lladdr", previous, "dev", "eth0", "nud", "stale")
    assert neighbour(gateway, FREE[family]) == previous
    assert announce(node, FREE[family]) == {"ok": {"mac": mac_of(node)}}
    wait_for_neighbour(gateway, FREE[family], mac_of(node))


@FAMILIES
def test_probe_from_a_thread_that_entered_another_namespace(
    fabric: testbed.Fabric, family: int
) -> None:
    """The process runs in the first node's namespace and imported scapy there; the probing
    thread entered the second node's first. Both have an ``eth0``, so a probe that found its
    interface anywhere but in the thread's namespace would come from the first node's MAC."""
    first, second = fabric.nodes
    request = {
        "op": "probe",
        "ifname": "eth0",
        "address": FREE[family],
        "gateway": GATEWAY[family],
        "netns": second.path,
    }
    [answer] = check(first, [request])
    assert mac_of(first) != mac_of(second)
    assert answer == {
        "ok": {"mac": mac_of(second), "gateway_mac": mac_of(fabric.gateway), "probes_sent": 3}
    }


def test_interface_that_does_not_exist(fabric: testbed.Fabric) -> None:
    for family in (4, 6):
        answer = probe(fabric.nodes[0], FREE[family], GATEWAY[family], ifname="nosuch0")
        assert answer["error"] == "ProbeFailed"
        assert answer["message"] == (
            "cannot check addresses on nosuch0: "
            "there is no such interface in this network namespace"
        )


def test_interface_that_is_down(fabric: testbed.Fabric) -> None:
    node = fabric.nodes[0]
    node.ip("link", "add", "down0", "type", "veth", "peer", "name", "down1")
    answer = probe(node, FREE[4], GATEWAY[4], ifname="down0")
    assert answer["error"] == "ProbeFailed"
    assert answer["message"] == "cannot check addresses on down0: the interface is down"


def test_interface_that_is_not_ethernet(fabric: testbed.Fabric) -> None:
    answer = probe(fabric.nodes[0], FREE[6], None, ifname="lo")
    assert answer["error"] == "ProbeFailed"
    assert answer["message"] == "cannot check addresses on lo: it is not an Ethernet interface"


def test_without_cap_net_raw(fabric: testbed.Fabric) -> None:
    """Root without CAP_NET_RAW (dropped from the bounding set, so the child never has it)."""
    request = {"op": "probe", "ifname": "eth0", "address": FREE[4], "gateway": GATEWAY[4]}
    [answer] = check(fabric.nodes[0], [request], ("setpriv", "--bounding-set", "-net_raw"))
    assert answer["error"] == "ProbeFailed"
    assert answer["message"] == (
        "cannot check addresses on eth0: packet sockets need CAP_NET_RAW "
        "(run the daemon privileged)"
    )


def test_twenty_probes_at_once(fabric: testbed.Fabric, holder: testbed.Node) -> None:
    """One process, twenty threads released together: each probe opens its own socket and
    sees every other's frames, and still answers only for its own address."""
    node = fabric.nodes[0]
    planted = [f"198.18.0.{200 + i}" for i in range(3)] + [f"2001:db8::{200 + i}" for i in range(3)]
    for address in planted[1:3]:
        holder.ip("addr", "add", f"{address}/24", "dev", "eth0")
    for address in planted[4:6]:
        holder.ip("-6", "addr", "add", f"{address}/64", "dev", "eth0", "nodad")
    free = [f"198.18.0.{100 + i}" for i in range(7)] + [f"2001:db8::{100 + i}" for i in range(7)]
    addresses = planted + free
    requests = [
        {"op": "probe", "ifname": "eth0", "address": a, "gateway": GATEWAY[6 if ":" in a else 4]}
        for a in addresses
    ]
    assert len(requests) == 20
    answers = dict(zip(addresses, check(node, requests), strict=True))
    for address in planted:
        assert answers[address]["error"] == "AddressInUse", address
        assert answers[address]["mac"] == mac_of(holder), address
        assert f"address {address} is already" in answers[address]["message"]
    free_answer = {"mac": mac_of(node), "gateway_mac": mac_of(fabric.gateway), "probes_sent": 3}
    for address in free:
        assert answers[address] == {"ok": free_answer}, address


LISTENER = """
import json, time
from hybridnet.daemon.addrprobe import link
with link.open_link("eth0", 0x86DD, link.NEIGHBOR_DISCOVERY_FILTER) as packets:
    print("ready", flush=True)
    types = []
    for frame in packets.receive_until(time.monotonic() + 30):
        types.append(frame[54])
        if frame[54] == 136:
            break
    print(json.dumps(types), flush=True)
"""


def test_the_ipv6_socket_sees_only_neighbor_discovery(fabric: testbed.Fabric) -> None:
    """Echo requests reach the node's eth0 before an advertisement does, on the same path, so
    a socket whose filter let them through would read them first."""
    node, other = fabric.nodes
    # Permanent entries: neither side solicits the other while the test runs.
    node.ip("-6", "neigh", "replace", other.ipv6, "lladdr", mac_of(other), "dev", "eth0")
    other.ip("-6", "neigh", "replace", node.ipv6, "lladdr", mac_of(node), "dev", "eth0")
    listener = node.spawn([sys.executable, "-c", LISTENER])
    listener.wait_for_line("^ready$")
    assert testbed.ping(other, node.ipv6, count=3)
    assert announce(other, FREE[6]) == {"ok": {"mac": mac_of(other)}}
    types = json.loads(listener.wait_for_line(r"^\[", timeout=30))
    # Solicitations from others (the gateway resolving a neighbour, say) may come too.
    assert types[-1] == 136
    assert set(types) <= {135, 136}, f"ICMPv6 types past the filter: {types}"
