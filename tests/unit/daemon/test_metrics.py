"""The daemon reports CNI request latency by command and result, in Prometheus format."""

from __future__ import annotations

from pathlib import Path

from hybridnet.daemon.service import DaemonConfig, DaemonService
from hybridnet.metrics import Registry
from hybridnet.rpc import daemon_pb2 as pb
from hybridnet.store.sqlite import SQLiteStore


def test_status_calls_are_counted_by_result(tmp_path: Path) -> None:
    registry = Registry()
    store = SQLiteStore(tmp_path / "s.db")
    service = DaemonService(store, DaemonConfig(node_name="n1"), registry)
    assert service.Status(pb.StatusRequest(), None).ready
    store.close()  # a closed store: STATUS answers "not ready", still a served request
    reply = service.Status(pb.StatusRequest(), None)
    assert not reply.ready and "closed" in reply.reason
    text = registry.render()
    assert 'hybridnet_cni_request_seconds_count{command="STATUS",result="ok"} 2' in text
    assert "# TYPE hybridnet_cni_request_seconds histogram" in text
