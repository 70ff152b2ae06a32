"""``hybridnet-daemon probe``: is the daemon on this node serving? For Kubernetes exec probes,
which cannot speak gRPC over a unix socket themselves.

Liveness asks gRPC health (the process serves its socket); readiness (``--ready``) asks the
daemon's CNI STATUS, answered from its informers: ready once they have listed and while the
store answers their watches (no request to the store per probe). A daemon whose API server is
unreachable is not ready, but restarting it would not help, so it stays live.
"""

from __future__ import annotations

from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from hybridnet.daemon.server import SERVICE_NAME
from hybridnet.rpc.client import DaemonClient, DaemonError


def problem(socket_path: Path, timeout: float, ready: bool) -> str | None:
    """None when the daemon at ``socket_path`` is serving (and ``ready``); else why not."""
    if ready:
        try:
            status = DaemonClient(str(socket_path), timeout).status()
        except DaemonError as exc:
            return str(exc)
        return None if status.ready else f"not ready: {status.reason}"
    with grpc.insecure_channel(f"unix:{socket_path}") as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        try:
            reply = stub.Check(health_pb2.HealthCheckRequest(service=SERVICE_NAME), timeout=timeout)
        except grpc.RpcError as exc:
            code = exc.code().name if isinstance(exc, grpc.Call) else "UNKNOWN"
            return f"{socket_path}: {code}"
    serving = health_pb2.HealthCheckResponse.SERVING
    if reply.status != serving:
        return f"{socket_path}: {health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)}"
    return None
