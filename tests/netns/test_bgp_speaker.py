"""The BGP speaker against BIRD 2, the fabric's router, in namespaces of the lab.

ExaBGP runs in node 1's namespace (``ip netns exec``), as the speaker would run it in the
manager's; BIRD runs in the gateway namespace (and, for two peers, in a second router
namespace on the fabric), with its own configuration, control socket and PID file in the
test's directory. What arrives is read from BIRD (``birdc show route all``), never from the
speaker. Routes point at node 2 (a third-party next hop on the shared segment) or at the
speaker itself (``next-hop self``, for subnet routes). Every wait is for a state to be
reached, bounded generously; nothing is timed.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TypeVar

import pytest
from prometheus_client import CollectorRegistry

from hybridnet import lab as testbed
from hybridnet.bgp.errors import ExaBGPUnresponsive
from hybridnet.bgp.model import NO_EXPORT, Peer, Route, SessionState, pod_route
from hybridnet.bgp.speaker import Backoff, Speaker
from hybridnet.lab.bird import Bird, BirdNeighbor, BirdRoute
from hybridnet.metrics import new_registry

pytestmark = pytest.mark.root

FABRIC_ASN = 65000
LOCAL_ASN = 65010
BOUND = 30.0
"""Seconds any state may take to be reached; sessions come up in well under a second here,
so reaching this bound means the state is never coming."""
NO_EXPORT_PAIR = (65535, 65281)
# Test passwords; the first has what ExaBGP's tokeniser and BIRD's parser treat specially.
SECRET = "a s3cret, with #;{"  # noqa: S105
RIGHT_SECRET, WRONG_SECRET = "the right one", "a wrong one"

T = TypeVar("T")


def eventually(probe: Callable[[], T], what: str, timeout: float = BOUND) -> T:
    """Poll ``probe`` until it returns something truthy; fail naming ``what`` and the last
    value seen."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"not reached within {timeout}s: {what}; last seen: {value!r}")
        time.sleep(0.05)


# --------------------------------------------------------------------------- the bed


@dataclasses.dataclass
class Router:
    namespace: testbed.Namespace
    ipv4: str
    ipv6: str


@dataclasses.dataclass
class Bed:
    fabric: testbed.Fabric
    speaker_node: testbed.Node
    next_hop_node: testbed.Node
    gateway: Router
    directory: Path
    birds: list[Bird] = dataclasses.field(default_factory=list)
    speakers: list[Speaker] = dataclasses.field(default_factory=list)

    def second_router(self) -> Router:
        """Another router on the fabric (198.18.0.2, 2001:db8::2)."""
        namespace = self.fabric.add_pod("rtr")
        self.fabric.attach(namespace, "eth0")
        namespace.ip("addr", "add", "198.18.0.2/24", "dev", "eth0")
        namespace.ip("-6", "addr", "add", "2001:db8::2/64", "dev", "eth0", "nodad")
        return Router(namespace, "198.18.0.2", "2001:db8::2")

    def bird(
        self, router: Router, *neighbors: BirdNeighbor, local_address: str | None = None
    ) -> Bird:
        bird = Bird(
            router.namespace,
            self.directory / f"bird-{len(self.birds) + 1}",
            router_id=router.ipv4,
            asn=FABRIC_ASN,
            neighbors=neighbors,
            local_address=local_address,
        )
        self.birds.append(bird)
        bird.start()
        return bird

    def speaker(
        self, peers: Sequence[Peer], registry: CollectorRegistry | None = None, **options: object
    ) -> Speaker:
        speaker = Speaker(
            peers,
            self.speaker_node.ipv4,
            workdir=self.directory / f"speaker-{len(self.speakers) + 1}",
            registry=registry,
            run_prefix=["ip", "netns", "exec", self.speaker_node.name],
            **options,  # type: ignore[arg-type]
        )
        self.speakers.append(speaker)
        speaker.start()
        return speaker

    def neighbor(self, name: str = "hn", **options: object) -> BirdNeighbor:
        """The speaker as BIRD's neighbour over IPv4."""
        return BirdNeighbor(name, self.speaker_node.ipv4, LOCAL_ASN, **options)  # type: ignore[arg-type]


