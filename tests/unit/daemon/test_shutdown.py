"""A daemon told to stop ends at once, not after its watches' next re-check."""

from __future__ import annotations

from pathlib import Path

from hybridnet.daemon.service import DaemonConfig, DaemonService
from hybridnet.metrics import new_registry
from hybridnet.store.sqlite import SQLiteStore
from tests.unit.daemon.cache_helpers import IPAM_NAMESPACE, NODE, SIGNAL_TIMEOUT


def test_closing_the_store_after_stop_ends_the_informers_at_once(tmp_path: Path) -> None:
    """A daemon told to stop used to wait out its watches' re-check (5 s) before exiting: with
    an hour-long re-check, the informers end at all only because the store's close woke them."""
    store = SQLiteStore(tmp_path / "store.db", recheck_interval=3600)
    config = DaemonConfig(node_name=NODE, ipam_namespace=IPAM_NAMESPACE, watch_timeout=3600)
    service = DaemonService(store, config, new_registry()).start()
    assert service.cache.instances.synced.wait(SIGNAL_TIMEOUT)
    service.stop()
    store.close()
    service.join(SIGNAL_TIMEOUT)
    threads = [informer._thread for informer, _ in service.cache._informers]
    assert threads and not any(t is not None and t.is_alive() for t in threads)
