"""The leader's BGP advertiser: keeps one ExaBGP speaker (hybridnet.bgp) telling the fabric
what bgp_plan computes from the caches, marks each pod address ``bgp-announced`` once its
route is out, and gives each BGP network's status its peers' session states.

One thread (the planner) does the work, woken by the caches' events and by the speaker's
changes (session states, acknowledgements); marks are written by a few worker threads, so
a burst of pods does not wait on one request at a time. A network or subnet change plans
everything again (the peers, then every pod); an IPInstance's change plans that address
again, a Node's change the addresses bound to it, so one pod costs the same among ten pods
or ten thousand. Events that cannot change the plan (a mark of ours arriving, a Node
heartbeat) only wake the announcement check.

* **Peers change** (a network's peer list or settings, a network added or removed): the
  speaker is replaced. Peers that go away get their routes withdrawn first (bounded); the
  old ExaBGP then stops with SIGTERM (graceful restart: the peers that stay keep the routes
  while the new ExaBGP connects, announces everything and sends End-of-RIB).
* **Standby**: a replica waiting for leadership (``stand_by``) keeps a session with every
  peer and announces nothing (bgp_standby says why); ``start`` takes that speaker over, so
  the new leader's routes go out on sessions that are already Established.
* **Leader change**: the old leader's ExaBGP ends with it (its API relay loses the old
  process's socket and ExaBGP stops), the fabric keeps its routes for their graceful-restart
  time, and the new leader, once its caches are synced, announces the whole desired set on
  its own sessions. A peer keeps each session's routes apart (each source address), so the
  old leader's routes stay at the router, stale, beside the new leader's, until the replica
  that left them connects again from the same node (as a standby: End-of-RIB with nothing
  makes the peer drop them) or their restart time ends.
* **Router id** (ExaBGP's BGP identifier): ``--bgp-router-id``, else the IPv4 local address
  flag, else the address the kernel would use to reach the first IPv4 peer.
"""

from __future__ import annotations

import dataclasses
import datetime
import ipaddress
import logging
import socket
import threading
import time
from collections.abc import Callable, Container, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Protocol

from prometheus_client import CollectorRegistry, Gauge, Histogram
from prometheus_client.metrics_core import Metric

from hybridnet.api.builtin import Node
from hybridnet.api.resources import BGPPeerStatus, IPInstance, Network, Subnet
from hybridnet.bgp.errors import BGPError
from hybridnet.bgp.model import IPAddress, IPNetwork, Peer, PeerStatus, Route, SessionState
from hybridnet.bgp.speaker import ANSWER_TIMEOUT, Speaker
from hybridnet.ipamstore import ipinstances
from hybridnet.logs import fields
from hybridnet.manager import bgp_plan
from hybridnet.manager.bgp_handover import Successor
from hybridnet.manager.bgp_standby import PeerWatch
from hybridnet.manager.caches import ClusterCache
from hybridnet.manager.workqueue import WorkQueue
from hybridnet.metrics import LATENCY_BUCKETS, new_registry
from hybridnet.store.errors import Conflict, NotFound, StoreError, Unavailable
from hybridnet.store.interface import Store, WatchEvent

log = logging.getLogger(__name__)

WITHDRAW_SECONDS = 5.0
"""How long a replaced speaker may take to withdraw the routes of peers that went away."""
MARK_RETRY_SECONDS = 1.0
HANDOVER_POLL_SECONDS = 0.2
STATE_INVALID = "Invalid"


class SpeakerHandle(Protocol):
    """What the advertiser uses of hybridnet.bgp.speaker.Speaker (tests pass a stand-in)."""

    def start(self) -> None: ...

    def close(self) -> None: ...

    def set_routes(
        self, routes: Iterable[Route], peers: Iterable[str | IPAddress] | None = None
    ) -> None: ...

    def change_routes(
        self, changes: Mapping[IPNetwork, Route | None], peer: str | IPAddress
    ) -> None: ...

    def peer_states(self) -> dict[str, PeerStatus]: ...

    def announced(self, peer: str | IPAddress) -> frozenset[Route]: ...

    def acknowledged(self, peer: str | IPAddress) -> Container[Route]: ...

    def converged(self) -> bool: ...

    def wait_until(self, condition: Callable[[], bool], timeout: float) -> bool: ...

    def teardown(self, timeout: float) -> bool: ...