@pytest.fixture
def bed(fabric: testbed.Fabric, tmp_path: Path) -> Iterator[Bed]:
    gateway = Router(fabric.gateway, fabric.gateway_ipv4, fabric.gateway_ipv6)
    made = Bed(fabric, fabric.nodes[0], fabric.nodes[1], gateway, tmp_path)
    try:
        yield made
    finally:
        for speaker in made.speakers:
            speaker.close()
        for bird in made.birds:
            bird.stop()


def peer(address: str, **options: object) -> Peer:
    return Peer(ipaddress.ip_address(address), FABRIC_ASN, LOCAL_ASN, **options)  # type: ignore[arg-type]


def established(speaker: Speaker, address: str) -> bool:
    return speaker.peer_states()[address].state is SessionState.ESTABLISHED


def learned(bird: Bird, protocol: str = "hn") -> dict[str, tuple[str, frozenset[tuple[int, int]]]]:
    """BIRD's routes from ``protocol``: prefix -> (next hop, communities)."""
    found: dict[str, tuple[str, frozenset[tuple[int, int]]]] = {}
    for prefix, routes in bird.routes().items():
        ours: list[BirdRoute] = [route for route in routes if route.protocol == protocol]
        if ours:
            (route,) = ours
            found[prefix] = (route.next_hop, route.communities)
    return found


def expect(*entries: tuple[Route, str]) -> dict[str, tuple[str, frozenset[tuple[int, int]]]]:
    """What BIRD should hold for ``entries`` (route, the next hop BIRD should see)."""
    return {
        str(route.prefix): (hop, frozenset((c.asn, c.value) for c in route.communities))
        for route, hop in entries
    }


def wait_for_table(
    bird: Bird, wanted: dict[str, tuple[str, frozenset[tuple[int, int]]]], protocol: str = "hn"
) -> None:
    eventually(lambda: learned(bird, protocol) == wanted, f"BIRD's table is {wanted}")


# --------------------------------------------------------------------------- tests


def test_routes_arrive_with_exact_prefixes_next_hops_and_communities_then_leave(bed: Bed) -> None:
    """MD5 on both sides; a BGP pod's /32 (NO_EXPORT), a GlobalBGP pod's /32 (no
    community) and a subnet route (next-hop self) arrive as sent, and leave when no longer
    desired; the metrics say Established and count what ExaBGP acknowledged."""
    bird = bed.bird(bed.gateway, bed.neighbor(password=SECRET))
    registry = new_registry()
    speaker = bed.speaker([peer(bed.gateway.ipv4, password=SECRET)], registry)
    eventually(lambda: established(speaker, bed.gateway.ipv4), "the speaker's session is up")
    eventually(lambda: bird.protocol("hn").state == "Established", "BIRD's session is up")

    node2 = ipaddress.ip_address(bed.next_hop_node.ipv4)
    bgp_pod = pod_route(ipaddress.ip_address("198.19.0.5"), node2, no_export=True)
    global_pod = pod_route(ipaddress.ip_address("198.19.1.7"), node2, no_export=False)
    subnet = Route.of("198.19.0.0/24")
    speaker.set_routes({bgp_pod, global_pod, subnet})
    wait_for_table(
        bird,
        expect(
            (bgp_pod, bed.next_hop_node.ipv4),
            (global_pod, bed.next_hop_node.ipv4),
            (subnet, bed.speaker_node.ipv4),
        ),
    )
    assert learned(bird)["198.19.0.5/32"][1] == {NO_EXPORT_PAIR}
    eventually(speaker.converged, "ExaBGP acknowledged every route")
    labels = {"peer": bed.gateway.ipv4}
    assert registry.get_sample_value("hybridnet_bgp_routes_announced", labels) == 3
    assert (
        registry.get_sample_value("hybridnet_bgp_session_state", {**labels, "state": "Established"})
        == 1
    )
    assert registry.get_sample_value(
        "hybridnet_bgp_announce_latency_seconds_count", {"kind": "announce"}
    )

    speaker.set_routes({subnet})
    wait_for_table(bird, expect((subnet, bed.speaker_node.ipv4)))
    speaker.set_routes([])
    wait_for_table(bird, {})
    assert (
        registry.get_sample_value("hybridnet_bgp_command_failures_total", {"kind": "announce"})
        is None
    )


