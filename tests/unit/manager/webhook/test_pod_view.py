"""Pod mutation reads Networks and Subnets from the webhook's caches (hybridnet.manager.
webhook.view.PodView), and decides a pod those caches refuse again on the store's state of the
moment: a pod naming a network created a moment ago is admitted even while the caches lack it."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from hybridnet.api import constants as c
from hybridnet.api.resources import Network
from hybridnet.manager.webhook.review import ReviewHandler
from hybridnet.manager.webhook.view import PodView, StoreView
from hybridnet.store.sqlite import SQLiteStore
from tests.unit.manager.stores import CountingStore
from tests.unit.manager.webhook.objects import apply_patch, overlay, pod_json, underlay
from tests.unit.manager.webhook.test_review import FakeView, review

SYNC_BOUND = 10.0
"""An informer over a local SQLite file lists within milliseconds; the rest is slack."""


def mutate(handler: ReviewHandler, pod: dict[str, Any]) -> dict[str, Any]:
    status, reply = handler("mutate", review("Pod", "CREATE", pod, group=""))
    assert status == 200
    response: dict[str, Any] = reply["response"]
    return response


def patched(pod: dict[str, Any], response: dict[str, Any]) -> dict[str, Any]:
    assert response["allowed"] is True, response
    result: dict[str, Any] = apply_patch(pod, json.loads(base64.b64decode(response["patch"])))
    return result


class NoListsView(FakeView):
    """The store's view for a test where pod mutation must not list anything from it."""

    def networks(self) -> list[Network]:
        raise AssertionError("pod mutation listed Networks from the store")


def test_pods_are_mutated_from_the_pod_view_without_listing_the_store() -> None:
    store_view = NoListsView(namespaces={"ns1": {c.ANNOTATION_SPECIFIED_NETWORK: "net1"}})
    cached = FakeView(network_list=[underlay("net1", {"rack": "r1"})])
    handler = ReviewHandler(store_view, pod_view=cached)
    result = patched(pod_json(), mutate(handler, pod_json()))
    # The namespace's annotations came from the store's view, the network from the cache.
    assert result["metadata"]["annotations"][c.ANNOTATION_NETWORK_TYPE] == "Underlay"
    assert result["spec"]["nodeSelector"]["rack"] == "r1"


def test_a_pod_the_caches_refuse_is_decided_on_the_store() -> None:
    fresh = FakeView(
        network_list=[underlay("net1", {"rack": "r1"}), underlay("new", {"rack": "r2"})]
    )
    behind = FakeView(network_list=[underlay("net1", {"rack": "r1"})])
    pod = pod_json(annotations={c.ANNOTATION_SPECIFIED_NETWORK: "new"})
    result = patched(pod, mutate(ReviewHandler(fresh, pod_view=behind), pod))
    assert result["spec"]["nodeSelector"]["rack"] == "r2"


def test_a_refusal_the_store_confirms_stands() -> None:
    both = FakeView(network_list=[underlay("net1", {"rack": "r1"})])
    pod = pod_json(annotations={c.ANNOTATION_SPECIFIED_NETWORK: "absent"})
    response = mutate(ReviewHandler(both, pod_view=FakeView(network_list=[])), pod)
    assert response["allowed"] is False and response["status"]["code"] == 400
    assert "network 'absent' does not exist" in response["status"]["message"]


@pytest.fixture
def sqlite(tmp_path: Path) -> Iterator[SQLiteStore]:
    store = SQLiteStore(tmp_path / "s.db")
    yield store
    store.close()


def test_pod_view_lists_from_the_store_until_synced_then_from_its_informers(
    sqlite: SQLiteStore,
) -> None:
    sqlite.create(overlay("ovl"))
    counting = CountingStore(sqlite)
    view = PodView(counting, watch_timeout=0.5)  # stop() ends a quiet watch at its timeout
    try:
        assert [n.name for n in view.networks()] == ["ovl"]  # not started: the store answers
        assert counting.calls()[("list", "networks")] == 1
        view.start()
        deadline = time.monotonic() + SYNC_BOUND
        while not view.cached and time.monotonic() < deadline:
            time.sleep(0.01)  # polling the informers' own signal, bounded by SYNC_BOUND
        assert view.cached
        lists_after_sync = counting.calls()[("list", "networks")]
        handler = ReviewHandler(StoreView(counting), pod_view=view)
        pod = pod_json(annotations={c.ANNOTATION_NETWORK_TYPE: "Overlay"})  # needs the networks
        for _ in range(3):
            result = patched(pod, mutate(handler, pod))
            assert result["metadata"]["annotations"][c.ANNOTATION_SPECIFIED_NETWORK] == "ovl"
        calls = counting.calls()
        assert calls[("list", "networks")] == lists_after_sync
        assert calls[("list", "subnets")] == 1  # the informer's own list
    finally:
        view.stop()
