"""Once started, the manager watches and writes only what changed: no periodic LIST, no write
when nothing changed, one status write per object an allocation touched.

The manager (main.Manager, as the process builds it) runs on the embedded store behind a
wrapper that counts every request by verb and resource.
"""

from __future__ import annotations

import collections
from collections.abc import Iterator
from pathlib import Path

import pytest

from hybridnet.api import constants as c
from hybridnet.api.builtin import Node
from hybridnet.api.meta import ObjectMeta
from hybridnet.api.resources import IPInstance, Network, NetworkSpec, Subnet
from hybridnet.lab.manager import IPAM_NAMESPACE, Harness
from hybridnet.manager import main
from hybridnet.metrics import new_registry
from hybridnet.store.sqlite import SQLiteStore
from tests.store_contract import wait_until
from tests.unit.manager.stores import CountingStore

WATCH_SECONDS = 0.5
KINDS = ("networks", "subnets", "ipinstances", "namespaces", "nodes", "pods")
RECONNECTS = 4
"""How many times every informer re-opens its watch (WATCH_SECONDS each) in a quiet window:
at least 2 s, twice as long as the status writer's batch interval (1 s), and as long as the
intervals at which the status writer (1 s) and node labeler (2 s) used to list everything."""

Calls = collections.Counter[tuple[str, str]]


@pytest.fixture
def setup(tmp_path: Path) -> Iterator[tuple[CountingStore, Harness, main.Manager]]:
    inner = SQLiteStore(tmp_path / "store.db")
    harness = Harness(inner, "t")
    harness.namespace(IPAM_NAMESPACE)
    harness.namespace("apps")
    harness.node("node-t")
    harness.underlay("u-t")
    harness.subnet("s-t", "u-t", "198.19.40.0/24")
    store = CountingStore(inner)
    args = main.parse_args(
        ["--store", "unused", "--no-leader-elect", "--namespace", IPAM_NAMESPACE]
    )
    manager = main.Manager(store, args, new_registry(), watch_timeout=WATCH_SECONDS)
    manager.start()
    try:
        yield store, harness, manager
    finally:
        manager.stop()
        inner.close()


def subnet_used(harness: Harness, name: str) -> tuple[int, int]:
    status = harness.store.get(Subnet, name).status
    return status.total, status.used


def network_used(harness: Harness, name: str) -> int | None:
    statistics = harness.store.get(Network, name).status.statistics
    return statistics.used if statistics else None


def quiet_window(store: CountingStore) -> Calls:
    """The requests made while every informer re-opened its watch RECONNECTS times."""
    before = store.calls()
    wait_until(
        lambda: all(
            store.calls()[("watch", kind)] >= before[("watch", kind)] + RECONNECTS for kind in KINDS
        ),
        f"{RECONNECTS} watch reconnects of every informer",
    )
    return store.calls() - before


def not_watches(calls: Calls) -> Calls:
    return collections.Counter({k: n for k, n in calls.items() if k[0] != "watch"})


def test_nothing_changed_nothing_is_listed_or_written(
    setup: tuple[CountingStore, Harness, main.Manager],
) -> None:
    store, harness, _ = setup
    wait_until(lambda: subnet_used(harness, "s-t") == (254, 0), "the subnet's counters")
    wait_until(lambda: network_used(harness, "u-t") == 0, "the network's counters")
    wait_until(
        lambda: (
            harness.store.get(Node, "node-t").metadata.labels.get(c.LABEL_IPV4_QUOTA)
            == c.QUOTA_NONEMPTY
        ),
        "the node's quota label",
    )
    quiet_window(store)  # the echoes of those writes have come back and been compared
    assert not_watches(quiet_window(store)) == collections.Counter()


def test_one_allocation_one_status_write_per_object(
    setup: tuple[CountingStore, Harness, main.Manager],
) -> None:
    store, harness, _ = setup
    wait_until(lambda: subnet_used(harness, "s-t") == (254, 0), "the subnet's counters")
    wait_until(lambda: network_used(harness, "u-t") == 0, "the network's counters")
    quiet_window(store)
    before = store.calls()

    harness.pod("apps", "web", node="node-t")
    wait_until(lambda: bool(harness.instances("apps", "web")), "web's IPInstance")
    wait_until(lambda: subnet_used(harness, "s-t") == (254, 1), "the subnet counting it")
    wait_until(lambda: network_used(harness, "u-t") == 1, "the network counting it")
    # A barrier: a Subnet and Network created now are marked after the echoes of the writes
    # above (same informers, in order), and the writer syncs marks oldest first. Once their
    # own status is written, the echoes have been compared too. Selecting no node, they
    # change no node label.
    harness.store.create(
        Network(
            ObjectMeta(name="u-barrier"),
            NetworkSpec(type=c.TYPE_UNDERLAY, mode=c.MODE_VLAN, node_selector={"rack": "none"}),
        )
    )
    harness.subnet("s-barrier", "u-barrier", "198.19.41.0/24")
    wait_until(lambda: subnet_used(harness, "s-barrier") == (254, 0), "the barrier subnet")
    wait_until(lambda: network_used(harness, "u-barrier") == 0, "the barrier network")

    calls = not_watches(store.calls() - before)
    assert calls == collections.Counter(
        {
            ("create", "ipinstances"): 1,
            ("update_status", "subnets"): 2,  # s-t, s-barrier
            ("update_status", "networks"): 2,  # u-t, u-barrier
        }
    ), calls
    assert len(harness.store.list(IPInstance, IPAM_NAMESPACE).items) == 1
