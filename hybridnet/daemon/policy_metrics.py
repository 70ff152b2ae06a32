"""NetworkPolicy's Prometheus metrics: how long compiling took, how big the node's table is,
and what each isolated pod's chains dropped.

Drops are the table's named counters (one per pod chain, hybridnet.policy.render), read with
``nft list counters`` when /metrics is scraped, so they are as fresh as the scrape. They
count up for as long as the pod stays isolated; a counter starts again from zero when its
chain is created again (the pod was not isolated for a while, or the table was replaced
whole after a daemon restart), which Prometheus' ``rate()`` treats as a reset.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any

from prometheus_client import CollectorRegistry, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, Metric
from prometheus_client.registry import Collector

from hybridnet.daemon.datapath.policy_table import FAMILY, PolicyDesired
from hybridnet.logs import fields
from hybridnet.metrics import LATENCY_BUCKETS
from hybridnet.netlink import nftables
from hybridnet.policy.render import DropCounter, drop_counts

log = logging.getLogger(__name__)

CounterReader = Callable[[], Sequence[Mapping[str, Any]] | None]


class PolicyMetrics:
    def __init__(self, registry: CollectorRegistry, node_name: str, table: str):
        self.node_name = node_name
        self.compile_seconds = Histogram(
            "hybridnet_policy_compile_seconds",
            "Time one compile of the NetworkPolicies for this node's pods took (inputs, "
            "compiler and renderer; the table's write is in the datapath's reconcile time).",
            ["node"],
            registry=registry,
            buckets=LATENCY_BUCKETS,
        )
        self.rules = Gauge(
            "hybridnet_policy_rules",
            "Rules in this node's NetworkPolicy table, as last written.",
            ["node"],
            registry=registry,
        )
        self.elements = Gauge(
            "hybridnet_policy_set_elements",
            "Set and map elements in this node's NetworkPolicy table, as last written.",
            ["node"],
            registry=registry,
        )
        self.isolated = Gauge(
            "hybridnet_policy_isolated_pod_chains",
            "Pod chains (a pod and a direction some policy isolates) on this node.",
            ["node"],
            registry=registry,
        )
        self.drops = DropCollector(node_name, lambda: nftables.list_counters(FAMILY, table))
        registry.register(self.drops)

    def observe(self, policy: PolicyDesired, written: bool) -> None:
        """One reconcile's policy compile; ``written``: the table now holds it."""
        self.compile_seconds.labels(node=self.node_name).observe(policy.compile_seconds)
        if written:
            ruleset = policy.table.ruleset
            self.rules.labels(node=self.node_name).set(ruleset.rule_count)
            self.elements.labels(node=self.node_name).set(ruleset.element_count)
            self.isolated.labels(node=self.node_name).set(len(ruleset.chains))
            self.drops.track(ruleset.counters)


class DropCollector(Collector):
    """Packets and bytes each pod chain dropped, by pod and direction, read at scrape time."""

    def __init__(self, node_name: str, read: CounterReader):
        self.node_name = node_name
        self.read = read
        self._counters: dict[str, DropCounter] = {}
        self._lock = threading.Lock()

    def track(self, counters: Iterable[DropCounter]) -> None:
        """The table's counters now (the reconcile worker's thread)."""
        with self._lock:
            self._counters = {c.name: c for c in counters}

    def describe(self) -> Iterable[Metric]:
        return [self._packets(), self._bytes()]  # no read: registering must not run nft

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            counters = dict(self._counters)
        packets, octets = self._packets(), self._bytes()
        if counters:
            try:
                listing = self.read() or []
            except nftables.NftError as exc:
                log.warning("cannot read policy drop counters", extra=fields(error=str(exc)))
                listing = []
            for name, (count, size) in sorted(drop_counts(listing).items()):
                counter = counters.get(name)
                if counter is None:
                    continue  # written by another reconcile than the one tracked
                labels = [self.node_name, counter.namespace, counter.pod, counter.direction.lower()]
                packets.add_metric(labels, count)
                octets.add_metric(labels, size)
        yield packets
        yield octets

    @staticmethod
    def _packets() -> CounterMetricFamily:
        return CounterMetricFamily(
            "hybridnet_policy_dropped_packets",
            "Packets NetworkPolicy dropped, by the pod they were sent by (egress) or to (ingress).",
            labels=["node", "namespace", "pod", "direction"],
        )

    @staticmethod
    def _bytes() -> CounterMetricFamily:
        return CounterMetricFamily(
            "hybridnet_policy_dropped_bytes",
            "Bytes NetworkPolicy dropped, by pod and direction (as dropped_packets).",
            labels=["node", "namespace", "pod", "direction"],
        )
