"""The leader's BGP advertiser (hybridnet.manager.bgp) on the embedded store, with a stand-in
speaker: what it is told, when a pod address is marked announced, what a BGP network's
status says, and how a new peer set replaces the speaker."""

from __future__ import annotations

import dataclasses
import ipaddress
import threading
from collections.abc import Callable, Container, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from hybridnet.api import constants as c
from hybridnet.api.builtin import Node
from hybridnet.api.meta import ObjectMeta
from hybridnet.api.resources import (
    BGPPeer,
    BGPPeerStatus,
    Binding,
    IPInstance,
    Network,
    NetworkConfig,
    NetworkSpec,
    Subnet,
)
from hybridnet.bgp.errors import ExaBGPUnresponsive
from hybridnet.bgp.model import (
    NO_EXPORT,
    IPAddress,
    IPNetwork,
    Peer,
    PeerStatus,
    Route,
    SessionState,
)
from hybridnet.ipamstore import ipinstances
from hybridnet.lab.manager import IPAM_NAMESPACE, Harness
from hybridnet.manager import bgp_plan
from hybridnet.manager.bgp import BGPAdvertiser, BGPSettings
from hybridnet.manager.bgp_handover import Successor
from hybridnet.manager.caches import ClusterCache
from hybridnet.metrics import new_registry
from hybridnet.store.sqlite import SQLiteStore
from tests.store_contract import wait_until

TOR, SPINE = "198.18.0.1", "198.18.0.2"
RACK = {"hybridnet.test/rack": "t"}


class FakeSpeaker:
    """Holds what it is told; ExaBGP acknowledges at once when ``acks`` is set; sessions
    are in whatever state the test sets; ``hung``: every wait ends in ExaBGPUnresponsive,
    as the real speaker's do when it gives up on an ExaBGP that stopped answering."""

    def __init__(
        self,
        peers: Sequence[Peer],
        router_id: IPAddress,
        registry: CollectorRegistry,
        on_change: Callable[[], None],
    ):
        self.peers = list(peers)
        self.router_id = router_id
        self.on_change = on_change
        self.desired: dict[str, frozenset[Route]] = {p.name: frozenset() for p in peers}
        self.states = {p.name: SessionState.ESTABLISHED for p in peers}
        self.acks = True
        self.hung = False
        self.started = self.closed = False
        self.withdrawn_before_close: dict[str, frozenset[Route]] = {}
        self.torn_down_with: dict[str, frozenset[Route]] | None = None
        """What the peers had when the sessions were ended with a NOTIFICATION (None: never)."""
        self.changes: list[tuple[str, dict[IPNetwork, Route | None]]] = []
        """Every change_routes call: the peer and the prefixes it was given."""
        self.lock = threading.Lock()

    def start(self) -> None:
        self.started = True

    def close(self) -> None:
        self.withdrawn_before_close = dict(self.desired)
        self.closed = True

    def teardown(self, timeout: float) -> bool:
        if self.hung:
            raise ExaBGPUnresponsive("ExaBGP answered no command for 30s")
        self.torn_down_with = dict(self.desired)
        return True

    def set_routes(
        self, routes: Iterable[Route], peers: Iterable[str | IPAddress] | None = None
    ) -> None:
        wanted = frozenset(routes)
        with self.lock:
            for name in [str(p) for p in peers] if peers is not None else list(self.desired):
                self.desired[name] = wanted
        self.on_change()

    def change_routes(
        self, changes: Mapping[IPNetwork, Route | None], peer: str | IPAddress
    ) -> None:
        with self.lock:
            self.changes.append((str(peer), dict(changes)))
            held = {route.prefix: route for route in self.desired[str(peer)]}
            for prefix, route in changes.items():
                if route is None:
                    held.pop(prefix, None)
                else:
                    held[prefix] = route
            self.desired[str(peer)] = frozenset(held.values())
        self.on_change()

    def peer_states(self) -> dict[str, PeerStatus]:
        with self.lock:
            return {
                name: PeerStatus(name, state, 1.0, None, len(self.announced(name)))
                for name, state in self.states.items()
            }

    def announced(self, peer: str | IPAddress) -> frozenset[Route]:
        return self.desired[str(peer)] if self.acks else frozenset()

    def acknowledged(self, peer: str | IPAddress) -> Container[Route]:
        return self.announced(peer)

    def converged(self) -> bool:
        return self.acks

    def wait_until(self, condition: Callable[[], bool], timeout: float) -> bool:
        if self.hung:
            raise ExaBGPUnresponsive("ExaBGP answered no command for 30s")
        return condition()

    def set_state(self, peer: str, state: SessionState) -> None:
        with self.lock:
            self.states[peer] = state
        self.on_change()

    def set_acks(self, acks: bool) -> None:
        self.acks = acks
        self.on_change()


