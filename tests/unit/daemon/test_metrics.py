"""The daemon reports CNI request latency by command and result, in Prometheus format."""

from __future__ import annotations

from pathlib import Path

from hybridnet.daemon.service import DaemonConfig, DaemonService
from hybridnet.metrics import Registry
from hybridnet.rpc import daemon_pb2 as pb
from hybridnet.store.sqlite import SQLiteStore
from tests.unit.daemon.cache_helpers import eventually


def test_status_calls_are_counted_by_result(tmp_path: Path) -> None:
    registry = Registry()
    store = SQLiteStore(tmp_path / "s.db")
    service = DaemonService(store, DaemonConfig(node_name="n1"), registry).start()
    calls = 0

    def status() -> pb.StatusReply:
        nonlocal calls
        calls += 1
        reply: pb.StatusReply = service.Status(pb.StatusRequest(), None)
        return reply

    eventually(lambda: status().ready, "the daemon's caches sync")
    store.close()  # a closed store: STATUS answers "not ready", still a served request
    eventually(lambda: not status().ready, "the closed store is noticed")
    reply = status()
    assert not reply.ready and "closed" in reply.reason
    service.stop()
    text = registry.render()
    assert f'hybridnet_cni_request_seconds_count{{command="STATUS",result="ok"}} {calls}' in text
    assert "# TYPE hybridnet_cni_request_seconds histogram" in text
