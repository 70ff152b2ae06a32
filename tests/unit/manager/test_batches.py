"""The loop behind the status writer and node labeler: marks coalesce, oldest first, retries
when the store is unavailable, a resync from the caches, the last marks synced on stop."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

from hybridnet.manager import batches
from hybridnet.manager.batches import BatchLoop, OwnWrites
from hybridnet.store.errors import Unavailable
from tests.store_contract import wait_until


class Recorder:
    """A sync that records keys, and can be held inside a call until released."""

    def __init__(self) -> None:
        self.synced: list[str] = []
        self.entered = threading.Event()
        self.release = threading.Event()
        self.release.set()
        self.failures: dict[str, int] = {}

    def __call__(self, key: str) -> None:
        self.entered.set()
        self.release.wait(10)
        if self.failures.get(key, 0) > 0:
            self.failures[key] -= 1
            raise Unavailable("connection refused")
        self.synced.append(key)


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


@pytest.fixture
def loop(recorder: Recorder) -> Iterator[BatchLoop]:
    running = BatchLoop("test", recorder, lambda: ["x", "y"], interval=0.01, resync=3600)
    running.start()
    yield running
    running.stop()


def test_marks_of_one_key_during_a_sync_give_one_more_sync(
    loop: BatchLoop, recorder: Recorder
) -> None:
    recorder.release.clear()
    loop.mark("a")
    assert recorder.entered.wait(10)
    for _ in range(5):  # while "a" is being synced
        loop.mark("a")
    recorder.release.set()
    wait_until(lambda: len(recorder.synced) == 2, "a synced, and once more")
    loop.mark("b")  # behind any further "a" still waiting: oldest first
    wait_until(lambda: "b" in recorder.synced, "b synced")
    assert recorder.synced == ["a", "a", "b"]


def test_an_unavailable_store_is_tried_again(
    loop: BatchLoop, recorder: Recorder, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(batches, "RETRY_SECONDS", 0.01)
    recorder.failures["a"] = 2
    loop.mark("a")
    wait_until(lambda: recorder.synced == ["a"], "a synced on the third try")


def test_every_key_is_synced_again_at_each_resync(recorder: Recorder) -> None:
    running = BatchLoop("test", recorder, lambda: ["x", "y"], interval=0.01, resync=0.05)
    running.start()
    try:
        wait_until(lambda: recorder.synced.count("y") >= 2, "two resyncs")
        assert set(recorder.synced) == {"x", "y"}
    finally:
        running.stop()


def test_stop_syncs_what_is_still_marked(recorder: Recorder) -> None:
    running = BatchLoop("test", recorder, lambda: [], interval=3600, resync=3600)
    running.start()
    running.mark("first")
    wait_until(lambda: recorder.synced == ["first"], "the first batch, at once")
    running.mark("second")  # waits for the next batch, an hour away
    assert running.stop(timeout=10)
    assert recorder.synced == ["first", "second"]


def test_own_writes_hold_back_a_cache_that_has_not_seen_them() -> None:
    own = OwnWrites()
    assert not own.cache_is_behind("subnet/a", "5")
    own.wrote("subnet/a", "5")  # written from the cached version 5
    assert own.cache_is_behind("subnet/a", "5")
    assert not own.cache_is_behind("subnet/a", "6")  # the write's own event arrived
    own.failed("subnet/a")
    assert not own.cache_is_behind("subnet/a", "5")
