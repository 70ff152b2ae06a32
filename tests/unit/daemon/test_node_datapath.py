"""The daemon's side of the datapath without a kernel: the reconcile worker's wakes, resyncs
and drift flag, NodeInfo publishing (written only on change, restart-safe), the metrics."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from hybridnet.api.builtin import Node
from hybridnet.api.meta import ObjectMeta
from hybridnet.api.resources import NodeInfo, NodeInfoSpec, NodeProblem, VTEPInfo
from hybridnet.daemon.cache import NodeCache
from hybridnet.daemon.datapath.config import NodeConfig
from hybridnet.daemon.datapath.desired import DesiredState
from hybridnet.daemon.datapath.errors import ObserveError, RouteError
from hybridnet.daemon.datapath.model import Route
from hybridnet.daemon.datapath.overlay import Vtep
from hybridnet.daemon.datapath.plan import Action, Operation, Plan
from hybridnet.daemon.datapath.problems import Problem, ProblemCode
from hybridnet.daemon.datapath.reconcile import Reconciler, ReconcileResult
from hybridnet.daemon.datapath.view import NodeView
from hybridnet.daemon.datapath_metrics import DatapathMetrics
from hybridnet.daemon.node_datapath import NodeDatapath
from hybridnet.daemon.nodeinfo import NodeInfoPublisher, desired_problems, desired_spec
from hybridnet.daemon.worker import ReconcileWorker
from hybridnet.metrics import new_registry
from hybridnet.store.sqlite import SQLiteStore
from tests.unit.daemon.cache_helpers import SIGNAL_TIMEOUT
from tests.unit.daemon.datapath.builders import host, link

ROUTE = Route(4, 40000, "198.19.0.0/24", "eth0.vxlan4")
VTEP = Vtep(link="eth0.vxlan4", address="198.18.0.10", mac="52:54:00:00:00:0a")


def result(
    *,
    applied: tuple[Operation, ...] = (),
    problems: tuple[Problem, ...] = (),
    failures: tuple[RouteError, ...] = (),
    vtep: Vtep | None = VTEP,
) -> ReconcileResult:
    return ReconcileResult(
        desired=DesiredState(objects=(), problems=problems, subnet_tables={}, vtep=vtep),
        plan=Plan(applied),
        applied=applied,
        failures=failures,
        seconds=0.002,
        host=host(link("eth0", "198.18.0.10/24", "2001:db8::a/64")),
    )


class ScriptedReconciler(Reconciler):
    """Returns ``outcomes`` in turn (an exception is raised), recording each view."""

    def __init__(self, *outcomes: ReconcileResult | Exception):
        super().__init__(NodeConfig())
        self.outcomes = list(outcomes)
        self.views: list[NodeView] = []

    def reconcile(self, view: NodeView) -> ReconcileResult:
        self.views.append(view)
        outcome = self.outcomes.pop(0) if len(self.outcomes) > 1 else self.outcomes[0]
        if isinstance(outcome, Exception):
            raise outcome
        return outcome


# --------------------------------------------------------------------------- worker


def test_a_wake_runs_a_reconcile_and_no_view_means_no_reconcile() -> None:
    reconciler = ScriptedReconciler(result())
    views: list[NodeView | None] = [None, NodeView("n1")]
    seen: list[tuple[ReconcileResult, bool]] = []
    worker = ReconcileWorker(
        reconciler, lambda: views.pop(0), lambda r, d: seen.append((r, d)), resync_period=3600
    )
    worker.start()
    try:
        worker.wake()
        assert worker.wait_for_run(0, SIGNAL_TIMEOUT)
        assert reconciler.views == [] and seen == []  # informers not listed: nothing done
        worker.wake()
        assert worker.wait_for_run(1, SIGNAL_TIMEOUT)
        assert reconciler.views == [NodeView("n1")] and len(seen) == 1
    finally:
        worker.stop()


def test_until_the_informers_have_listed_the_worker_looks_again_soon() -> None:
    """Their last change can come just before they say they have listed: the worker must not
    wait a whole resync period (an hour here) for its first reconcile."""
    reconciler = ScriptedReconciler(result())
    views: list[NodeView | None] = [None, None, NodeView("n1")]
    worker = ReconcileWorker(
        reconciler, lambda: views.pop(0) if views else NodeView("n1"), lambda r, d: None, 3600
    )
    worker.start()
    try:
        worker.wake()  # once only
        assert worker.wait_for_run(2, SIGNAL_TIMEOUT)
        assert reconciler.views == [NodeView("n1")]
    finally:
        worker.stop()


def test_waiting_for_a_view_wakes_the_worker_and_ends_at_the_first_view_that_holds_it() -> None:
    """What ADD waits for: a finished reconcile built from a view that holds its pod. A run
    from a view without it (the informer had not delivered the pod yet) does not end the
    wait; the informer's event wakes the worker again, and that run does."""
    reconciler = ScriptedReconciler(result())
    labels: dict[str, str] = {}
    worker = ReconcileWorker(
        reconciler, lambda: NodeView("n1", node_labels=dict(labels)), lambda r, d: None, 3600
    )
    worker.start()
    outcome: list[bool] = []
    waiter = threading.Thread(
        target=lambda: outcome.append(
            worker.wait_for_view(lambda v: v.node_labels == {"pod": "in"}, SIGNAL_TIMEOUT)
        )
    )
    try:
        waiter.start()
        assert worker.wait_for_run(0, SIGNAL_TIMEOUT)  # woken by the wait itself
        assert waiter.is_alive() and not outcome  # that view lacked the pod; no run since
        labels["pod"] = "in"
        worker.wake()  # the informer's event
        waiter.join(SIGNAL_TIMEOUT)
        assert outcome == [True]
    finally:
        worker.stop()


