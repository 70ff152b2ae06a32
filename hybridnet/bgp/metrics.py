"""The speaker's Prometheus metrics, on the registry of the component that runs it."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from hybridnet.bgp.model import SessionState
from hybridnet.metrics import LATENCY_BUCKETS


class SpeakerMetrics:
    def __init__(self, registry: CollectorRegistry):
        self.session_state = Gauge(
            "hybridnet_bgp_session_state",
            "1 for the BGP session state each peer is in, 0 for the others (Stopped: no "
            "ExaBGP is running).",
            ["peer", "state"],
            registry=registry,
        )
        self.routes_announced = Gauge(
            "hybridnet_bgp_routes_announced",
            "Routes ExaBGP has acknowledged for each peer (it sends them whenever the "
            "session is Established).",
            ["peer"],
            registry=registry,
        )
        self.announce_latency = Histogram(
            "hybridnet_bgp_announce_latency_seconds",
            "Time from writing a command to ExaBGP to its acknowledgement, by kind "
            "(announce, withdraw, eor).",
            ["kind"],
            registry=registry,
            buckets=LATENCY_BUCKETS,
        )
        self.command_failures = Counter(
            "hybridnet_bgp_command_failures",
            "Commands ExaBGP answered with an error, by kind.",
            ["kind"],
            registry=registry,
        )
        self.restarts = Counter(
            "hybridnet_bgp_exabgp_restarts",
            "Times ExaBGP was started again after it exited.",
            registry=registry,
        )
        self.answer_timeouts = Counter(
            "hybridnet_bgp_exabgp_answer_timeouts",
            "Times ExaBGP left a command unanswered, or its commands unread, for the answer "
            "timeout; each time that ExaBGP is killed and a new one started (a restart).",
            registry=registry,
        )

    def set_state(self, peer: str, state: SessionState) -> None:
        for each in SessionState:
            self.session_state.labels(peer=peer, state=each.value).set(1 if each is state else 0)

    def set_routes(self, peer: str, count: int) -> None:
        self.routes_announced.labels(peer=peer).set(count)
