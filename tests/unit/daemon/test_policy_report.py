"""After a reconcile: a policy that cannot be enforced as written is logged and becomes one
Event on the NetworkPolicy (once, for as long as it lasts), the enforced inputs' digest is
logged when the table holds them (not when its write failed), and the metrics: compile time,
the table's size, and drops per pod read from nft's counters when scraped."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from hybridnet.api.builtin import Event
from hybridnet.daemon.datapath.desired import DesiredState
from hybridnet.daemon.datapath.errors import PolicyTableError
from hybridnet.daemon.datapath.plan import Action, Operation, Plan
from hybridnet.daemon.datapath.policy_endpoints import PolicyPeers
from hybridnet.daemon.datapath.policy_table import PolicyDesired, PolicyProblem, PolicyTable
from hybridnet.daemon.datapath.reconcile import ReconcileResult
from hybridnet.daemon.events import NodeEvents
from hybridnet.daemon.policy_metrics import DropCollector, PolicyMetrics
from hybridnet.daemon.policy_report import PolicyReport
from hybridnet.metrics import new_registry
from hybridnet.netlink import nftables
from hybridnet.policy.model import Direction
from hybridnet.policy.render import DropCounter, NftChain, Ruleset
from hybridnet.store.sqlite import SQLiteStore

COUNTER = DropCounter("drop-ingress-hyb1", "x", "a", Direction.INGRESS)
RULESET = Ruleset(
    "hybridnet-policy",
    (),
    {Direction.INGRESS: frozenset({("hyb1", "ingress-hyb1")}), Direction.EGRESS: frozenset()},
    (NftChain("ingress-hyb1", ('counter name "drop-ingress-hyb1" drop',)),),
    (COUNTER,),
)
NAMED = PolicyProblem("x", "web", "NamedPortUnresolved", "no pod has a TCP port named 'http'")


def result(
    problems: tuple[PolicyProblem, ...] = (), inputs: str = "d1", failed: bool = False
) -> ReconcileResult:
    table = PolicyTable(RULESET)
    policy = PolicyDesired(table, problems, PolicyPeers((), (), ()), 0.003, inputs)
    applied = () if failed else (Operation(Action.CREATE, table),)
    failures = (PolicyTableError(table.describe(), "nft refused"),) if failed else ()
    return ReconcileResult(
        desired=DesiredState((table,), (), {}, policy=policy),
        plan=Plan((Operation(Action.CREATE, table),)),
        applied=applied,
        failures=failures,
        seconds=0.01,
    )


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SQLiteStore]:
    store = SQLiteStore(tmp_path / "s.db")
    yield store
    store.close()


def events_about(store: SQLiteStore, name: str) -> list[Event]:
    return [
        e
        for e in store.list(Event, "x").items
        if e.body["involvedObject"] == {"kind": "NetworkPolicy", "namespace": "x", "name": name,
                                        "apiVersion": "networking.k8s.io/v1"}
    ]  # fmt: skip


def test_a_problem_is_one_event_on_the_policy_and_a_warning_while_it_lasts(
    store: SQLiteStore, caplog: pytest.LogCaptureFixture
) -> None:
    report = PolicyReport("n1", NodeEvents(store, "n1"), None)
    with caplog.at_level(logging.INFO):
        report.after(result((NAMED,)))
        report.after(result((NAMED,), inputs="d2"))
        report.after(result((), inputs="d3"))
    (event,) = events_about(store, "web")
    assert (event.body["reason"], event.body["type"]) == ("NamedPortUnresolved", "Warning")
    assert event.body["message"] == NAMED.message
    messages = [r.getMessage() for r in caplog.records]
    assert messages.count("network policy not enforceable as written") == 1
    assert messages.count("network policy problem resolved") == 1


def test_the_inputs_are_logged_as_enforced_once_and_not_after_a_failed_write(
    store: SQLiteStore, caplog: pytest.LogCaptureFixture
) -> None:
    report = PolicyReport("n1", NodeEvents(store, "n1"), None)
    with caplog.at_level(logging.INFO):
        report.after(result(inputs="d1", failed=True))
        report.after(result(inputs="d1"))
        report.after(result(inputs="d1"))
    applied = [r for r in caplog.records if r.getMessage() == "network policy applied"]
    assert len(applied) == 1
    fields = applied[0].__dict__["hybridnet_fields"]
    assert (fields["inputs"], fields["changed"], fields["pod_chains"]) == ("d1", True, 1)


def test_metrics_compile_time_table_size_and_drops_per_pod(
    store: SQLiteStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    registry = new_registry()
    listing = [{"counter": {"name": COUNTER.name, "packets": 12, "bytes": 720}},
               {"counter": {"name": "drop-somebody-else", "packets": 1, "bytes": 60}}]  # fmt: skip
    monkeypatch.setattr(nftables, "list_counters", lambda family, table: listing)
    metrics = PolicyMetrics(registry, "n1", "hybridnet-policy")
    PolicyReport("n1", NodeEvents(store, "n1"), metrics).after(result())
    value = registry.get_sample_value
    assert value("hybridnet_policy_compile_seconds_count", {"node": "n1"}) == 1
    assert value("hybridnet_policy_rules", {"node": "n1"}) == RULESET.rule_count
    assert value("hybridnet_policy_isolated_pod_chains", {"node": "n1"}) == 1
    pod = {"node": "n1", "namespace": "x", "pod": "a", "direction": "ingress"}
    assert value("hybridnet_policy_dropped_packets_total", pod) == 12
    assert value("hybridnet_policy_dropped_bytes_total", pod) == 720


def test_drops_are_not_read_before_any_table_and_a_failed_read_is_no_samples() -> None:
    reads: list[int] = []

    def refuse() -> list[dict[str, object]]:
        reads.append(1)
        raise nftables.NftError("nft list counters: refused")

    collector = DropCollector("n1", refuse)
    assert [len(m.samples) for m in collector.collect()] == [0, 0]
    assert reads == []  # nothing tracked: no nft call at all
    collector.track([COUNTER])
    assert [len(m.samples) for m in collector.collect()] == [0, 0]
    assert reads == [1]