def test_two_peers_both_get_the_routes(bed: Bed) -> None:
    second = bed.second_router()
    first_bird = bed.bird(bed.gateway, bed.neighbor())
    second_bird = bed.bird(second, bed.neighbor())
    speaker = bed.speaker([peer(bed.gateway.ipv4), peer(second.ipv4)])
    node2 = ipaddress.ip_address(bed.next_hop_node.ipv4)
    routes = {
        pod_route(ipaddress.ip_address(f"198.19.0.{host}"), node2, no_export=True)
        for host in range(10, 20)
    }
    speaker.set_routes(routes)
    wanted = expect(*((route, bed.next_hop_node.ipv4) for route in routes))
    wait_for_table(first_bird, wanted)
    wait_for_table(second_bird, wanted)

    fewer = set(list(routes)[:3])
    speaker.set_routes(fewer, peers=[second.ipv4])
    wait_for_table(second_bird, expect(*((route, bed.next_hop_node.ipv4) for route in fewer)))
    assert learned(first_bird) == wanted


def test_kill_9_of_exabgp_restarts_it_and_the_routes_come_back(bed: Bed) -> None:
    """Without graceful restart, BIRD drops the routes when ExaBGP dies; the supervisor
    starts a new ExaBGP and announces them again."""
    bird = bed.bird(bed.gateway, bed.neighbor(graceful_restart=False))
    registry = new_registry()
    speaker = bed.speaker([peer(bed.gateway.ipv4, graceful_restart_seconds=0)], registry)
    route = pod_route(
        ipaddress.ip_address("198.19.0.5"),
        ipaddress.ip_address(bed.next_hop_node.ipv4),
        no_export=True,
    )
    speaker.set_routes({route})
    wanted = expect((route, bed.next_hop_node.ipv4))
    wait_for_table(bird, wanted)

    first_pid = speaker.exabgp_pid
    assert first_pid is not None
    os.kill(first_pid, signal.SIGKILL)
    eventually(lambda: bird.protocol("hn").state != "Established", "BIRD saw the session drop")
    eventually(lambda: learned(bird) == {}, "BIRD dropped the routes (no graceful restart)")
    eventually(
        lambda: speaker.exabgp_pid not in (None, first_pid), "the supervisor started ExaBGP again"
    )
    wait_for_table(bird, wanted)
    assert registry.get_sample_value("hybridnet_bgp_exabgp_restarts_total") == 1


def test_graceful_restart_keeps_routes_while_exabgp_is_down_then_they_are_refreshed(
    bed: Bed,
) -> None:
    """BIRD keeps the routes (stale) while ExaBGP is dead; the restarted ExaBGP announces the
    desired set and then End-of-RIB, so BIRD keeps what was announced again, drops the route
    that was no longer desired, and leaves its graceful-restart wait long before its timer."""
    bird = bed.bird(bed.gateway, bed.neighbor(graceful_restart=True))
    # A long first delay: the change made while ExaBGP is down lands before it is back.
    speaker = bed.speaker([peer(bed.gateway.ipv4)], backoff=Backoff(initial=3.0))
    node2 = ipaddress.ip_address(bed.next_hop_node.ipv4)
    kept = pod_route(ipaddress.ip_address("198.19.0.5"), node2, no_export=True)
    dropped = pod_route(ipaddress.ip_address("198.19.0.6"), node2, no_export=True)
    speaker.set_routes({kept, dropped})
    wait_for_table(bird, expect((kept, bed.next_hop_node.ipv4), (dropped, bed.next_hop_node.ipv4)))

    snapshots: list[dict[str, tuple[str, frozenset[tuple[int, int]]]]] = []
    watching = threading.Event()
    watching.set()

    def watch() -> None:
        while watching.is_set():
            snapshots.append(learned(bird))

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        first_pid = speaker.exabgp_pid
        assert first_pid is not None
        os.kill(first_pid, signal.SIGKILL)
        eventually(
            lambda: bird.protocol("hn").graceful_restart_active,
            "BIRD is in its graceful-restart wait",
        )
        assert learned(bird) == expect(
            (kept, bed.next_hop_node.ipv4), (dropped, bed.next_hop_node.ipv4)
        ), "BIRD keeps the stale routes while ExaBGP is down"
        eventually(
            lambda: speaker.peer_states()[bed.gateway.ipv4].state is SessionState.STOPPED,
            "the speaker noticed ExaBGP is gone",
        )
        speaker.set_routes({kept})
        eventually(
            lambda: (
                speaker.exabgp_pid not in (None, first_pid)
                and established(speaker, bed.gateway.ipv4)
            ),
            "a new ExaBGP has the session up",
        )
        eventually(
            lambda: not bird.protocol("hn").graceful_restart_active,
            "BIRD got End-of-RIB and left its graceful-restart wait",
        )
    finally:
        watching.clear()
        watcher.join()
    assert learned(bird) == expect((kept, bed.next_hop_node.ipv4))
    kept_entry = expect((kept, bed.next_hop_node.ipv4))[str(kept.prefix)]
    missing = [s for s in snapshots if s.get(str(kept.prefix)) != kept_entry]
    assert not missing, f"BIRD lost the kept route during the restart: {missing[:3]}"
    assert len(snapshots) > 1


