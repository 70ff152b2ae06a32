"""Stopping the pod controller is bounded: a worker stuck in a slow call (an API server that
does not answer) does not hold the manager's shutdown beyond its budget."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from hybridnet.ipamcore.allocator import Allocator
from hybridnet.ipamstore.service import IPAMService
from hybridnet.manager.pods import PodController
from hybridnet.store.sqlite import SQLiteStore


def test_a_stuck_worker_does_not_hold_up_stop(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "s.db")
    controller = PodController(
        store, IPAMService(store, Allocator(), "kube-system"), workers=2, watch_timeout=1
    )
    release = threading.Event()
    entered = threading.Event()

    def stuck(key: str) -> None:
        entered.set()
        release.wait(30)

    controller.reconcile = stuck  # type: ignore[method-assign]
    controller.start()
    try:
        controller.queue.add("default/web")
        assert entered.wait(5)
        started = time.monotonic()
        controller.stop(timeout=1.0)
        assert time.monotonic() - started < 3.0
    finally:
        release.set()
        store.close()
