"""The test bed itself: the fabric carries traffic, teardown is complete, leftovers are swept."""

from __future__ import annotations

from collections.abc import Callable

from hybridnet import lab as testbed


def test_two_nodes_ping_across_the_fabric_over_ipv4_and_ipv6(fabric: testbed.Fabric) -> None:
    first, second = fabric.nodes
    assert testbed.ping(first, second.ipv4)
    assert testbed.ping(first, second.ipv6)
    assert testbed.ping(second, first.ipv4)
    assert testbed.ping(second, fabric.gateway_ipv6)


def test_unreachable_address_does_not_ping(fabric: testbed.Fabric) -> None:
    """The ping helper reports failure too, so the positive tests above mean something.

    A failure that proves absence by waiting would be worthless, but no wait decides this one:
    198.18.0.250 is on the fabric's segment and nobody holds it (the gateway is .1, the nodes
    .10 onwards), so no reply can come however long ping waited."""
    assert not testbed.ping(fabric.nodes[0], "198.18.0.250", count=1)


def test_tcp_echo_reports_the_source_the_server_saw(fabric: testbed.Fabric) -> None:
    first, second = fabric.nodes
    testbed.start_tcp_echo_server(second, "::", 7007)
    for destination, expected_source in ((second.ipv4, first.ipv4), (second.ipv6, first.ipv6)):
        reply = testbed.tcp_echo(first, destination, 7007, "hello")
        assert reply.payload == "hello"
        assert reply.seen_source.removeprefix("::ffff:") == expected_source


def test_capture_shows_the_source_address_on_the_wire(fabric: testbed.Fabric) -> None:
    first, second = fabric.nodes
    packet = testbed.capture_source(
        second, "eth0", "icmp", trigger=lambda: testbed.ping(first, second.ipv4, count=2)
    )
    assert (packet.source, packet.destination) == (first.ipv4, second.ipv4)


def test_traffic_between_nodes_is_routed_only_on_the_fabric(fabric: testbed.Fabric) -> None:
    """Nodes reach a third segment only through the gateway: proves the default routes."""
    pod_side = fabric.add_pod("lan")
    testbed.connect(fabric.gateway, "lan0", pod_side, "eth0")
    fabric.gateway.ip("addr", "add", "198.19.200.1/24", "dev", "lan0")
    pod_side.ip("addr", "add", "198.19.200.2/24", "dev", "eth0")
    pod_side.ip("route", "add", "default", "via", "198.19.200.1")
    assert testbed.ping(fabric.nodes[0], "198.19.200.2")


def test_pod_namespaces_start_with_only_loopback(fabric: testbed.Fabric) -> None:
    pod = fabric.add_pod()
    assert pod.links() == ["lo"]
    assert pod.path == f"/run/netns/{pod.name}"


def test_teardown_leaves_nothing_in_netns_list_or_root_links(
    fabric_factory: Callable[[int], testbed.Fabric], testbed_run: testbed.TestbedRun
) -> None:
    links_before = set(testbed.root_links())
    fabric = fabric_factory(3)
    fabric.add_pod()
    fabric.nodes[0].spawn(["sleep", "600"])
    names = [namespace.name for namespace in fabric.namespaces]
    assert set(names) <= set(testbed.list_namespaces())
    assert set(testbed.root_links()) == links_before, "the bed must not add root links"

    fabric.teardown()

    assert not set(names) & set(testbed.list_namespaces())
    assert set(testbed.root_links()) == links_before
    assert not [n for n in testbed.root_links() if n.startswith(testbed.PREFIX_ROOT)]


def test_leftovers_of_a_crashed_run_are_removed(testbed_run: testbed.TestbedRun) -> None:
    """A run that died (its lock is free) loses its namespaces; a live run keeps them."""
    crashed = testbed.TestbedRun()
    crashed_ns = testbed.create_namespace(crashed.name("node1"))
    crashed_ns.spawn(["sleep", "600"])
    # Simulate the crash: drop the lock without cleaning up, as a killed process would.
    assert crashed._lock is not None
    crashed._lock.close()
    crashed._lock = None
    alive_ns = testbed.create_namespace(testbed_run.unique("alive"))
    try:
        removed = testbed.remove_stale_runs()
        assert crashed_ns.name in removed
        assert crashed_ns.name not in testbed.list_namespaces()
        assert alive_ns.name in testbed.list_namespaces()
        assert not crashed.lock_path.exists()
    finally:
        alive_ns.delete()
        crashed_ns.delete()


def test_leftovers_are_what_dead_runs_left_not_what_live_runs_own(
    testbed_run: testbed.TestbedRun,
) -> None:
    """``make test`` ends by listing leftovers: another checkout's tests running meanwhile
    (their lock held) must not fail it, while a dead run's namespace must."""
    crashed = testbed.TestbedRun()
    crashed_ns = testbed.create_namespace(crashed.name("node1"))
    assert crashed._lock is not None
    crashed._lock.close()  # dies without cleaning up
    crashed._lock = None
    alive_ns = testbed.create_namespace(testbed_run.unique("alive"))
    try:
        found = testbed.leftovers()
        assert f"netns {crashed_ns.name}" in found
        assert f"netns {alive_ns.name}" not in found
    finally:
        alive_ns.delete()
        crashed_ns.delete()
        crashed.lock_path.unlink(missing_ok=True)