def test_an_exabgp_that_stops_answering_is_replaced_and_bird_gets_the_whole_set_again(
    bed: Bed,
) -> None:
    """ExaBGP stopped (SIGSTOP of the process this test's speaker started): the change made
    then is never acknowledged. The caller waiting on it gets ExaBGPUnresponsive rather than
    waiting out its own bound; the speaker kills that ExaBGP and starts another, and BIRD,
    which kept the routes through its graceful-restart wait, ends with exactly the new set
    (the routes added while ExaBGP was stopped in, the removed ones flushed by End-of-RIB)."""
    bird = bed.bird(bed.gateway, bed.neighbor(graceful_restart=True))
    registry = new_registry()
    # 10 s: far beyond what ExaBGP takes to answer a 1,000-prefix command even on this
    # loaded machine, so only the stop reaches it.
    speaker = bed.speaker(
        [peer(bed.gateway.ipv4)], registry, backoff=Backoff(initial=0.05), answer_timeout=10.0
    )
    node2 = ipaddress.ip_address(bed.next_hop_node.ipv4)
    base = int(ipaddress.ip_address("198.19.0.0"))
    routes = [
        pod_route(ipaddress.ip_address(base + index), node2, no_export=True)
        for index in range(1200)
    ]
    before, after = set(routes[:1000]), set(routes[200:])
    speaker.set_routes(before)
    wait_for_table(bird, expect(*((route, bed.next_hop_node.ipv4) for route in before)))
    families = len(speaker.peers[bed.gateway.ipv4].families)
    eventually(
        lambda: (
            speaker.converged()
            and (registry.get_sample_value("hybridnet_bgp_announce_latency_seconds_count",
                                           {"kind": "eor"}) or 0) >= families
        ),
        "every route and End-of-RIB acknowledged: nothing in flight",
    )  # fmt: skip

    stopped = speaker.exabgp_pid
    assert stopped is not None
    os.kill(stopped, signal.SIGSTOP)
    speaker.set_routes(after)
    with pytest.raises(ExaBGPUnresponsive, match="answered no command for 10s"):
        speaker.wait_until(speaker.converged, 3 * BOUND)
    assert registry.get_sample_value("hybridnet_bgp_exabgp_answer_timeouts_total") == 1
    eventually(
        lambda: speaker.exabgp_pid not in (None, stopped), "the supervisor started ExaBGP again"
    )
    wanted = expect(*((route, bed.next_hop_node.ipv4) for route in after))
    eventually(
        lambda: not bird.protocol("hn").graceful_restart_active and learned(bird) == wanted,
        "BIRD got End-of-RIB from the new ExaBGP and holds exactly the new set",
    )
    assert speaker.wait_until(speaker.converged, BOUND), "the new ExaBGP acknowledged it all"
    assert registry.get_sample_value("hybridnet_bgp_exabgp_restarts_total") == 1
    assert registry.get_sample_value("hybridnet_bgp_exabgp_answer_timeouts_total") == 1


