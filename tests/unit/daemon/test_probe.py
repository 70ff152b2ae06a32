"""The daemon's gRPC server serves a burst of calls at once, and ``hybridnet-daemon probe``
(kubelet's exec probes, every ten seconds) answers from a STATUS call without loading grpcio or
the datapath."""

from __future__ import annotations

import contextlib
import subprocess
import sys
import threading
from collections.abc import Iterator
from concurrent import futures
from pathlib import Path
from typing import Any

import grpc
import pytest

from hybridnet.daemon import probe
from hybridnet.daemon.server import serve
from hybridnet.rpc import daemon_pb2 as pb
from hybridnet.rpc import daemon_pb2_grpc as pb_grpc
from hybridnet.rpc.client import DaemonClient

BURST = 40
"""More calls than the 16 workers the server used to have: a pod burst on one node is 33."""
ARRIVAL_BOUND = 20.0
"""Forty local connections arrive within milliseconds; the rest is slack for a loaded machine.
A server that cannot hold them all at once never fills the barrier, however long it waits."""


class StatusServicer(pb_grpc.DaemonServicer):
    """STATUS answers ``ready``; with a barrier, each call first waits for all of the burst."""

    def __init__(self, ready: bool, barrier: threading.Barrier | None = None) -> None:
        self.ready = ready
        self.barrier = barrier

    def Status(self, request: pb.StatusRequest, context: Any) -> pb.StatusReply:
        if self.barrier is not None:
            self.barrier.wait(ARRIVAL_BOUND)
        return pb.StatusReply(ready=self.ready, reason="" if self.ready else "caches listing")


@pytest.fixture
def socket_path(tmp_path: Path) -> Path:
    return tmp_path / "run" / "daemon.sock"


@contextlib.contextmanager
def serving(servicer: pb_grpc.DaemonServicer, path: Path) -> Iterator[grpc.Server]:
    server = serve(servicer, path)
    try:
        yield server
    finally:
        server.stop(grace=None).wait()


def test_a_burst_of_calls_is_served_at_once(socket_path: Path) -> None:
    barrier = threading.Barrier(BURST)
    client = DaemonClient(str(socket_path), ARRIVAL_BOUND + 5)
    with (
        serving(StatusServicer(True, barrier), socket_path),
        futures.ThreadPoolExecutor(BURST) as pool,
    ):
        replies = list(pool.map(lambda _: client.status(), range(BURST)))
    assert all(reply.ready for reply in replies)
    assert not barrier.broken


def test_liveness_needs_an_answer_and_readiness_a_ready_one(socket_path: Path) -> None:
    with serving(StatusServicer(False), socket_path):
        assert probe.problem(socket_path, 5.0, ready=False) is None
        assert probe.problem(socket_path, 5.0, ready=True) == "not ready: caches listing"
    gone = probe.problem(socket_path, 5.0, ready=False)
    assert gone is not None and "not available" in gone


def test_the_probe_command_loads_neither_grpcio_nor_the_datapath() -> None:
    heavy = ("grpc", "pyroute2", "kubernetes", "prometheus_client", "hybridnet.daemon.service")
    script = (
        "import sys\n"
        "from hybridnet.daemon import main\n"
        "main.parse_args(['--socket', '/nonexistent.sock', 'probe', '--ready'])\n"
        "main.probe.problem(main.Path('/nonexistent.sock'), 1.0, True)\n"
        f"print(sorted(m for m in sys.modules if m.startswith({heavy!r})))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=60
    )
    assert done.stdout.strip() == "[]"