class Bed:
    def __init__(self, tmp_path: Path):
        self.store = SQLiteStore(tmp_path / "store.db")
        self.harness = Harness(self.store, "t")
        self.harness.namespace(IPAM_NAMESPACE)
        self.speakers: list[FakeSpeaker] = []
        self.statuses: list[str] = []
        self.cache = ClusterCache(self.store, IPAM_NAMESPACE, watch_timeout=0.5)
        self.registry = new_registry()
        self.advertiser = BGPAdvertiser(
            self.store,
            self.cache,
            BGPSettings(router_id=ipaddress.IPv4Address("198.18.0.9")),
            self.registry,
            on_status=self.statuses.append,
            factory=self._speaker,
        )
        self._stop = threading.Event()

    def _speaker(
        self,
        peers: Sequence[Peer],
        router_id: IPAddress,
        registry: CollectorRegistry,
        on_change: Callable[[], None],
    ) -> FakeSpeaker:
        speaker = FakeSpeaker(peers, router_id, registry, on_change)
        self.speakers.append(speaker)
        return speaker

    @property
    def speaker(self) -> FakeSpeaker:
        return self.speakers[-1]

    def start(self) -> None:
        self.cache.start(self._stop)
        self.advertiser.start()

    def stop(self) -> None:
        self.advertiser.stop()
        self.cache.stop()
        self.store.close()

    def network(self, *peers: BGPPeer, name: str = "bgp") -> Network:
        spec = NetworkSpec(
            type=c.TYPE_UNDERLAY,
            mode=c.MODE_BGP,
            net_id=65010,
            node_selector=dict(RACK),
            config=NetworkConfig(bgp_peers=list(peers)),
        )
        return self.store.create(Network(ObjectMeta(name=name), spec))

    def node(self, name: str, address: str, ready: str = "True") -> None:
        self.harness.node(name, labels=dict(RACK))
        self.set_node(name, address, ready)

    def set_node(self, name: str, address: str, ready: str) -> None:
        node = self.store.get(Node, name)
        node.body["status"] = {
            "addresses": [{"type": "InternalIP", "address": address}],
            "conditions": [{"type": "Ready", "status": ready}],
        }
        self.store.update_status(node)

    def address(self, ip: str, node: str = "n1", network: str = "bgp") -> IPInstance:
        if not self._has_subnet(network):
            self.harness.subnet(f"s-{network}", network, "198.19.0.0/24")
        name = ipinstances.instance_name(ip)
        instance = IPInstance(
            ObjectMeta(
                name=name,
                namespace=IPAM_NAMESPACE,
                labels={c.LABEL_NODE: node, ipinstances.LABEL_POD_NAMESPACE: "apps"},
            ),
        )
        instance.spec.network = network
        instance.spec.subnet = f"s-{network}"
        instance.spec.address.ip = f"{ip}/24"
        instance.spec.address.mac = "02:00:00:00:00:01"
        instance.spec.binding = Binding(node_name=node, pod_name=f"pod-{name}")
        return self.store.create(instance)

    def _has_subnet(self, network: str) -> bool:
        return any(s.name == f"s-{network}" for s in self.store.list(Subnet).items)

    def marked(self, ip: str) -> str | None:
        stored = self.store.get(IPInstance, ipinstances.instance_name(ip), IPAM_NAMESPACE)
        return ipinstances.bgp_announced_for(stored)

    def entries(self, network: str = "bgp") -> list[tuple[str, str, int, str | None]]:
        found = self.advertiser.peer_statuses(network) or []
        return [(e.address, e.state, e.announced_routes, e.message) for e in found]


@pytest.fixture
def bed(tmp_path: Path) -> Iterator[Bed]:
    made = Bed(tmp_path)
    try:
        yield made
    finally:
        made.stop()


