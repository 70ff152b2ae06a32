"""The daemon's informer cache on the embedded store: ADD's wait for the manager's allocation
(woken by the informer, bounded, aware of dual stack written in two steps), and readiness that
follows the store through an outage and back."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from hybridnet.api.resources import IPInstance
from hybridnet.daemon.cache import AllocationTimeout, NodeCache, NotAnnounced
from hybridnet.daemon.health import WatchHealth
from hybridnet.ipamstore import ipinstances
from hybridnet.store.errors import Unavailable
from hybridnet.store.informer import Backoff
from hybridnet.store.interface import R, WatchEvent
from tests.unit.daemon.cache_helpers import (
    IPAM_NAMESPACE,
    NODE,
    SIGNAL_TIMEOUT,
    CutOffStore,
    eventually,
    instance,
)

QUICK = Backoff(initial=0.01, maximum=0.05)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[CutOffStore]:
    store = CutOffStore(tmp_path / "store.db")
    yield store
    store.close()


@pytest.fixture
def cache(store: CutOffStore) -> Iterator[NodeCache]:
    cache = NodeCache(store, NODE, IPAM_NAMESPACE, watch_timeout=0.2, backoff=QUICK).start()
    eventually(lambda: cache.problem() is None, "the cache syncs")
    yield cache
    cache.stop()


def test_a_waiting_add_is_woken_by_the_allocation(store: CutOffStore, cache: NodeCache) -> None:
    found: list[list[str]] = []
    waiting = threading.Thread(
        target=lambda: found.append(
            [i.name for i in cache.wait_for_pod("default/web", SIGNAL_TIMEOUT)]
        )
    )
    waiting.start()
    store.create(instance("web", "198.19.0.5"))
    waiting.join()
    assert found == [["198-19-0-5"]]


def test_only_this_nodes_instances_are_cached(store: CutOffStore, cache: NodeCache) -> None:
    store.create(instance("far", "198.19.0.7", node="n2"))
    store.create(instance("near", "198.19.0.8"))
    cache.wait_for_pod("default/near", SIGNAL_TIMEOUT)  # written after "far": seen after it
    assert cache.pod_instances("default/far") == []


def test_dual_stack_waits_for_the_second_family(store: CutOffStore, cache: NodeCache) -> None:
    store.create(instance("dual", "198.19.0.6", families=(4, 6)))
    eventually(lambda: cache.pod_instances("default/dual") != [], "the IPv4 half is cached")
    with pytest.raises(AllocationTimeout, match="only IPv4 of a dual-stack allocation"):
        cache.wait_for_pod("default/dual", 0)
    store.create(instance("dual", "2001:db8::6", families=(4, 6)))
    found = cache.wait_for_pod("default/dual", SIGNAL_TIMEOUT)
    assert sorted(i.spec.address.version for i in found) == ["4", "6"]


def test_without_the_annotation_any_family_is_enough(store: CutOffStore, cache: NodeCache) -> None:
    """IPInstances of an older manager do not say their families: take what is there."""
    store.create(instance("old", "198.19.0.9", families=None))
    (found,) = cache.wait_for_pod("default/old", SIGNAL_TIMEOUT)
    assert found.name == "198-19-0-9"


def test_no_allocation_in_time_is_a_timeout(cache: NodeCache) -> None:
    with pytest.raises(AllocationTimeout, match=r"no address for pod default/none after 0s$"):
        cache.wait_for_pod("default/none", 0.05)


def test_a_deleted_instance_leaves_the_cache(store: CutOffStore, cache: NodeCache) -> None:
    created = store.create(instance("gone", "198.19.0.10"))
    cache.wait_for_pod("default/gone", SIGNAL_TIMEOUT)
    store.delete(type(created), created.name, IPAM_NAMESPACE)
    eventually(lambda: cache.pod_instances("default/gone") == [], "the delete is cached")


def test_a_newer_version_is_waited_for(store: CutOffStore, cache: NodeCache) -> None:
    created = store.create(instance("web", "198.19.0.11"))
    (cached,) = cache.wait_for_pod("default/web", SIGNAL_TIMEOUT)
    assert cache.wait_for_newer(cached, 0) is None
    changed = store.get(type(created), created.name, IPAM_NAMESPACE)
    changed.status.phase = "Using"
    store.update_status(changed)
    newer = cache.wait_for_newer(cached, SIGNAL_TIMEOUT)
    assert newer is not None and newer.status.phase == "Using"


def test_readiness_follows_the_store_through_an_outage(
    store: CutOffStore, cache: NodeCache
) -> None:
    """Ready: both caches listed and the store answered each informer's latest request. A
    store that stops answering makes the cache not ready; once it answers again (no event
    needed: the short watch after a failure ends normally), ready again."""
    assert cache.problem() is None
    store.cut.set()
    eventually(lambda: cache.problem() is not None, "the outage is noticed")
    assert "connection refused" in (cache.problem() or "")
    store.cut.clear()
    eventually(lambda: cache.problem() is None, "the recovery is noticed")


def test_not_ready_until_listed(store: CutOffStore) -> None:
    store.cut.set()
    cache = NodeCache(store, NODE, IPAM_NAMESPACE, watch_timeout=0.2, backoff=QUICK).start()
    try:
        eventually(lambda: "connection refused" in (cache.problem() or ""), "the failed list")
        assert (cache.problem() or "").startswith("ipinstances not listed yet")
        store.cut.clear()
        eventually(lambda: cache.problem() is None, "the first list")
    finally:
        cache.stop()


class RecordingStore(CutOffStore):
    """Remembers the timeout of every watch it is asked for."""

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.watch_timeouts: list[float | None] = []

    def watch(
        self,
        kind: type[R],
        resource_version: str,
        namespace: str | None = None,
        label_selector: str | None = None,
        timeout_seconds: float | None = None,
    ) -> Iterator[WatchEvent[R]]:
        self.watch_timeouts.append(timeout_seconds)
        return super().watch(kind, resource_version, namespace, label_selector, timeout_seconds)


def test_after_a_failure_the_next_watch_is_short(tmp_path: Path) -> None:
    """A quiet watch proves nothing until it ends: after a failure the next one is a short
    recheck, so readiness returns soon after the store does, not a whole watch later."""
    store = RecordingStore(tmp_path / "store.db")
    health = WatchHealth(store, recheck_seconds=0.05)
    listed = health.list(IPInstance, IPAM_NAMESPACE)
    assert list(health.watch(IPInstance, listed.resource_version, timeout_seconds=0.05)) == []
    store.cut.set()
    with pytest.raises(Unavailable):
        list(health.watch(IPInstance, listed.resource_version, timeout_seconds=3600))
    failed = health.problem
    store.cut.clear()
    assert list(health.watch(IPInstance, listed.resource_version, timeout_seconds=3600)) == []
    assert (failed, health.problem) == ("API server unreachable: connection refused", None)
    assert store.watch_timeouts == [0.05, 3600, 0.05]
    store.close()


def mark(store: CutOffStore, name: str, node: str) -> None:
    stored = store.get(IPInstance, name, IPAM_NAMESPACE)
    stored.metadata.annotations[ipinstances.ANNOTATION_BGP_ANNOUNCED] = node
    store.update(stored)


def test_a_bgp_add_waits_for_the_announced_mark_naming_this_node(
    store: CutOffStore, cache: NodeCache
) -> None:
    """A mark for another node (the address announced where the pod used to run) is not
    this node's; the mark naming it wakes the wait, which returns the marked version."""
    store.create(instance("bgp", "198.19.0.5"))
    (first,) = cache.wait_for_pod("default/bgp", SIGNAL_TIMEOUT)
    mark(store, first.name, "elsewhere")
    eventually(
        lambda: ipinstances.bgp_announced_for(cache.pod_instances("default/bgp")[0]) is not None,
        "the other node's mark is cached",
    )
    with pytest.raises(NotAnnounced) as refused:
        cache.wait_for_announced("default/bgp", {first.name}, 0)
    assert refused.value.waiting == [first.name]
    found: list[list[IPInstance]] = []
    waiting = threading.Thread(
        target=lambda: found.append(
            cache.wait_for_announced("default/bgp", {first.name}, SIGNAL_TIMEOUT)
        )
    )
    waiting.start()
    mark(store, first.name, NODE)
    waiting.join()
    ((marked,),) = found
    assert ipinstances.bgp_announced_for(marked) == NODE