SpeakerFactory = Callable[
    [Sequence[Peer], IPAddress, CollectorRegistry, Callable[[], None]], SpeakerHandle
]


@dataclasses.dataclass(frozen=True)
class BGPSettings:
    """The manager's BGP flags."""

    router_id: IPAddress | None = None
    speaker: bgp_plan.SpeakerSettings = dataclasses.field(default_factory=bgp_plan.SpeakerSettings)
    workdir: Path | None = None
    """Where ExaBGP's configuration, environment file and API socket go (a private
    temporary directory per speaker when None)."""
    handover_seconds: float = 15.0
    """How long a stopping leader waits for the next one's routes (see bgp_handover)."""
    takeover_seconds: float = 6.0
    """How long it waits for anyone to take the Lease at all (a standby tries every retry
    period, jittered)."""
    answer_timeout: float = ANSWER_TIMEOUT
    """How long ExaBGP may leave commands unanswered before the speaker restarts it."""


def exabgp_speaker(workdir: Path | None, answer_timeout: float = ANSWER_TIMEOUT) -> SpeakerFactory:
    def make(
        peers: Sequence[Peer],
        router_id: IPAddress,
        registry: CollectorRegistry,
        on_change: Callable[[], None],
    ) -> SpeakerHandle:
        return Speaker(
            peers,
            router_id,
            workdir=workdir,
            registry=registry,
            on_change=on_change,
            answer_timeout=answer_timeout,
        )

    return make