def pod(ip: str, hop: str) -> Route:
    return Route.of(f"{ip}/32", hop, {NO_EXPORT})


def test_routes_reach_the_speaker_and_the_address_is_marked_for_its_node(bed: Bed) -> None:
    bed.network(BGPPeer(address=TOR, asn=65000))
    bed.node("n1", "198.18.0.11")
    bed.start()
    assert bed.speaker.started and bed.speaker.router_id == ipaddress.ip_address("198.18.0.9")
    bed.address("198.19.0.5")
    wanted = {Route.of("198.19.0.0/24"), pod("198.19.0.5", "198.18.0.11")}
    wait_until(lambda: bed.speaker.desired[TOR] == wanted, "the pod's route at the speaker")
    wait_until(lambda: bed.marked("198.19.0.5") == "n1", "the address marked announced")
    assert bed.registry.get_sample_value("hybridnet_manager_bgp_announce_seconds_count") == 1
    labels = {"peer": TOR}
    assert bed.registry.get_sample_value("hybridnet_manager_bgp_routes_desired", labels) == 2
    wait_until(lambda: bed.entries() == [(TOR, "Established", 2, None)], "the peer's entry")
    assert "bgp" in bed.statuses


def judged(bed: Bed, peer: str, state: SessionState) -> None:
    """Change ``peer``'s state and wait for the round that reports it: that round judged every
    waiting address (and counted each it found announced) before it reported."""
    bed.speaker.set_state(peer, state)
    wait_until(lambda: (peer, state.value) in [e[:2] for e in bed.entries()], f"{peer} {state}")


def announced_count(bed: Bed) -> float | None:
    return bed.registry.get_sample_value("hybridnet_manager_bgp_announce_seconds_count")


def test_no_mark_while_a_required_peer_is_down_unless_it_allows_it(bed: Bed) -> None:
    bed.network(BGPPeer(address=TOR, asn=65000), BGPPeer(address=SPINE, asn=65000,
                                                         allow_not_established=True))  # fmt: skip
    bed.node("n1", "198.18.0.11")
    bed.start()
    judged(bed, TOR, SessionState.ACTIVE)
    bed.address("198.19.0.5")
    wait_until(
        lambda: pod("198.19.0.5", "198.18.0.11") in bed.speaker.desired[TOR], "route desired"
    )
    judged(bed, SPINE, SessionState.ACTIVE)  # allowed not to be established
    assert announced_count(bed) == 0
    assert bed.marked("198.19.0.5") is None
    judged(bed, TOR, SessionState.ESTABLISHED)
    assert announced_count(bed) == 1
    wait_until(lambda: bed.marked("198.19.0.5") == "n1", "marked once TOR is up")


def test_no_mark_until_exabgp_holds_the_route(bed: Bed) -> None:
    bed.network(BGPPeer(address=TOR, asn=65000, allow_not_established=True))
    bed.node("n1", "198.18.0.11")
    bed.start()
    bed.speaker.set_acks(False)
    bed.address("198.19.0.5")
    wait_until(
        lambda: pod("198.19.0.5", "198.18.0.11") in bed.speaker.desired[TOR], "route desired"
    )
    judged(bed, TOR, SessionState.CONNECT)  # allowed: only the acknowledgement counts
    assert announced_count(bed) == 0
    bed.speaker.set_acks(True)
    wait_until(lambda: bed.marked("198.19.0.5") == "n1", "marked once acknowledged")


def test_a_node_going_not_ready_withdraws_its_pods_and_back(bed: Bed) -> None:
    bed.network(BGPPeer(address=TOR, asn=65000))
    bed.node("n1", "198.18.0.11")
    bed.node("n2", "198.18.0.12")
    bed.start()
    bed.address("198.19.0.5", node="n1")
    bed.address("198.19.0.6", node="n2")
    both = {pod("198.19.0.5", "198.18.0.11"), pod("198.19.0.6", "198.18.0.12")}
    wait_until(lambda: both <= bed.speaker.desired[TOR], "both pods' routes")
    bed.set_node("n2", "198.18.0.12", "False")
    wait_until(
        lambda: pod("198.19.0.6", "198.18.0.12") not in bed.speaker.desired[TOR],
        "n2's pod withdrawn",
    )
    assert pod("198.19.0.5", "198.18.0.11") in bed.speaker.desired[TOR]
    bed.set_node("n2", "198.18.0.12", "True")
    wait_until(lambda: both <= bed.speaker.desired[TOR], "n2's pod back")
    assert len(bed.speakers) == 1  # routes change; the peers, and so the speaker, do not


