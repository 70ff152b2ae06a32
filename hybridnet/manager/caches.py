"""The leader's view of the cluster: one informer per kind it reads, shared by its controllers.

The pod controller, the status writer and the node labeler all react to the same Networks,
Subnets and Nodes (the node labeler also reads NodeInfos); each subscribes to the kinds it
needs instead of listing them on a timer, so once the caches are synced the manager sends the
API server watches and writes only.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any, Generic

from hybridnet.api.builtin import Namespace, Node, Pod
from hybridnet.api.resources import IPInstance, Network, NodeInfo, Subnet
from hybridnet.logs import fields
from hybridnet.manager.startup import StartupAborted, StartupFailed, is_transient
from hybridnet.store.informer import Informer
from hybridnet.store.interface import R, Store, WatchEvent

log = logging.getLogger(__name__)

Handler = Callable[[WatchEvent[R]], None]


class Watched(Generic[R]):
    """One kind's informer, and the handlers that hear each of its events in order."""

    def __init__(
        self,
        store: Store,
        kind: type[R],
        *,
        namespace: str | None = None,
        watch_timeout: float,
    ):
        self._handlers: list[Handler[R]] = []
        self.informer = Informer(
            store, kind, self._dispatch, namespace=namespace, watch_timeout=watch_timeout
        )

    def subscribe(self, handler: Handler[R]) -> None:
        """Hear every event from now on; subscribe before the caches start to hear them all."""
        self._handlers.append(handler)

    def get(self, name: str, namespace: str = "") -> R | None:
        return self.informer.cache.get((namespace, name))

    def items(self) -> list[R]:
        return list(self.informer.cache.values())

    def _dispatch(self, event: WatchEvent[R]) -> None:
        for handler in self._handlers:
            try:
                handler(event)
            except Exception:  # one subscriber's bug must not starve the others
                log.exception(
                    "event handler failed",
                    extra=fields(
                        kind=event.object.KIND.kind,
                        event=event.type,
                        name=event.object.metadata.name,
                    ),
                )


class ClusterCache:
    """Informers for every kind the leader reads (IPInstances only in its namespace)."""

    def __init__(self, store: Store, ipam_namespace: str, *, watch_timeout: float = 30.0):
        self.watch_timeout = watch_timeout
        self.networks = Watched(store, Network, watch_timeout=watch_timeout)
        self.subnets = Watched(store, Subnet, watch_timeout=watch_timeout)
        self.instances = Watched(
            store, IPInstance, namespace=ipam_namespace, watch_timeout=watch_timeout
        )
        self.namespaces = Watched(store, Namespace, watch_timeout=watch_timeout)
        self.nodes = Watched(store, Node, watch_timeout=watch_timeout)
        self.node_infos = Watched(store, NodeInfo, watch_timeout=watch_timeout)
        self.pods = Watched(store, Pod, watch_timeout=watch_timeout)
        self._dependencies: list[Informer[Any]] = [
            self.networks.informer,
            self.subnets.informer,
            self.instances.informer,
            self.namespaces.informer,
            self.nodes.informer,
            self.node_infos.informer,
        ]

    def start(self, stopping: threading.Event) -> None:
        """Start every informer and wait for its cache; pods last, so that a pod's first pass
        finds what it depends on. Waits for as long as the store is only unavailable (each
        informer retries with backoff); raises StartupFailed on an error that does not heal,
        StartupAborted when ``stopping`` is set first."""
        for informer in self._dependencies:
            informer.start()
        for informer in self._dependencies:
            _wait_synced(informer, stopping)
        self.pods.informer.start()
        _wait_synced(self.pods.informer, stopping)

    def stop(self, timeout: float = 10.0) -> None:
        """Stop every informer, waiting at most about ``timeout`` seconds in all."""
        informers = [self.pods.informer, *self._dependencies]
        for informer in informers:
            informer.signal_stop()
        # A watch blocked on a quiet stream ends at its server-side timeout. Wait that long
        # (they were all asked at once, so in parallel) but never more than a few seconds:
        # the threads are daemons and a process on its way out must not hang on them.
        deadline = time.monotonic() + min(self.watch_timeout + 1, 5, timeout)
        for informer in informers:
            informer.stop(timeout=max(deadline - time.monotonic(), 0))


SYNC_CHECK_SECONDS = 0.1
"""How often a start-up waiting for a cache looks at the informer's last error."""


def _wait_synced(informer: Informer[Any], stopping: threading.Event) -> None:
    step = f"sync the cache of {informer.kind.KIND.plural}"
    while not informer.synced.wait(SYNC_CHECK_SECONDS):
        error = informer.last_error
        if error is not None and not is_transient(error):
            raise StartupFailed(step, error)
        if stopping.is_set():
            raise StartupAborted(step)
