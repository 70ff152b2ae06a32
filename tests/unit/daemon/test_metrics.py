"""The daemon reports CNI request latency by command and result, in Prometheus format, on its
/metrics endpoint over IPv4 and IPv6."""

from __future__ import annotations

import socket
from pathlib import Path

from hybridnet.daemon.service import DaemonConfig, DaemonService
from hybridnet.metrics import LATENCY_BUCKETS, MetricsServer, new_registry, parse_address
from hybridnet.rpc import daemon_pb2 as pb
from hybridnet.store.sqlite import SQLiteStore
from tests.scrape import scrape, value
from tests.unit.daemon.cache_helpers import eventually


def test_status_calls_are_counted_by_result(tmp_path: Path) -> None:
    registry = new_registry()
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

    hosts = ["127.0.0.1"]
    try:
        socket.socket(socket.AF_INET6).close()
        hosts.append("::1")
    except OSError:
        pass  # no IPv6 in this kernel: the empty host binds 0.0.0.0
    with MetricsServer(registry, *parse_address(":0")) as server:
        for host in hosts:
            families = scrape(host, server.port)
            latency = families["hybridnet_cni_request_seconds"]
            assert latency.type == "histogram"
            assert latency.documentation == (
                "CNI requests served by the daemon, by command and result."
            )
            assert value(families, "hybridnet_cni_request_seconds_count",
                         command="STATUS", result="ok") == calls  # fmt: skip
            bounds = [
                s.labels["le"]
                for s in latency.samples
                if s.name.endswith("_bucket") and s.labels["command"] == "STATUS"
            ]
            assert bounds == [*(repr(b) for b in LATENCY_BUCKETS), "+Inf"]