def test_a_released_address_is_withdrawn(bed: Bed) -> None:
    bed.network(BGPPeer(address=TOR, asn=65000))
    bed.node("n1", "198.18.0.11")
    bed.start()
    instance = bed.address("198.19.0.5")
    wait_until(lambda: len(bed.speaker.desired[TOR]) == 2, "the pod's route")
    bed.store.delete(IPInstance, instance.name, IPAM_NAMESPACE)
    wait_until(lambda: bed.speaker.desired[TOR] == {Route.of("198.19.0.0/24")}, "withdrawn")


def test_a_new_peer_set_replaces_the_speaker_after_withdrawing_from_removed_peers(
    bed: Bed,
) -> None:
    network = bed.network(BGPPeer(address=TOR, asn=65000), BGPPeer(address=SPINE, asn=65000))
    bed.node("n1", "198.18.0.11")
    bed.start()
    first = bed.speaker
    bed.address("198.19.0.5")
    wait_until(lambda: len(first.desired[SPINE]) == 2, "routes at both peers")
    current = bed.store.get(Network, network.name)
    assert current.spec.config is not None
    current.spec.config.bgp_peers = [BGPPeer(address=TOR, asn=65000)]
    bed.store.update(current)
    wait_until(lambda: len(bed.speakers) == 2 and bed.speaker.started, "a new speaker")
    assert first.closed
    assert first.withdrawn_before_close[SPINE] == frozenset()  # withdrawn, then closed
    assert [p.name for p in bed.speaker.peers] == [TOR]
    assert len(bed.speaker.desired[TOR]) == 2  # the whole set, before it started


def test_a_speaker_whose_exabgp_hung_is_still_replaced_and_the_new_one_serves(
    bed: Bed,
) -> None:
    """Withdrawing from removed peers ends in ExaBGPUnresponsive: the advertiser logs it,
    closes the old speaker, and the new one gets the routes of the pods that come next."""
    network = bed.network(BGPPeer(address=TOR, asn=65000), BGPPeer(address=SPINE, asn=65000))
    bed.node("n1", "198.18.0.11")
    bed.start()
    first = bed.speaker
    bed.address("198.19.0.5")
    wait_until(lambda: len(first.desired[SPINE]) == 2, "routes at both peers")
    first.hung = True
    current = bed.store.get(Network, network.name)
    assert current.spec.config is not None
    current.spec.config.bgp_peers = [BGPPeer(address=TOR, asn=65000)]
    bed.store.update(current)
    wait_until(lambda: len(bed.speakers) == 2 and bed.speaker.started, "a new speaker")
    assert first.closed
    bed.address("198.19.0.6")
    wait_until(lambda: bed.marked("198.19.0.6") == "n1", "a pod after it announced and marked")
    assert pod("198.19.0.6", "198.18.0.11") in bed.speaker.desired[TOR]
    assert len(bed.speakers) == 2


def test_without_a_router_id_the_peers_say_so(tmp_path: Path) -> None:
    bed = Bed(tmp_path)
    bed.advertiser.settings = BGPSettings()  # no router id, no IPv4 local address
    try:
        bed.network(BGPPeer(address="2001:db8::1", asn=65000))
        bed.start()
        wait_until(lambda: bool(bed.entries()), "the entry")
        ((address, state, _, why),) = bed.entries()
        assert (address, state) == ("2001:db8::1", "Stopped")
        assert why is not None and "--bgp-router-id" in why
        assert not bed.speakers
    finally:
        bed.stop()


def test_a_standby_keeps_sessions_with_every_peer_and_announces_nothing(bed: Bed) -> None:
    network = bed.network(BGPPeer(address=TOR, asn=65000), BGPPeer(address=SPINE, asn=65000))
    bed.node("n1", "198.18.0.11")
    bed.address("198.19.0.5")
    bed.advertiser.stand_by()
    wait_until(lambda: bool(bed.speakers) and bed.speaker.started, "the standby's speaker")
    assert {p.name for p in bed.speaker.peers} == {TOR, SPINE}
    assert bed.speaker.desired == {TOR: frozenset(), SPINE: frozenset()}

    current = bed.store.get(Network, network.name)
    assert current.spec.config is not None
    current.spec.config.bgp_peers = [BGPPeer(address=TOR, asn=65000)]
    bed.store.update(current)
    wait_until(lambda: len(bed.speakers) == 2 and bed.speaker.started, "the standby following")
    assert bed.speakers[0].closed
    assert [p.name for p in bed.speaker.peers] == [TOR]
    assert bed.speaker.desired == {TOR: frozenset()}


