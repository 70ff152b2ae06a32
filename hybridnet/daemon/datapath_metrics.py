"""The datapath's Prometheus metrics, labelled by node so one dashboard compares them."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram

from hybridnet.daemon.datapath.errors import ERROR_BY_KIND
from hybridnet.daemon.datapath.reconcile import ReconcileResult
from hybridnet.metrics import LATENCY_BUCKETS


class DatapathMetrics:
    def __init__(self, registry: CollectorRegistry, node_name: str):
        self.node_name = node_name
        self.duration = Histogram(
            "hybridnet_datapath_reconcile_seconds",
            "Time one reconcile of the node's datapath took (observe, plan, apply).",
            ["node"],
            registry=registry,
            buckets=LATENCY_BUCKETS,
        )
        self.operations = Counter(
            "hybridnet_datapath_operations_applied",
            "Kernel operations the datapath applied, by object kind and action.",
            ["node", "kind", "action"],
            registry=registry,
        )
        self.drift = Counter(
            "hybridnet_datapath_drift_corrected",
            "Kernel objects put back while the cluster's view had not changed (something "
            "else changed the kernel), by object kind.",
            ["node", "kind"],
            registry=registry,
        )
        self.failures = Counter(
            "hybridnet_datapath_apply_failures",
            "Kernel operations that failed, by object kind.",
            ["node", "kind"],
            registry=registry,
        )

    def observe(self, result: ReconcileResult, drift: bool) -> None:
        """``drift``: the view was the one the previous, converged reconcile had, so whatever
        this one applied undid a change made behind the daemon's back."""
        self.duration.labels(node=self.node_name).observe(result.seconds)
        for (kind, action), count in result.applied_counts().items():
            self.operations.labels(node=self.node_name, kind=str(kind), action=str(action)).inc(
                count
            )
            if drift:
                self.drift.labels(node=self.node_name, kind=str(kind)).inc(count)
        for failure in result.failures:
            failed = _KIND_OF.get(type(failure))
            self.failures.labels(node=self.node_name, kind=str(failed or "unknown")).inc()


_KIND_OF = {error: kind for kind, error in ERROR_BY_KIND.items()}
