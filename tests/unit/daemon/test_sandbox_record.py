"""Recording the sandbox in IPInstance status: a write that meets a newer version is retried
on that version once the daemon's cache has it (no read from the store), and fails when the
object keeps changing (ADD then answers "try again later" and rolls its attachment back)."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from hybridnet.api.resources import IPInstance
from hybridnet.daemon.service import SANDBOX_WRITE_ATTEMPTS, DaemonConfig, DaemonService
from hybridnet.metrics import new_registry
from hybridnet.rpc import daemon_pb2 as pb
from hybridnet.store.errors import Conflict
from hybridnet.store.sqlite import SQLiteStore
from tests.unit.daemon.cache_helpers import IPAM_NAMESPACE, NODE, SIGNAL_TIMEOUT, instance


class ContendedStore(SQLiteStore):
    """A store where another writer changes the IPInstance's status just before each of the
    daemon's first ``conflicts`` writes, which then meet a newer version."""

    def __init__(self, path: Path, conflicts: int):
        super().__init__(path)
        self.conflicts = conflicts
        self.writes = 0
        self.gets = 0

    def get(self, *args: Any, **kwargs: Any) -> Any:
        self.gets += 1
        return super().get(*args, **kwargs)

    def update_status(self, obj: Any) -> Any:
        self.writes += 1
        if self.writes <= self.conflicts:
            other = copy.deepcopy(super().get(type(obj), obj.name, obj.namespace))
            other.status.phase = f"changed-{self.writes}"
            super().update_status(other)
            raise Conflict("the object has been modified")
        return super().update_status(obj)


ATTACH = pb.Attachment(container_id="c1", pod_namespace="default", pod_name="web")


@pytest.fixture
def service_with(tmp_path: Path) -> Iterator[Any]:
    started: list[DaemonService] = []

    def make(conflicts: int) -> tuple[ContendedStore, DaemonService, IPInstance]:
        store = ContendedStore(tmp_path / f"s{conflicts}.db", conflicts)
        store.create(instance("web", "198.19.0.5"))
        config = DaemonConfig(node_name=NODE, ipam_namespace=IPAM_NAMESPACE, watch_timeout=0.5)
        service = DaemonService(store, config, new_registry()).start()
        started.append(service)
        (cached,) = service.cache.wait_for_pod("default/web", SIGNAL_TIMEOUT)
        store.gets = 0
        return store, service, cached

    yield make
    for service in started:
        service.stop()


def test_a_conflict_is_retried_on_the_newer_version(service_with: Any) -> None:
    store, service, cached = service_with(SANDBOX_WRITE_ATTEMPTS - 1)
    service._record_sandbox([cached], ATTACH)
    written = SQLiteStore.get(store, IPInstance, cached.name, IPAM_NAMESPACE)
    assert (written.status.sandbox_id, written.status.node_name) == ("c1", NODE)
    assert store.writes == SANDBOX_WRITE_ATTEMPTS
    assert store.gets == 0  # each newer version came from the cache
    assert cached.status.sandbox_id is None  # the cache's own object was not changed


def test_an_object_that_keeps_changing_fails_instead_of_passing_silently(
    service_with: Any,
) -> None:
    store, service, cached = service_with(SANDBOX_WRITE_ATTEMPTS)
    with pytest.raises(Conflict):
        service._record_sandbox([cached], ATTACH)
    assert store.writes == SANDBOX_WRITE_ATTEMPTS
    stored = SQLiteStore.get(store, IPInstance, cached.name, IPAM_NAMESPACE)
    assert stored.status.sandbox_id is None