def test_leadership_takes_the_standbys_speaker_over_as_it_is(bed: Bed) -> None:
    bed.network(BGPPeer(address=TOR, asn=65000))
    bed.node("n1", "198.18.0.11")
    bed.address("198.19.0.5")
    bed.advertiser.stand_by()
    wait_until(lambda: bool(bed.speakers) and bed.speaker.started, "the standby's speaker")
    standby = bed.speaker
    bed.start()
    wait_until(lambda: bed.marked("198.19.0.5") == "n1", "the address marked by the leader")
    assert bed.speakers == [standby]  # no second ExaBGP: the sessions stay up
    assert standby.desired[TOR] == {
        Route.of("198.19.0.0/24"),
        pod("198.19.0.5", "198.18.0.11"),
    }


def test_a_standby_that_never_leads_closes_its_speaker_at_stop(tmp_path: Path) -> None:
    bed = Bed(tmp_path)
    try:
        bed.network(BGPPeer(address=TOR, asn=65000))
        bed.advertiser.stand_by()
        wait_until(lambda: bool(bed.speakers) and bed.speaker.started, "the standby's speaker")
    finally:
        bed.stop()
    assert bed.speaker.closed


class ScriptedSuccessor:
    """What the Lease says of the next replica: each call the next answer, the last one
    repeated."""

    def __init__(self, *answers: Successor):
        self.answers = list(answers)
        self.calls = 0

    def __call__(self) -> Successor:
        self.calls += 1
        return self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]


def leading_with_a_route(bed: Bed) -> FakeSpeaker:
    bed.network(BGPPeer(address=TOR, asn=65000))
    bed.node("n1", "198.18.0.11")
    told: list[bool] = []
    bed.advertiser.on_speaking = lambda: told.append(True)
    bed.start()
    bed.address("198.19.0.5")
    wait_until(lambda: bed.marked("198.19.0.5") == "n1", "the route out")
    assert told == [True]  # told once, when ExaBGP held the whole set the first time
    return bed.speaker


def test_a_leader_stopping_on_purpose_withdraws_once_the_next_leader_speaks(bed: Bed) -> None:
    speaker = leading_with_a_route(bed)
    successor = ScriptedSuccessor(Successor("", False), Successor("b", False), Successor("b", True))
    bed.advertiser.stop(successor=successor)
    assert successor.calls == 3
    assert speaker.closed
    assert speaker.torn_down_with == {TOR: frozenset()}  # withdrawn, then the sessions ended
    assert speaker.withdrawn_before_close == {TOR: frozenset()}


def test_a_leader_whose_exabgp_hung_closes_at_handover_without_waiting(bed: Bed) -> None:
    speaker = leading_with_a_route(bed)
    speaker.hung = True
    bed.advertiser.stop(successor=ScriptedSuccessor(Successor("b", True)))
    assert speaker.closed
    assert speaker.torn_down_with is None  # the peers keep the routes for graceful restart


def test_without_a_successor_the_routes_stay_for_graceful_restart(bed: Bed) -> None:
    speaker = leading_with_a_route(bed)
    bed.advertiser.settings = dataclasses.replace(
        bed.advertiser.settings, takeover_seconds=0.3, handover_seconds=5.0
    )
    bed.advertiser.stop(successor=ScriptedSuccessor(Successor("", False)))
    assert speaker.closed
    assert speaker.torn_down_with is None  # graceful restart keeps them at the peers
    assert len(speaker.withdrawn_before_close[TOR]) == 2  # closed with its routes


def test_a_successor_that_never_speaks_gets_handover_seconds_then_the_routes_stay(
    bed: Bed,
) -> None:
    speaker = leading_with_a_route(bed)
    bed.advertiser.settings = dataclasses.replace(
        bed.advertiser.settings, takeover_seconds=0.1, handover_seconds=0.5
    )
    successor = ScriptedSuccessor(Successor("b", False))
    bed.advertiser.stop(successor=successor)
    assert successor.calls >= 2  # it kept looking past the takeover time: someone holds it
    assert len(speaker.withdrawn_before_close[TOR]) == 2


