"""The reconcile worker: the one thread that owns the node's datapath (hybridnet.daemon.datapath).

Informer changes and CNI ADD/DEL call :meth:`ReconcileWorker.wake`; wakes that arrive while a
reconcile runs are coalesced into one more run. Without any wake it reconciles every
``resync_period`` seconds anyway, which is what heals a route, rule, FDB or neighbour entry
deleted behind its back: drift is corrected within one resync period (plus one reconcile).

Each run builds a fresh NodeView from the daemon's informers and the node's labels, reconciles,
and hands the result to ``on_result`` (NodeInfo publishing, metrics). The worker never stops
on an error: a failed run is logged and the next wake or resync tries again.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

from hybridnet.daemon.datapath.errors import DatapathError
from hybridnet.daemon.datapath.view import NodeView
from hybridnet.logs import fields

if TYPE_CHECKING:  # the daemon's command line reads DEFAULT_RESYNC_PERIOD without the datapath
    from hybridnet.daemon.datapath.reconcile import Reconciler, ReconcileResult

log = logging.getLogger(__name__)

DEFAULT_RESYNC_PERIOD = 30.0
NOT_SYNCED_RETRY = 0.1
"""Seconds between looks while the informers have not listed yet."""


class ReconcileWorker:
    def __init__(
        self,
        reconciler: Reconciler,
        view: Callable[[], NodeView | None],
        on_result: Callable[[ReconcileResult, bool], None],
        resync_period: float = DEFAULT_RESYNC_PERIOD,
    ):
        """``view`` returns None while the informers have not listed yet (nothing is
        reconciled from a partial picture: it could delete what a missing object needs).
        ``on_result`` gets each result and whether what it applied was drift: the view was
        the previous run's and that run had converged, so the kernel was changed by someone
        else in between."""
        self.reconciler = reconciler
        self.view = view
        self.on_result = on_result
        self.resync_period = resync_period
        self.last: ReconcileResult | None = None
        """The latest result, set once ``on_result`` has handled it."""
        self._last_view: NodeView | None = None
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._done = threading.Condition()
        self.runs = 0
        """Completed reconciles (successful or not): tests and CHECK wait on it."""
        self._thread: threading.Thread | None = None
        self._no_view = False

    def start(self) -> ReconcileWorker:
        self._thread = threading.Thread(target=self._run, name="datapath-reconcile", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def wake(self) -> None:
        """Ask for a reconcile soon (cheap; safe from any thread)."""
        self._wake.set()

    def wait_for_run(self, after: int, timeout: float) -> bool:
        """Wait until more than ``after`` reconciles have completed."""
        with self._done:
            return self._done.wait_for(lambda: self.runs > after, timeout)

    def wait_for_view(self, wanted: Callable[[NodeView], bool], timeout: float) -> bool:
        """Wake the worker and wait until a completed reconcile was built from a view that
        ``wanted`` accepts: CNI ADD returns only once the node-wide objects its pod relies on
        (a proxy neighbour entry, a route) were built from a view that holds the pod."""
        self.wake()
        with self._done:
            return self._done.wait_for(
                lambda: self._last_view is not None and wanted(self._last_view), timeout
            )

    def _run(self) -> None:
        waiting_for_view = False
        while not self._stop.is_set():
            # Until the informers have listed, look again soon: their last change may have
            # come just before they said so, and the resync is long.
            self._wake.wait(NOT_SYNCED_RETRY if waiting_for_view else self.resync_period)
            if self._stop.is_set():
                return
            self._wake.clear()
            waiting_for_view = self.run_once() is None and self._no_view

    def run_once(self) -> ReconcileResult | None:
        result = None
        self._no_view = False
        try:
            view = self.view()
            self._no_view = view is None
            if view is not None:
                result = self.reconciler.reconcile(view)
                previous = self.last
                drift = view == self._last_view and previous is not None and previous.converged
                self._last_view = view
                try:
                    self.on_result(result, drift)
                finally:
                    self.last = result  # after publishing: readiness waits for both
        except DatapathError as exc:
            log.warning("datapath reconcile failed", extra=fields(error=str(exc)))
        except Exception as exc:  # the worker outlives any bug in one run
            log.exception("datapath reconcile crashed", extra=fields(error=str(exc)))
        with self._done:
            self.runs += 1
            self._done.notify_all()
        return result
