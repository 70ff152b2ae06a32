"""Stopping the pod controller is bounded: a worker stuck in a slow call (an API server that
does not answer) does not hold the manager's shutdown beyond its budget."""

from __future__ import annotations

import threading
from pathlib import Path

from hybridnet.ipamcore.allocator import Allocator
from hybridnet.ipamstore.service import IPAMService
from hybridnet.manager.caches import ClusterCache
from hybridnet.manager.pods import PodController
from hybridnet.store.sqlite import SQLiteStore


def test_a_stuck_worker_does_not_hold_up_stop(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "s.db")
    cache = ClusterCache(store, "kube-system", watch_timeout=1)
    controller = PodController(
        store, IPAMService(store, Allocator(), "kube-system"), cache, workers=2
    )
    release = threading.Event()
    entered = threading.Event()

    def stuck(key: str) -> None:
        entered.set()
        release.wait(30)

    controller.reconcile = stuck  # type: ignore[method-assign]
    cache.start(threading.Event())
    controller.start()
    try:
        controller.queue.add("default/web")
        assert entered.wait(5)
        controller.stop(timeout=1.0)
        # stop() came back while the worker is still stuck (it would be for 30 s): it did
        # not wait for it.
        assert not release.is_set()
        assert any(thread.is_alive() for thread in controller._threads)
    finally:
        release.set()
        cache.stop()
        store.close()