def test_the_resync_reconciles_without_any_wake() -> None:
    reconciler = ScriptedReconciler(result())
    worker = ReconcileWorker(reconciler, lambda: NodeView("n1"), lambda r, d: None, 0.01)
    worker.start()
    try:
        assert worker.wait_for_run(2, SIGNAL_TIMEOUT)  # three runs, never woken
    finally:
        worker.stop()


def test_wakes_during_a_reconcile_coalesce_into_one_more_run() -> None:
    entered, release = threading.Event(), threading.Event()

    class Blocking(ScriptedReconciler):
        def reconcile(self, view: NodeView) -> ReconcileResult:
            entered.set()
            release.wait(SIGNAL_TIMEOUT)
            return super().reconcile(view)

    reconciler = Blocking(result())
    worker = ReconcileWorker(reconciler, lambda: NodeView("n1"), lambda r, d: None, 3600)
    worker.start()
    try:
        worker.wake()
        assert entered.wait(SIGNAL_TIMEOUT)
        for _ in range(20):
            worker.wake()
        release.set()
        assert worker.wait_for_run(1, SIGNAL_TIMEOUT)  # the first run and one more
        # With the resync an hour away, a third run could only come from a lost coalescing;
        # run_once (synchronous) shows the worker still works and counts exactly one more.
        runs = worker.runs
        worker.run_once()
        assert worker.runs == runs + 1 == 3 and len(reconciler.views) == 3
    finally:
        worker.stop()


def test_drift_is_what_an_unchanged_view_needed_after_a_converged_run() -> None:
    fixed = Operation(Action.CREATE, ROUTE)
    failed = RouteError("route 198.19.0.0/24", "refused")
    reconciler = ScriptedReconciler(
        result(applied=(fixed,)),  # the first run: the view is new
        result(applied=(fixed,)),  # same view, previous converged: drift
        result(failures=(failed,)),  # same view again
        result(applied=(fixed,)),  # the previous did not converge: not drift
    )
    flags: list[bool] = []
    worker = ReconcileWorker(reconciler, lambda: NodeView("n1"), lambda r, d: flags.append(d))
    for _ in range(4):
        worker.run_once()
    assert flags == [False, True, True, False]