def test_a_standby_has_nothing_to_hand_over(tmp_path: Path) -> None:
    bed = Bed(tmp_path)
    successor = ScriptedSuccessor(Successor("b", True))
    try:
        bed.network(BGPPeer(address=TOR, asn=65000))
        bed.advertiser.stand_by()
        wait_until(lambda: bool(bed.speakers) and bed.speaker.started, "the standby's speaker")
        bed.advertiser.stop(successor=successor)
    finally:
        bed.stop()
    assert successor.calls == 0
    assert bed.speaker.closed


def test_status_writes_of_networks_and_subnets_do_not_plan_every_pod_again(
    bed: Bed, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The status writer updates a network's peer entries and a subnet's usage all through a
    burst of pods; only their specs are in the plan, so those writes must not replan every
    pod (the whole-set plan is counted)."""
    full_plans: list[int] = []
    whole = bgp_plan.plan

    def counted(*args: Any, **kwargs: Any) -> bgp_plan.Plan:
        full_plans.append(1)
        return whole(*args, **kwargs)

    monkeypatch.setattr(bgp_plan, "plan", counted)
    network = bed.network(BGPPeer(address=TOR, asn=65000))
    bed.node("n1", "198.18.0.11")
    bed.address("198.19.0.5")
    seen: list[str] = []
    # Subscribed after the advertiser: called after it, in the same dispatch thread.
    bed.cache.networks.subscribe(lambda event: seen.append(f"network {event.object.name}"))
    bed.cache.subnets.subscribe(lambda event: seen.append(f"subnet {event.object.name}"))
    bed.start()
    wait_until(lambda: bed.marked("198.19.0.5") == "n1", "the first pod marked")
    before = len(full_plans)

    stored = bed.store.get(Network, network.name)
    stored.status.bgp_peers = [BGPPeerStatus(TOR, "Established", announced_routes=2)]
    bed.store.update_status(stored)
    subnet = bed.store.get(Subnet, "s-bgp")
    subnet.status.used = 1
    bed.store.update_status(subnet)
    wait_until(lambda: seen.count("network bgp") >= 2 and seen.count("subnet s-bgp") >= 2,
               "both status changes delivered to the advertiser")  # fmt: skip
    # A replan flagged by them would be done by the round that plans this pod, at the latest.
    bed.address("198.19.0.6")
    wait_until(lambda: pod("198.19.0.6", "198.18.0.11") in bed.speaker.desired[TOR], "the pod")
    assert len(full_plans) == before

    stored = bed.store.get(Network, network.name)
    stored.spec.node_selector = {**RACK, "extra": "x"}
    bed.store.update(stored)
    wait_until(lambda: len(full_plans) > before, "a spec change plans everything again")


def test_a_pod_reaches_the_speaker_as_a_change_of_its_own_prefix(bed: Bed) -> None:
    """A round hands the speaker the prefixes its pods changed, not every route again (the
    whole set of every peer is compared only at the start and when networks change)."""
    bed.network(BGPPeer(address=TOR, asn=65000))
    bed.node("n1", "198.18.0.11")
    for host in (5, 6, 7):
        bed.address(f"198.19.0.{host}")
    bed.start()
    assert len(bed.speaker.desired[TOR]) == 4, "the subnet and three pods, from the start"
    bed.address("198.19.0.8")
    added = pod("198.19.0.8", "198.18.0.11")
    wait_until(lambda: added in bed.speaker.desired[TOR], "the new pod's route")
    assert bed.speaker.changes == [(TOR, {added.prefix: added})]
    bed.store.delete(IPInstance, ipinstances.instance_name("198.19.0.5"), IPAM_NAMESPACE)
    gone = pod("198.19.0.5", "198.18.0.11")
    wait_until(lambda: gone not in bed.speaker.desired[TOR], "the released pod's route gone")
    assert bed.speaker.changes[-1] == (TOR, {gone.prefix: None})
    labels = {"peer": TOR}
    assert bed.registry.get_sample_value("hybridnet_manager_bgp_routes_desired", labels) == 4
