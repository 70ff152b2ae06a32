"""Recording the sandbox in IPInstance status: retried on a newer version, and a failure when the
object keeps changing (ADD then answers "try again later" and rolls its attachment back)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from hybridnet.api.meta import ObjectMeta
from hybridnet.api.resources import Address, IPInstance, IPInstanceSpec
from hybridnet.daemon.service import SANDBOX_WRITE_ATTEMPTS, DaemonConfig, DaemonService
from hybridnet.metrics import new_registry
from hybridnet.rpc import daemon_pb2 as pb
from hybridnet.store.errors import Conflict
from hybridnet.store.sqlite import SQLiteStore


class ConflictingStore(SQLiteStore):
    """Stand-in for a store whose object another writer changes ``conflicts`` times in a row."""

    def __init__(self, path: Path, conflicts: int):
        super().__init__(path)
        self.conflicts = conflicts
        self.writes = 0

    def update_status(self, obj: Any) -> Any:
        self.writes += 1
        if self.writes <= self.conflicts:
            raise Conflict("the object has been modified")
        return super().update_status(obj)


def service_with(store: SQLiteStore) -> tuple[DaemonService, IPInstance]:
    spec = IPInstanceSpec(
        network="pods", subnet="pods-v4", address=Address("4", "198.19.0.5/24", "02:00:c6:13:00:05")
    )
    stored = store.create(IPInstance(ObjectMeta(name="198-19-0-5", namespace="kube-system"), spec))
    return DaemonService(store, DaemonConfig(node_name="n1"), new_registry()), stored


ATTACH = pb.Attachment(container_id="c1", pod_namespace="default", pod_name="web")


def test_a_conflict_is_retried_on_the_newer_version(tmp_path: Path) -> None:
    store = ConflictingStore(tmp_path / "s.db", conflicts=SANDBOX_WRITE_ATTEMPTS - 1)
    service, stored = service_with(store)
    service._record_sandbox([stored], ATTACH)
    written = store.get(IPInstance, stored.name, "kube-system")
    assert (written.status.sandbox_id, written.status.node_name) == ("c1", "n1")
    assert store.writes == SANDBOX_WRITE_ATTEMPTS


def test_an_object_that_keeps_changing_fails_instead_of_passing_silently(tmp_path: Path) -> None:
    store = ConflictingStore(tmp_path / "s.db", conflicts=SANDBOX_WRITE_ATTEMPTS)
    service, stored = service_with(store)
    with pytest.raises(Conflict):
        service._record_sandbox([stored], ATTACH)
    assert store.writes == SANDBOX_WRITE_ATTEMPTS
    assert store.get(IPInstance, stored.name, "kube-system").status.sandbox_id is None
