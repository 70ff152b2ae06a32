"""The BGP peers a standby manager replica keeps sessions with, from a Network informer of its
own (the leader's caches do not run before leadership).

Why a standby speaks at all: a peer keeps the routes of a session that ended (graceful
restart) until the same address connects again and sends End-of-RIB, or until the restart time
the session advertised ends. Manager replicas run on their node's network, so a replica that
comes back after a crash or a lost Lease (the kubelet restarts its container) speaks from the
address its previous life spoke from: connecting at once with an empty table and End-of-RIB
makes every peer drop what that life left stale, while the leader's session keeps the live
routes. And a replica that becomes leader finds its sessions up, so taking over costs an
announcement, not a connect.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from hybridnet.api.resources import Network
from hybridnet.bgp.model import Peer
from hybridnet.manager import bgp_plan
from hybridnet.store.informer import Informer
from hybridnet.store.interface import Store, WatchEvent

log = logging.getLogger(__name__)

SYNC_CHECK_SECONDS = 0.1
"""How often the watcher looks whether its first list arrived or it was asked to stop."""

PeersHandler = Callable[[tuple[Peer, ...]], None]


class PeerWatch:
    """Calls ``on_peers`` with every BGP network's usable peers once the Networks are listed,
    and again whenever they may have changed (from a thread of its own, one call at a time)."""

    def __init__(
        self,
        store: Store,
        settings: bgp_plan.SpeakerSettings,
        on_peers: PeersHandler,
        *,
        watch_timeout: float = 30.0,
    ):
        self._settings = settings
        self._on_peers = on_peers
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._informer = Informer(store, Network, self._event, watch_timeout=watch_timeout)
        self._thread = threading.Thread(target=self._run, name="bgp-standby", daemon=True)

    def start(self) -> None:
        self._informer.start()
        self._thread.start()

    def stop_calling(self) -> None:
        """No call of ``on_peers`` after this returns (the informer is asked to end too; join
        it with stop())."""
        self._stopping.set()
        self._wake.set()
        self._informer.signal_stop()
        if self._thread.is_alive():
            self._thread.join()

    def stop(self, timeout: float) -> None:
        self.stop_calling()
        self._informer.stop(timeout=timeout)

    def _event(self, event: WatchEvent[Network]) -> None:
        self._wake.set()

    def _run(self) -> None:
        while not self._informer.synced.wait(SYNC_CHECK_SECONDS):
            if self._stopping.is_set():
                return
        while not self._stopping.is_set():
            networks = list(self._informer.cache.values())
            peers = bgp_plan.network_plan(networks, [], self._settings).peers
            try:
                self._on_peers(peers)
            except Exception:  # the next change tries again; the standby must not die
                log.exception("standby BGP sessions could not be set up")
            self._wake.wait()
            self._wake.clear()