def source_address_towards(address: IPAddress) -> IPAddress | None:
    """The local address the kernel picks to reach ``address`` (a UDP connect, which sends
    nothing); None without a route."""
    family = socket.AF_INET if address.version == 4 else socket.AF_INET6
    with socket.socket(family, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect((str(address), 179))
        except OSError:
            return None
        return ipaddress.ip_address(probe.getsockname()[0])


def rfc3339(timestamp: float) -> str:
    moment = datetime.datetime.fromtimestamp(timestamp, datetime.UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


class _CurrentSpeaker:
    """Serves the current speaker's metrics on the manager's registry: each speaker has a
    registry of its own (a replaced speaker's peers disappear with it)."""

    def __init__(self) -> None:
        self.registry: CollectorRegistry | None = None

    def describe(self) -> list[Metric]:
        return []

    def collect(self) -> Iterator[Metric]:
        registry = self.registry
        if registry is not None:
            yield from registry.collect()


def _instance_signature(instance: IPInstance) -> tuple[object, ...]:
    """What of an IPInstance the plan reads (not the mark, not the status)."""
    binding = instance.spec.binding
    return (
        instance.spec.network,
        instance.spec.address.ip,
        binding.node_name if binding else None,
        bool(instance.metadata.deletion_timestamp),
    )


def _spec_signature(resource: Network | Subnet) -> tuple[object, ...]:
    """What of a Network or Subnet the plan reads: its spec and age, not its status, which
    changes with every allocation and every peer entry we report (each status write would
    otherwise plan every pod again: a burst of 5,000 pods spent a quarter of the manager's
    CPU on that)."""
    return (dataclasses.astuple(resource.spec), resource.metadata.creation_timestamp)


def _node_signature(node: Node) -> tuple[object, ...]:
    addresses = tuple(str(a) for v in (4, 6) if (a := bgp_plan.internal_ip(node, v)) is not None)
    return (bgp_plan.node_ready(node), addresses, tuple(sorted(node.metadata.labels.items())))


class BGPAdvertiser:
    def __init__(
        self,
        store: Store,
        cache: ClusterCache,
        settings: BGPSettings,
        registry: CollectorRegistry,
        *,
        on_status: Callable[[str], None] | None = None,
        factory: SpeakerFactory | None = None,
        workers: int = 4,
    ):
        self.store = store
        self.cache = cache
        self.settings = settings
        self.ipam_namespace = cache.instances.informer.namespace or ""
        self.on_status: Callable[[str], None] = on_status or (lambda network: None)
        """Told the name of a network whose peer entries changed (the status writer)."""
        self.on_speaking: Callable[[], None] = lambda: None
        """Told once per leadership when ExaBGP holds every route and every session is
        Established (the Lease says so, for the leader before this one; bgp_handover)."""
        self._spoke = False
        self._factory = factory or exabgp_speaker(settings.workdir, settings.answer_timeout)
        self._workers = workers
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stopping = threading.Event()
        # What changed since the last round (guarded by the lock; events add to them).
        self._replan_all = True
        self._replan_instances: set[str] = set()
        self._replan_nodes: set[str] = set()
        # The plan, kept by the planner thread (read under the lock by the mark workers).
        self._net = bgp_plan.network_plan([], [], settings.speaker)
        self._table = bgp_plan.RouteTable()
        self._pods: dict[str, bgp_plan.PodRoute] = {}
        self._problems: dict[str, str] = {}
        self._on_node: dict[str, set[str]] = {}
        """Node -> the IPInstances bound to it (a node's change replans only those)."""
        self._node_of: dict[str, str] = {}
        self._speaker: SpeakerHandle | None = None
        self._speaker_peers: tuple[Peer, ...] = ()
        self._speaker_problem: str | None = None
        self._applied: dict[str, frozenset[Route] | None] = {}
        """Peer -> the whole set last given to the speaker (None: changed since, by parts)."""
        self._pending: set[str] = set()
        """IPInstances whose route is planned and whose mark does not say so yet."""
        self._seen_at: dict[str, float] = {}
        self._signatures: dict[str, tuple[object, ...]] = {}
        self._reported: dict[str, list[BGPPeerStatus]] = {}
        self._marks = WorkQueue()
        self._threads: list[threading.Thread] = []
        self._standby: PeerWatch | None = None
        self._leading = False
        """Set by start(): from then on the speaker gets the plan's routes."""

        self._current = _CurrentSpeaker()
        registry.register(self._current)
        self.announce_latency = Histogram(
            "hybridnet_manager_bgp_announce_seconds",
            "From the manager seeing a BGP pod's IPInstance to its route being announced "
            "(ExaBGP holds it for every peer, the sessions ADD waits for are Established).",
            registry=registry,
            buckets=LATENCY_BUCKETS,
        )
        self.routes_desired = Gauge(
            "hybridnet_manager_bgp_routes_desired",
            "Routes the manager wants each BGP peer to have.",
            ["peer"],
            registry=registry,
        )
        cache.networks.subscribe(self._changed)
        cache.subnets.subscribe(self._changed)
        cache.nodes.subscribe(self._node_event)
        cache.instances.subscribe(self._instance_event)

    # ----------------------------------------------------------------- lifecycle

    def stand_by(self) -> None:
        """Before leadership: sessions with every BGP network's peers, announcing nothing,
        kept to the networks as they change (see bgp_standby)."""
        watch = PeerWatch(
            self.store,
            self.settings.speaker,
            self._standby_peers,
            watch_timeout=self.cache.watch_timeout,
        )
        self._standby = watch
        watch.start()

    def start(self) -> None:
        """Plan from the synced caches and give the speaker the whole set (a standby's
        speaker, when its peers are still the ones planned; else a new ExaBGP, whose first
        End-of-RIB then follows every route), then serve changes."""
        if self._standby is not None:
            self._standby.stop_calling()
        self._leading = True
        self._round()
        planner = threading.Thread(target=self._run, name="bgp-planner", daemon=True)
        self._threads.append(planner)
        for index in range(self._workers):
            self._threads.append(
                threading.Thread(target=self._mark_work, name=f"bgp-mark-{index}", daemon=True)
            )
        for thread in self._threads:
            thread.start()

    def stop(
        self, timeout: float = 10.0, *, successor: Callable[[], Successor] | None = None
    ) -> None:
        """Stop the threads and ExaBGP (SIGTERM: the fabric keeps the routes for their
        graceful-restart time, for the next leader to take over). Also before start().

        With ``successor`` (a leader stopping on purpose) the routes are handed over first:
        kept until the next leader's are out, then withdrawn (bgp_handover); that wait has
        its own bound (the settings' handover_seconds)."""
        deadline = time.monotonic() + timeout
        self._stopping.set()
        self._wake.set()
        self._marks.close()
        if self._standby is not None:
            self._standby.stop_calling()  # its watch is joined with the caches' (join_watches)
        for thread in self._threads:
            thread.join(timeout=max(deadline - time.monotonic(), 0))
        with self._lock:
            speaker, self._speaker = self._speaker, None
        if speaker is None:
            return
        if successor is not None and self._leading:
            self._hand_over(speaker, successor)
        speaker.close()

    def _hand_over(self, speaker: SpeakerHandle, successor: Callable[[], Successor]) -> None:
        started = time.monotonic()
        while True:
            waited = time.monotonic() - started
            seen = successor()
            if seen.speaking:
                break
            if not seen.holder and waited >= self.settings.takeover_seconds:
                log.info(
                    "no replica took the Lease; the peers keep the routes for their "
                    "graceful-restart time",
                    extra=fields(waited_seconds=round(waited, 1)),
                )
                return
            if waited >= self.settings.handover_seconds:
                log.warning(
                    "the next leader's BGP routes are not out in time; the peers keep ours "
                    "for their graceful-restart time",
                    extra=fields(successor=seen.holder, waited_seconds=round(waited, 1)),
                )
                return
            time.sleep(HANDOVER_POLL_SECONDS)
        # Withdrawn first (the peers switch to the successor's paths), then the sessions
        # ended with a NOTIFICATION: ExaBGP acknowledges a withdrawal before the UPDATE is on
        # the wire, and a peer that only saw the connection close would keep what it had.
        speaker.set_routes([])
        try:
            withdrawn = speaker.wait_until(speaker.converged, WITHDRAW_SECONDS)
            ended = speaker.teardown(WITHDRAW_SECONDS)
        except BGPError as exc:  # ExaBGP hung: closing leaves the routes to graceful restart
            log.warning("BGP routes not handed over", extra=fields(error=str(exc)))
            return
        log.info(
            "BGP routes handed over",
            extra=fields(
                successor=seen.holder,
                withdrawn=withdrawn,
                sessions_ended=ended,
                seconds=round(time.monotonic() - started, 3),
            ),
        )

    def join_watches(self, timeout: float) -> None:
        """Wait for the standby's Network watch to end (asked to in stop()): call it with the
        caches' own join, so that the watches, all ending at their next event or timeout, are
        waited for once, not one after the other."""
        if self._standby is not None:
            self._standby.stop(timeout=timeout)

    def _standby_peers(self, peers: tuple[Peer, ...]) -> None:
        if peers != self._speaker_peers or (self._speaker is None and peers):
            self._replace_speaker(peers)

    # ----------------------------------------------------------------- reading

    def peer_statuses(self, network: str) -> list[BGPPeerStatus] | None:
        """The status entries of ``network``'s peers; None when it is no BGP network the
        advertiser has planned (its status is left as it is)."""
        with self._lock:
            entries = self._reported.get(network)
            return list(entries) if entries is not None else None

    # ----------------------------------------------------------------- events

    def _changed(self, event: WatchEvent[Network] | WatchEvent[Subnet]) -> None:
        resource = event.object
        key = f"{resource.KIND.plural}/{resource.name}"
        signature = None if event.type == "DELETED" else _spec_signature(resource)
        with self._lock:
            if signature is not None and self._signatures.get(key) == signature:
                return  # its status only (usage counts, our peer entries): the plan reads none
            if signature is None:
                self._signatures.pop(key, None)
            else:
                self._signatures[key] = signature
            self._replan_all = True
        self._wake.set()

    def _node_event(self, event: WatchEvent[Node]) -> None:
        node = event.object
        key = f"node/{node.name}"
        signature = None if event.type == "DELETED" else _node_signature(node)
        with self._lock:
            if self._signatures.get(key) == signature:
                return  # a heartbeat: nothing the plan reads changed
            if signature is None:
                self._signatures.pop(key, None)
            else:
                self._signatures[key] = signature
            self._replan_nodes.add(node.name)
        self._wake.set()

    def _instance_event(self, event: WatchEvent[IPInstance]) -> None:
        instance = event.object
        key = f"ipinstance/{instance.name}"
        deleted = event.type == "DELETED"
        signature = None if deleted else _instance_signature(instance)
        with self._lock:
            if deleted:
                self._seen_at.pop(instance.name, None)
            elif event.type == "ADDED" and self._advertised(instance):
                self._seen_at[instance.name] = time.monotonic()
            if self._signatures.get(key) != signature:
                if signature is None:
                    self._signatures.pop(key, None)
                else:
                    self._signatures[key] = signature
                self._replan_instances.add(instance.name)
            else:
                # Only its mark (or status) changed: is it still waiting for one?
                self._track(instance)
        self._wake.set()

    def _advertised(self, instance: IPInstance) -> bool:
        """A new address of a BGP or GlobalBGP network (its announcement is timed)."""
        network = self.cache.networks.get(instance.spec.network)
        bgp = network is not None and (bgp_plan.is_bgp(network) or bgp_plan.is_global_bgp(network))
        return bgp and ipinstances.bgp_announced_for(instance) is None

    def _track(self, instance: IPInstance) -> None:
        """Call with the lock held."""
        pod = self._pods.get(instance.name)
        if pod is not None and ipinstances.bgp_announced_for(instance) != pod.node:
            self._pending.add(instance.name)
        else:
            self._pending.discard(instance.name)

    # ----------------------------------------------------------------- the planner

    def _run(self) -> None:
        while not self._stopping.is_set():
            self._wake.wait()
            self._wake.clear()
            if self._stopping.is_set():
                return
            try:
                self._round()
            except Exception:
                log.exception("BGP planning failed")
                time.sleep(MARK_RETRY_SECONDS)
                with self._lock:
                    self._replan_all = True
                self._wake.set()

    def _round(self) -> None:
        with self._lock:
            everything, self._replan_all = self._replan_all, False
            instances, self._replan_instances = self._replan_instances, set()
            nodes, self._replan_nodes = self._replan_nodes, set()
        if everything:
            self._replan_everything()
        elif instances or nodes:
            for node in nodes:
                instances |= self._on_node.get(node, set())
            changed: set[tuple[str, IPNetwork]] = set()
            for name in sorted(instances):
                changed |= self._replan(name)
            self._push_changes(changed)
        self._check_announced()
        self._tell_speaking()
        self._report()

    def _replan_everything(self) -> None:
        """The start, or a network or subnet changed: the peers, then every pod again."""
        planned = bgp_plan.plan(
            self.cache.networks.items(),
            self.cache.subnets.items(),
            self.cache.instances.items(),
            self.cache.nodes.items(),
            self.settings.speaker,
        )
        self._problems = {}
        for problem in planned.problems:
            log.warning("BGP route left out", extra=fields(problem=problem))
        self._on_node, self._node_of = {}, {}
        for instance in self.cache.instances.items():
            self._index(instance.name, instance)
        with self._lock:
            self._net = planned.network
            self._table = bgp_plan.RouteTable(planned.routes)
            self._pods = dict(planned.pods)
        if planned.peers != self._speaker_peers or (self._speaker is None and planned.peers):
            self._replace_speaker(planned.peers)
        else:
            self._push({peer.name for peer in planned.peers})
        with self._lock:
            self._pending.clear()
            for name in self._pods:
                cached = self.cache.instances.get(name, self.ipam_namespace)
                if cached is not None:
                    self._track(cached)

    def _index(self, name: str, instance: IPInstance | None) -> None:
        before = self._node_of.pop(name, None)
        if before is not None:
            self._on_node.get(before, set()).discard(name)
        binding = instance.spec.binding if instance is not None else None
        if binding is not None and binding.node_name:
            self._node_of[name] = binding.node_name
            self._on_node.setdefault(binding.node_name, set()).add(name)

    def _replan(self, name: str) -> set[tuple[str, IPNetwork]]:
        """Plan one IPInstance again; the (peer, prefix) pairs it may have changed."""
        instance = self.cache.instances.get(name, self.ipam_namespace)
        self._index(name, instance)
        changed: set[tuple[str, IPNetwork]] = set()
        with self._lock:
            old = self._pods.pop(name, None)
            if old is not None:
                self._table.remove(old.peers, old.route)
                changed |= {(peer, old.route.prefix) for peer in old.peers}
        planned = (
            bgp_plan.pod_plan(instance, self._net, self.cache.nodes.get)
            if instance is not None
            else None
        )
        if isinstance(planned, str):
            if self._problems.get(name) != planned:
                log.warning("BGP route left out", extra=fields(problem=planned))
            self._problems[name] = planned
        else:
            self._problems.pop(name, None)
        with self._lock:
            if isinstance(planned, bgp_plan.PodRoute):
                clash = self._table.add(planned.peers, planned.route)
                if clash is None:
                    self._pods[name] = planned
                    changed |= {(peer, planned.route.prefix) for peer in planned.peers}
                else:
                    log.warning("BGP route left out", extra=fields(ipinstance=name, problem=clash))
            if instance is not None:
                self._track(instance)
            else:
                self._pending.discard(name)
        return changed

    def _push(self, peers: set[str]) -> None:
        """Tell the speaker the whole set of each of ``peers`` whose routes changed."""
        speaker = self._speaker
        for name in sorted(peers):
            with self._lock:
                routes = self._table.routes(name)
            if self._applied.get(name) == routes:
                continue
            self._applied[name] = routes
            self.routes_desired.labels(peer=name).set(len(routes))
            if speaker is not None:
                self._set_routes(speaker, name, routes)

    def _push_changes(self, changed: set[tuple[str, IPNetwork]]) -> None:
        """Tell the speaker only the prefixes that changed (the pods of this round): a
        round costs its own pods, not every route (a whole set of 5,000 per round kept the
        planner busy through a burst of pods)."""
        speaker = self._speaker
        by_peer: dict[str, dict[IPNetwork, Route | None]] = {}
        with self._lock:
            for peer, prefix in changed:
                by_peer.setdefault(peer, {})[prefix] = self._table.get(peer, prefix)
            counts = {peer: self._table.count(peer) for peer in by_peer}
        for peer, changes in sorted(by_peer.items()):
            self._applied[peer] = None  # the whole set was not compared: _push sends it next
            self.routes_desired.labels(peer=peer).set(counts[peer])
            if speaker is None:
                continue
            try:
                speaker.change_routes(changes, peer)
            except BGPError as exc:
                log.error("routes refused by the speaker", extra=fields(peer=peer, error=str(exc)))

    def _set_routes(self, speaker: SpeakerHandle, peer: str, routes: frozenset[Route]) -> None:
        try:
            speaker.set_routes(routes, [peer])
        except BGPError as exc:
            log.error("routes refused by the speaker", extra=fields(peer=peer, error=str(exc)))

    def _replace_speaker(self, peers: tuple[Peer, ...]) -> None:
        old = self._speaker
        if old is not None:
            staying = set(peers)
            gone = [p.name for p in self._speaker_peers if p not in staying]
            if gone:
                old.set_routes([], gone)
                try:
                    if not old.wait_until(old.converged, WITHDRAW_SECONDS):
                        log.warning("withdrawing from removed BGP peers did not finish in time",
                                    extra=fields(peers=gone))  # fmt: skip
                except BGPError as exc:  # ExaBGP hung: the new speaker is what matters now
                    log.warning("withdrawing from removed BGP peers failed",
                                extra=fields(peers=gone, error=str(exc)))  # fmt: skip
            with self._lock:
                self._speaker = None
            old.close()
            log.info("BGP speaker stopped for a new peer set", extra=fields(peers=gone))
        for name in self._applied.keys() - {p.name for p in peers}:
            self.routes_desired.remove(name)
        self._speaker_peers = peers
        self._applied = {}
        self._speaker_problem = None
        self._current.registry = None
        if not peers:
            return
        router_id = self._router_id(peers)
        if router_id is None:
            self._speaker_problem = (
                "no BGP router id: give the manager --bgp-router-id (or an IPv4 "
                "--bgp-local-address)"
            )
            log.error(self._speaker_problem)
            return
        registry = new_registry()
        try:
            speaker = self._factory(peers, router_id, registry, self._wake.set)
            with self._lock:
                wanted = {peer.name: self._table.routes(peer.name) for peer in peers}
            for name, routes in wanted.items():
                self._set_routes(speaker, name, routes)
                self._applied[name] = routes
                self.routes_desired.labels(peer=name).set(len(routes))
            speaker.start()
        except (OSError, BGPError) as exc:
            self._speaker_problem = f"the BGP speaker cannot start: {exc}"
            log.error("cannot start the BGP speaker", extra=fields(error=str(exc)))
            return
        self._current.registry = registry
        with self._lock:
            self._speaker = speaker
        log.info(
            "BGP speaker started",
            extra=fields(
                router_id=str(router_id),
                peers=[p.name for p in peers],
                role="leader" if self._leading else "standby",
            ),
        )

    def _router_id(self, peers: Sequence[Peer]) -> IPAddress | None:
        if self.settings.router_id is not None:
            return self.settings.router_id
        local = self.settings.speaker.local_addresses.get(4)
        if local is not None:
            return local
        for peer in peers:
            if peer.address.version == 4:
                found = source_address_towards(peer.address)
                if found is not None:
                    return found
        return None

    # ----------------------------------------------------------------- announced marks

    def _check_announced(self) -> None:
        speaker = self._speaker
        if speaker is None:
            return
        states = {name: status.state for name, status in speaker.peer_states().items()}
        acked = {peer.name: speaker.acknowledged(peer.name) for peer in self._speaker_peers}
        now = time.monotonic()
        ready = []
        with self._lock:
            for name in list(self._pending):
                pod = self._pods.get(name)
                if pod is None:
                    self._pending.discard(name)
                elif bgp_plan.announced(pod, states, acked):
                    self._pending.discard(name)
                    ready.append(name)
                    seen = self._seen_at.pop(name, None)  # once per address, not per try
                    if seen is not None:
                        self.announce_latency.observe(now - seen)
        for name in ready:
            self._marks.add(name)

    def _tell_speaking(self) -> None:
        speaker = self._speaker
        if self._spoke or speaker is None:
            return
        established = all(
            status.state is SessionState.ESTABLISHED for status in speaker.peer_states().values()
        )
        if established and speaker.converged():
            self._spoke = True
            log.info("BGP routes all out", extra=fields(peers=len(self._speaker_peers)))
            self.on_speaking()

    def _mark_work(self) -> None:
        while True:
            name = self._marks.get()
            if name is None:
                return
            try:
                self._mark(name)
            except Unavailable as exc:
                log.warning("store unavailable for a BGP mark, retrying",
                            extra=fields(ipinstance=name, error=str(exc)))  # fmt: skip
                self._marks.add_after(name, MARK_RETRY_SECONDS)
            except StoreError as exc:
                log.warning("BGP mark refused", extra=fields(ipinstance=name, error=str(exc)))
            except Exception:
                log.exception("BGP mark failed", extra=fields(ipinstance=name))
            finally:
                self._marks.done(name)

    def _mark(self, name: str) -> None:
        cached = self.cache.instances.get(name, self.ipam_namespace)
        with self._lock:
            pod = self._pods.get(name)
        if cached is None or pod is None or ipinstances.bgp_announced_for(cached) == pod.node:
            return
        annotations = {
            **cached.metadata.annotations,
            ipinstances.ANNOTATION_BGP_ANNOUNCED: pod.node,
        }
        marked = dataclasses.replace(
            cached, metadata=dataclasses.replace(cached.metadata, annotations=annotations)
        )
        try:
            self.store.update(marked)
        except (Conflict, NotFound):
            # Conflict: a newer version is on its way; its event tracks it again.
            return
        log.debug("BGP route announced", extra=fields(ipinstance=name, node=pod.node))

    # ----------------------------------------------------------------- status

    def _report(self) -> None:
        speaker = self._speaker
        states = speaker.peer_states() if speaker is not None else {}
        changed = []
        with self._lock:
            listings = self._net.listings
            for network, entries in listings.items():
                wanted = [self._entry(listing, states) for listing in entries]
                if self._reported.get(network) != wanted:
                    self._reported[network] = wanted
                    changed.append(network)
            for network in self._reported.keys() - listings.keys():
                del self._reported[network]
        for network in changed:
            self.on_status(network)

    def _entry(self, listing: bgp_plan.PeerListing, states: dict[str, PeerStatus]) -> BGPPeerStatus:
        if listing.peer is None:
            return BGPPeerStatus(listing.address, STATE_INVALID, message=listing.note)
        status = states.get(listing.peer)
        if status is None:
            note = self._speaker_problem or listing.note
            return BGPPeerStatus(listing.address, SessionState.STOPPED.value, message=note)
        return BGPPeerStatus(
            listing.address,
            status.state.value,
            last_transition_time=rfc3339(status.since),
            last_error=status.last_error,
            announced_routes=status.routes,
            message=listing.note,
        )
