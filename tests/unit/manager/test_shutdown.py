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
    """The worker can leave its call only once the test releases it, after stop() returned:
    stop() returning at all proves it did not wait for the worker (no timing is asserted)."""
    store = SQLiteStore(tmp_path / "s.db")
    cache = ClusterCache(store, "kube-system", watch_timeout=1)
    controller = PodController(
        store, IPAMService(store, Allocator(), "kube-system"), cache, workers=2
    )
    release = threading.Event()
    entered = threading.Event()
    left = threading.Event()

    def stuck(key: str) -> None:
        entered.set()
        release.wait()
        left.set()

    controller.reconcile = stuck  # type: ignore[method-assign]
    cache.start(threading.Event())
    controller.start()
    try:
        controller.queue.add("default/web")
        assert entered.wait(30)
        stopper = threading.Thread(target=controller.stop, kwargs={"timeout": 1.0})
        stopper.start()
        stopper.join(30)  # its budget is 1 s; 30 s only turns a hang into a failure
        assert not stopper.is_alive(), "stop() is waiting for the stuck worker"
        assert not left.is_set()  # stop() came back while the worker was still stuck
    finally:
        release.set()
        cache.stop()
        store.close()
    assert left.wait(30)  # and the worker was only held, not lost
