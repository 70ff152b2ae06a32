"""When the pod controller takes a pod for deleted: it has had the pod in its cache and the pod
is gone from it, or the pod held addresses when the manager started and was not there when its
pod cache listed. A pod it has not heard of yet may only be on its way (the pods' watch can be
behind the IPInstances'); that case is in test_split_brain_races."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from hybridnet.api.builtin import Pod
from hybridnet.lab.manager import IPAM_NAMESPACE, Harness
from hybridnet.store.sqlite import SQLiteStore
from tests.unit.manager.replicas import Journal, Replica, stored_addresses


@pytest.fixture
def journal(tmp_path: Path) -> Iterator[Journal]:
    store = Journal(SQLiteStore(tmp_path / "store.db"))
    harness = Harness(store, "t")
    harness.namespace(IPAM_NAMESPACE)
    harness.namespace("apps")
    harness.node("n1")
    harness.underlay("u")
    harness.subnet("v4", "u", "198.19.1.0/24")
    yield store
    store.close()


def test_a_pod_deleted_while_no_manager_ran_is_released_when_one_starts(
    journal: Journal,
) -> None:
    harness = Harness(journal, "t")
    first = Replica(journal)
    first.hear()
    harness.pod("apps", "gone", node="n1")
    harness.pod("apps", "running", node="n1")
    first.serve()
    first.close()
    harness.delete_pod("apps", "gone")
    assert len(stored_addresses(journal, "apps/gone")) == 1

    successor = Replica(journal)
    successor.start()
    try:
        assert successor.queued() == ["apps/gone"]
        successor.controller.reconcile("apps/gone")
        successor.serve()
        assert stored_addresses(journal, "apps/gone") == []
        assert successor.addresses("apps/gone") == []
        assert len(stored_addresses(journal, "apps/running")) == 1
    finally:
        successor.close()


def test_a_pod_seen_and_then_deleted_is_released(journal: Journal) -> None:
    harness = Harness(journal, "t")
    replica = Replica(journal)
    replica.hear()
    harness.pod("apps", "p", node="n1")
    replica.serve()
    assert len(stored_addresses(journal, "apps/p")) == 1
    harness.delete_pod("apps", "p")
    replica.serve()
    assert stored_addresses(journal, "apps/p") == []
    assert replica.addresses("apps/p") == []
    replica.close()


def test_a_statefulset_pod_deleted_while_no_manager_ran_keeps_its_address(
    journal: Journal,
) -> None:
    harness = Harness(journal, "t")
    first = Replica(journal)
    first.hear()
    harness.pod("apps", "db-0", node="n1", statefulset="db")
    first.serve()
    first.close()
    kept = stored_addresses(journal, "apps/db-0")
    harness.delete_pod("apps", "db-0")

    successor = Replica(journal)
    successor.start()
    try:
        assert successor.queued() == ["apps/db-0"]
        successor.controller.reconcile("apps/db-0")  # before the handlers heard the lists
        assert stored_addresses(journal, "apps/db-0") == kept
        successor.serve()
        assert stored_addresses(journal, "apps/db-0") == kept
        assert successor.addresses("apps/db-0") == kept
    finally:
        successor.close()


def test_a_statefulset_pod_kubelet_finished_while_deleting_keeps_its_address(
    journal: Journal,
) -> None:
    """The real kubelet puts a pod it is deleting into a terminal phase once its containers
    exited (Succeeded here), before the object is gone: that is a deletion, and the StatefulSet
    re-creates the pod, so its address stays; a pod that finished on its own is released."""
    harness = Harness(journal, "t")
    replica = Replica(journal)
    replica.hear()
    harness.pod("apps", "db-0", node="n1", statefulset="db")
    harness.pod("apps", "db-1", node="n1", statefulset="db")
    replica.serve()
    kept = stored_addresses(journal, "apps/db-0")
    assert len(kept) == 1
    pod = journal.get(Pod, "db-0", "apps")
    pod.metadata.deletion_timestamp = "2026-01-01T00:00:00Z"
    journal.update(pod)
    harness.set_phase("apps", "db-0", "Succeeded")
    harness.set_phase("apps", "db-1", "Succeeded")  # finished without a deletion
    replica.serve()
    assert stored_addresses(journal, "apps/db-0") == kept
    assert stored_addresses(journal, "apps/db-1") == []
    harness.delete_pod("apps", "db-0")
    replica.serve()
    assert stored_addresses(journal, "apps/db-0") == kept
    replica.close()
