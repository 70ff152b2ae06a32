"""The daemon's gRPC server on a unix socket only root can use, with gRPC health."""

from __future__ import annotations

import os
from concurrent import futures
from pathlib import Path

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from hybridnet.rpc import daemon_pb2_grpc as pb_grpc

SERVICE_NAME = "hybridnet.rpc.v1.Daemon"


WORKERS = 256
"""Calls served at once. Kubelet starts every pod it is given at once (up to its max-pods, 110
by default), and each ADD holds its thread while it waits for the manager's allocation and the
node datapath. With 16, a burst of 33 pods per node on a loaded bed had all 16 busy: the other
ADDs, and the probes' STATUS calls behind them, queued until kubelet's liveness probe timed out
and restarted the daemon in the middle of the burst. A waiting thread costs little."""


def serve(
    service: pb_grpc.DaemonServicer, socket_path: Path, workers: int = WORKERS
) -> grpc.Server:
    """Start serving on ``socket_path`` (mode 0600, directory 0700); a stale socket file from
    a previous run is replaced."""
    socket_path.parent.mkdir(parents=True, exist_ok=True)
    socket_path.parent.chmod(0o700)
    socket_path.unlink(missing_ok=True)
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=workers))
    pb_grpc.add_DaemonServicer_to_server(service, server)
    checker = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(checker, server)
    old_umask = os.umask(0o177)  # the socket is created 0600 from the first moment
    try:
        server.add_insecure_port(f"unix:{socket_path}")
        server.start()
    finally:
        os.umask(old_umask)
    socket_path.chmod(0o600)
    checker.set(SERVICE_NAME, health_pb2.HealthCheckResponse.SERVING)
    checker.set("", health_pb2.HealthCheckResponse.SERVING)
    return server