def test_a_failed_observe_is_survived_and_counted_as_a_run() -> None:
    reconciler = ScriptedReconciler(ObserveError("netlink is gone"), result())
    worker = ReconcileWorker(reconciler, lambda: NodeView("n1"), lambda r, d: None)
    assert worker.run_once() is None and worker.runs == 1
    assert worker.run_once() is not None and worker.runs == 2


# --------------------------------------------------------------------------- NodeInfo


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SQLiteStore]:
    opened = SQLiteStore(tmp_path / "store.db")
    yield opened
    opened.close()


def test_the_spec_is_the_vtep_and_the_vtep_interface_addresses() -> None:
    spec = desired_spec(result(), "eth0")
    assert spec == NodeInfoSpec(
        VTEPInfo(
            ip="198.18.0.10", mac="52:54:00:00:00:0a", local_ips=["198.18.0.10", "2001:db8::a"]
        )
    )
    assert desired_spec(result(vtep=None), "eth0") == NodeInfoSpec(vtep_info=None)


def test_problems_and_failures_both_go_on_the_status() -> None:
    problem = Problem(ProblemCode.PARENT_MISSING, "link/eth9", "the VTEP interface eth9 ...")
    failure = RouteError("route 198.19.0.0/24", "File exists", 17)
    assert desired_problems(result(problems=(problem,), failures=(failure,))) == [
        NodeProblem("ParentInterfaceMissing", "link/eth9", "the VTEP interface eth9 ..."),
        NodeProblem("ApplyFailed", "route 198.19.0.0/24", "route 198.19.0.0/24: File exists"),
    ]


def test_nodeinfo_is_written_only_when_it_changes(store: SQLiteStore) -> None:
    publisher = NodeInfoPublisher(store, "n1")
    spec = desired_spec(result(), "eth0")
    created = publisher.publish(None, spec, [])
    assert created is not None
    assert store.get(NodeInfo, "n1").spec == spec
    # The informer has not delivered our write yet (cached None): our own write counts.
    assert publisher.publish(None, spec, []) is None
    stored = store.get(NodeInfo, "n1")
    assert publisher.publish(stored, spec, []) is None
    problem = NodeProblem("ParentInterfaceMissing", "link/eth9", "gone")
    written = publisher.publish(stored, spec, [problem])
    assert written is not None and store.get(NodeInfo, "n1").status.problems == [problem]
    assert store.get(NodeInfo, "n1").status.update_timestamp
    moved = NodeInfoSpec(VTEPInfo(ip="198.18.0.11", mac=VTEP.mac, local_ips=["198.18.0.11"]))
    publisher.publish(store.get(NodeInfo, "n1"), moved, [problem])
    assert store.get(NodeInfo, "n1").spec == moved


def test_a_restarted_daemon_rewrites_nothing(store: SQLiteStore) -> None:
    spec = desired_spec(result(), "eth0")
    NodeInfoPublisher(store, "n1").publish(None, spec, [])
    before = store.get(NodeInfo, "n1")
    again = NodeInfoPublisher(store, "n1")
    assert again.publish(before, spec, []) is None
    assert store.get(NodeInfo, "n1").metadata.resource_version == before.metadata.resource_version


def test_a_nodeinfo_deleted_after_the_cache_saw_it_is_created_again(store: SQLiteStore) -> None:
    """Once the informer has shown our write, the cache is the truth again: a NodeInfo deleted
    later (the manager deletes a deleted Node's, and kubelet registers the Node again) is
    written anew, or this node would be missing from every other node's FDB for good."""
    publisher = NodeInfoPublisher(store, "n1")
    spec = desired_spec(result(), "eth0")
    assert publisher.publish(None, spec, []) is not None
    assert publisher.publish(store.get(NodeInfo, "n1"), spec, []) is None  # the cache caught up
    store.delete(NodeInfo, "n1")
    assert publisher.publish(None, spec, []) is not None  # the cache says it is gone
    assert store.get(NodeInfo, "n1").spec == spec


