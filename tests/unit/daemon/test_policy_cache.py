"""The policy inputs in the daemon's cache, on the embedded store: every namespace's Pods and
NetworkPolicies, the Namespaces and every IPInstance of the IPAM namespace, a wake on each
change, no snapshot before all have listed, and readiness that counts them."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from hybridnet.api.builtin import Namespace, NetworkPolicy, Pod
from hybridnet.api.meta import ObjectMeta
from hybridnet.daemon.cache import NodeCache
from hybridnet.store.informer import Backoff
from tests.unit.daemon.cache_helpers import IPAM_NAMESPACE, NODE, CutOffStore, eventually, instance

QUICK = Backoff(initial=0.01, maximum=0.05)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[CutOffStore]:
    store = CutOffStore(tmp_path / "store.db")
    yield store
    store.close()


def test_the_snapshot_holds_every_namespace_s_objects_and_changes_wake(
    store: CutOffStore,
) -> None:
    cache = NodeCache(store, NODE, IPAM_NAMESPACE, watch_timeout=0.2, backoff=QUICK,
                      network_policy=True)  # fmt: skip
    woken = threading.Event()
    cache.on_change = woken.set
    cache.start()
    try:
        eventually(lambda: cache.problem() is None, "the cache syncs")
        assert cache.policy_view() is not None
        woken.clear()
        store.create(Namespace(ObjectMeta(name="x", labels={"team": "blue"})))
        store.create(Pod(ObjectMeta(name="a", namespace="x", labels={"pod": "a"})))
        store.create(Pod(ObjectMeta(name="b", namespace="y")))
        store.create(NetworkPolicy(ObjectMeta(name="deny", namespace="y"), body={"spec": {}}))
        store.create(instance("b", "198.19.0.6", namespace="y", node="another-node"))
        eventually(woken.is_set, "a policy input's change wakes the worker")

        def complete() -> bool:
            view = cache.policy_view()
            return view is not None and len(view.addresses) == 1 and len(view.policies) == 1

        eventually(complete, "every object reaches the snapshot")
        view = cache.policy_view()
        assert view is not None
        assert [(p.metadata.namespace, p.name) for p in view.pods] == [("x", "a"), ("y", "b")]
        assert [n.name for n in view.namespaces] == ["x"]
        assert [i.name for i in view.addresses] == ["198-19-0-6"]  # another node's pod: a peer
    finally:
        cache.stop()


def test_readiness_waits_for_the_policy_informers_and_the_datapath_does_not(
    store: CutOffStore,
) -> None:
    cache = NodeCache(store, NODE, IPAM_NAMESPACE, watch_timeout=0.2, backoff=QUICK,
                      network_policy=True)  # fmt: skip
    assert cache.policy is not None
    # Only the policy informers start: the datapath's have listed, the policy ones not yet.
    for informer, _ in cache.policy.informers:
        informer.synced.clear()
    for informer in (cache.instances, cache.networks, cache.subnets, cache.node_infos,
                     cache.nodes):  # fmt: skip
        informer.start()
    try:
        eventually(cache.synced, "the datapath's informers list")
        assert cache.policy_view() is None
        assert cache.problem() == "pods not listed yet"
    finally:
        cache.stop()


def test_without_enforcement_nothing_policy_related_is_watched(store: CutOffStore) -> None:
    cache = NodeCache(store, NODE, IPAM_NAMESPACE, watch_timeout=0.2, backoff=QUICK).start()
    try:
        eventually(lambda: cache.problem() is None, "the cache syncs")
        assert cache.policy is None
        assert cache.policy_view() is None
    finally:
        cache.stop()