@pytest.mark.parametrize(
    ("peer_asn", "local_asn", "direction"),
    [
        pytest.param(FABRIC_ASN, 65099, "received", id="router-refuses-our-AS"),
        pytest.param(65001, LOCAL_ASN, "sent", id="we-refuse-the-routers-AS"),
    ],
)
def test_wrong_asn_is_a_peer_state_not_a_crash(
    bed: Bed, peer_asn: int, local_asn: int, direction: str
) -> None:
    """BIRD expects AS 65010 from the speaker and is AS 65000 itself; either side being
    told otherwise ends each attempt with a bad-peer-AS NOTIFICATION, which the speaker
    reports as the peer's last error while ExaBGP keeps running and trying."""
    bird = bed.bird(bed.gateway, bed.neighbor())
    speaker = bed.speaker(
        [Peer(ipaddress.ip_address(bed.gateway.ipv4), peer_asn, local_asn=local_asn)]
    )
    pid = speaker.exabgp_pid
    reason = f"notification {direction}: OPEN message error: bad peer AS (2/2)"
    eventually(
        lambda: speaker.peer_states()[bed.gateway.ipv4].last_error == reason,
        f"the speaker reports {reason!r} as the peer's last error",
    )
    assert not established(speaker, bed.gateway.ipv4)
    assert bird.protocol("hn").state != "Established"
    assert speaker.exabgp_pid == pid, "ExaBGP kept running"


def md5_failures(namespace: testbed.Namespace) -> int:
    """The kernel's count of TCP segments refused for a wrong MD5 signature, in the
    namespace (TcpExt: TCPMD5Failure)."""
    lines = namespace.exec(["cat", "/proc/net/netstat"]).stdout.splitlines()
    for names, values in zip(lines[::2], lines[1::2], strict=True):
        if names.startswith("TcpExt:"):
            table = dict(zip(names.split()[1:], values.split()[1:], strict=True))
            return int(table["TCPMD5Failure"])
    raise AssertionError("no TcpExt line in /proc/net/netstat")


def test_wrong_md5_password_is_a_peer_state_not_a_crash(bed: Bed) -> None:
    bird = bed.bird(bed.gateway, bed.neighbor(password=RIGHT_SECRET))
    before = md5_failures(bed.gateway.namespace)
    speaker = bed.speaker([peer(bed.gateway.ipv4, password=WRONG_SECRET)])
    pid = speaker.exabgp_pid
    eventually(
        lambda: md5_failures(bed.gateway.namespace) > before,
        "BIRD's kernel refused the speaker's connection for its MD5 signature",
    )
    # The kernel counts the refused segment before ExaBGP's next state report reaches the
    # speaker: wait for that report (any state from ExaBGP), then it must not be up.
    eventually(
        lambda: speaker.peer_states()[bed.gateway.ipv4].state is not SessionState.STOPPED,
        "ExaBGP reports the peer's session state",
    )
    state = speaker.peer_states()[bed.gateway.ipv4].state
    assert state is not SessionState.ESTABLISHED, state
    assert bird.protocol("hn").state != "Established"
    assert speaker.exabgp_pid == pid, "ExaBGP kept running"


def test_ipv6_session_carries_ipv6_routes_with_ipv6_next_hops(bed: Bed) -> None:
    neighbor = BirdNeighbor("hn6", bed.speaker_node.ipv6, LOCAL_ASN)
    bird = bed.bird(bed.gateway, neighbor, local_address=bed.gateway.ipv6)
    speaker = bed.speaker([peer(bed.gateway.ipv6)])
    eventually(lambda: established(speaker, bed.gateway.ipv6), "the IPv6 session is up")
    node2 = ipaddress.ip_address(bed.next_hop_node.ipv6)
    pod = pod_route(ipaddress.ip_address("2001:db8:50::5"), node2, no_export=True)
    subnet = Route.of("2001:db8:50::/64")
    speaker.set_routes({pod, subnet})
    wait_for_table(
        bird,
        expect((pod, bed.next_hop_node.ipv6), (subnet, bed.speaker_node.ipv6)),
        protocol="hn6",
    )
    assert learned(bird, "hn6")[str(pod.prefix)][1] == {NO_EXPORT_PAIR}
    assert NO_EXPORT in pod.communities
