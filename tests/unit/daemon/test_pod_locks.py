"""One pod's ADD, DEL and GC never overlap; different pods never wait for each other."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest

from hybridnet.daemon import attachment
from hybridnet.daemon.pod_locks import PodLocks
from hybridnet.daemon.service import DaemonConfig, DaemonService
from hybridnet.metrics import new_registry
from hybridnet.rpc import daemon_pb2 as pb
from hybridnet.store.sqlite import SQLiteStore
from tests.unit.daemon.cache_helpers import IPAM_NAMESPACE, NODE, SIGNAL_TIMEOUT, instance


def test_one_pod_is_served_alone_and_forgotten_after() -> None:
    locks = PodLocks()
    inside = threading.Event()
    release = threading.Event()
    order: list[str] = []

    def first() -> None:
        with locks.hold("default/web"):
            inside.set()
            release.wait(SIGNAL_TIMEOUT)
            order.append("first")

    def second() -> None:
        with locks.hold("default/web"):
            order.append("second")

    one = threading.Thread(target=first)
    one.start()
    assert inside.wait(SIGNAL_TIMEOUT)
    two = threading.Thread(target=second)
    two.start()
    with locks.hold("default/other"):  # another pod is not held up by the first
        order.append("other")
    release.set()
    one.join(SIGNAL_TIMEOUT)
    two.join(SIGNAL_TIMEOUT)
    assert order == ["other", "first", "second"]
    assert len(locks) == 0


class NoContext:
    """The gRPC context of a call that succeeds (ADD aborts through it only on failure)."""

    def abort(self, code: Any, details: str) -> None:
        raise AssertionError(f"aborted: {code} {details}")

    def set_trailing_metadata(self, metadata: Any) -> None:
        raise AssertionError(f"aborted with {metadata}")


def test_a_del_sent_while_its_add_waits_for_the_allocation_waits_for_the_add(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The runtime's ADD timed out on its side and it sent DEL: the daemon's ADD is still
    waiting for the manager. The DEL must come after the ADD, or it would detach nothing and
    leave the ADD's veth behind for good."""
    calls: list[str] = []
    monkeypatch.setattr(attachment, "attach", lambda plan, config: calls.append("attach"))

    def detach(container_id: str, ifname: str) -> list[str]:
        calls.append("detach")
        return []

    monkeypatch.setattr(attachment, "detach", detach)
    store = SQLiteStore(tmp_path / "store.db")
    config = DaemonConfig(node_name=NODE, ipam_namespace=IPAM_NAMESPACE, watch_timeout=0.5)
    service = DaemonService(store, config, new_registry()).start()
    attach = pb.Attachment(
        container_id="c1", netns="/run/netns/x", ifname="eth0",
        pod_namespace="default", pod_name="web",
    )  # fmt: skip
    try:
        add = threading.Thread(
            target=service.Add, args=(pb.AddRequest(attachment=attach), NoContext())
        )
        add.start()
        assert service.cache.instances.synced.wait(SIGNAL_TIMEOUT)
        delete = threading.Thread(
            target=service.Delete, args=(pb.DeleteRequest(attachment=attach), NoContext())
        )
        delete.start()
        # The ADD holds the pod's lock and the DEL waits for it: two users.
        pause = threading.Event()
        for _ in range(int(SIGNAL_TIMEOUT / 0.01)):
            if service._pod_locks.users("default/web") == 2:
                break
            pause.wait(0.01)
        assert service._pod_locks.users("default/web") == 2
        assert calls == []  # the DEL has not detached under the waiting ADD
        store.create(instance("web", "198.19.0.5"))  # the manager's allocation arrives
        add.join(SIGNAL_TIMEOUT)
        delete.join(SIGNAL_TIMEOUT)
        assert calls == ["attach", "detach"]
    finally:
        service.stop()
        store.close()