@pytest.mark.parametrize("requires_node", [True, False])
def test_where_nodes_are_registered_a_node_without_its_node_publishes_nothing(
    store: SQLiteStore, requires_node: bool
) -> None:
    """On Kubernetes a node whose Node was deleted has left: its NodeInfo (which the manager
    deletes) is not written again until the Node is back. The embedded store needs no Node."""
    cache = NodeCache(store, "n1", "kube-system", watch_timeout=0.5).start()
    try:
        assert cache.nodes.synced.wait(SIGNAL_TIMEOUT)
        datapath = NodeDatapath(store, cache, NodeConfig(), requires_node=requires_node)
        datapath._after(result(), False)
        published = store.list(NodeInfo).items
        assert [i.name for i in published] == ([] if requires_node else ["n1"])
        store.create(Node(ObjectMeta(name="n1")))
        deadline = time.monotonic() + SIGNAL_TIMEOUT
        while cache.nodes.cache.get(("", "n1")) is None:
            assert time.monotonic() < deadline, "the Node never reached the cache"
            time.sleep(0.02)
        datapath._after(result(), False)
        assert [i.name for i in store.list(NodeInfo).items] == ["n1"]
    finally:
        cache.stop()


def test_a_nodeinfo_the_cache_has_not_seen_is_left_for_the_next_run(store: SQLiteStore) -> None:
    store.create(NodeInfo(ObjectMeta(name="n1")))
    publisher = NodeInfoPublisher(store, "n1")
    assert publisher.publish(None, desired_spec(result(), "eth0"), []) is None
    current = store.get(NodeInfo, "n1")
    assert publisher.publish(current, desired_spec(result(), "eth0"), []) is not None


# --------------------------------------------------------------------------- metrics


def test_metrics_count_operations_drift_and_failures_by_node() -> None:
    registry = new_registry()
    metrics = DatapathMetrics(registry, "n1")
    fixed = Operation(Action.CREATE, ROUTE)
    metrics.observe(result(applied=(fixed, fixed)), drift=False)
    metrics.observe(result(applied=(fixed,)), drift=True)
    metrics.observe(result(failures=(RouteError("route x", "refused"),)), drift=False)
    labels = {"node": "n1", "kind": "route"}
    assert (
        registry.get_sample_value(
            "hybridnet_datapath_operations_applied_total", {**labels, "action": "create"}
        )
        == 3
    )
    assert registry.get_sample_value("hybridnet_datapath_drift_corrected_total", labels) == 1
    assert registry.get_sample_value("hybridnet_datapath_apply_failures_total", labels) == 1
    assert (
        registry.get_sample_value("hybridnet_datapath_reconcile_seconds_count", {"node": "n1"}) == 3
    )


def test_the_node_is_not_ready_until_its_datapath_was_reconciled_once(store: SQLiteStore) -> None:
    """Never started here: the worker's reconciler would change this process's namespace."""
    cache = NodeCache(store, "n1", "kube-system")
    datapath = NodeDatapath(store, cache, NodeConfig())
    assert datapath.not_ready() == "the node datapath has not been reconciled yet"
    datapath.worker.last = result(problems=(Problem(ProblemCode.PARENT_MISSING, "link/x", "y"),))
    assert datapath.not_ready() is None  # problems are reported, not a reason to stop serving


def test_the_result_becomes_last_only_once_it_was_handled() -> None:
    """Readiness follows ``last``: a ready daemon has already published its NodeInfo, so it
    writes nothing more at steady state (tests/cluster/test_daemon_kube.py counts it)."""
    reconciler = ScriptedReconciler(result())
    seen_during: list[ReconcileResult | None] = []
    worker = ReconcileWorker(reconciler, lambda: NodeView("n1"), lambda r, d: None)
    worker.on_result = lambda r, d: seen_during.append(worker.last)
    produced = worker.run_once()
    assert seen_during == [None] and worker.last is produced
