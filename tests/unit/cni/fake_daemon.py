"""A scripted Daemon gRPC server on a unix socket, for the plugin's unit tests.

Stand-in: it replaces the real node daemon (hybridnet.daemon), which needs root, network
namespaces and a store; it is exercised for real in tests/netns and tests/cluster. This fake
speaks the same generated service on a real unix socket, so the plugin's gRPC client, the error
mapping (status codes, ``cni-code`` trailing metadata, deadlines, nothing listening) and the
executable itself are all real.
"""

from __future__ import annotations

import dataclasses
import threading
from concurrent import futures
from pathlib import Path
from typing import Any

import grpc

from hybridnet.rpc import daemon_pb2 as pb
from hybridnet.rpc import daemon_pb2_grpc as pb_grpc
from hybridnet.rpc import messages as m


@dataclasses.dataclass
class Failure:
    """How a scripted call fails: a gRPC status, and the ``cni-code`` metadata if any."""

    status: grpc.StatusCode
    message: str
    cni_code: str | None = None


def standard_reply(netns: str, ifname: str = "eth0") -> m.AddReply:
    """What the real daemon answers for a dual-stack pod (see hybridnet.daemon.service)."""
    return m.AddReply(
        interfaces=(m.Interface(ifname, "02:00:c6:13:00:05", netns, 1450),),
        ips=(
            m.IPConfig("198.19.0.5/24", "169.254.1.1", 0),
            m.IPConfig("2001:db8:1::5/64", "fe80::1", 0),
        ),
        routes=(m.Route("0.0.0.0/0", "169.254.1.1"), m.Route("::/0", "fe80::1")),
    )


def to_pb(reply: m.AddReply) -> pb.AddReply:
    """The plugin's light AddReply as the generated class the server sends (field by field, not
    through hybridnet.rpc.protowire, which the tests check)."""
    return pb.AddReply(
        interfaces=[pb.Interface(**i._asdict()) for i in reply.interfaces],
        ips=[pb.IPConfig(**ip._asdict()) for ip in reply.ips],
        routes=[pb.Route(**r._asdict()) for r in reply.routes],
    )


class FakeDaemon(pb_grpc.DaemonServicer):
    def __init__(self) -> None:
        self.requests: list[tuple[str, Any]] = []
        self.failures: dict[str, Failure] = {}
        self.held: set[str] = set()
        """Methods whose calls do not answer until :attr:`release` is set (a daemon that hangs:
        a deadline must fire, however slow the machine)."""
        self.release = threading.Event()
        self.add_reply: m.AddReply | None = None
        self.differences: list[str] = []
        self.status_reply = pb.StatusReply(ready=True)
        self.removed: list[str] = ["hyb0123456789a"]

    def calls(self, method: str) -> list[Any]:
        return [request for name, request in self.requests if name == method]

    def _script(self, method: str, request: Any, context: grpc.ServicerContext) -> None:
        self.requests.append((method, request))
        if method in self.held:
            self.release.wait()
        failure = self.failures.get(method)
        if failure is not None:
            if failure.cni_code is not None:
                context.set_trailing_metadata((("cni-code", failure.cni_code),))
            context.abort(failure.status, failure.message)

    def Add(self, request: pb.AddRequest, context: grpc.ServicerContext) -> pb.AddReply:
        self._script("Add", request, context)
        if self.add_reply is not None:
            return to_pb(self.add_reply)
        return to_pb(standard_reply(request.attachment.netns, request.attachment.ifname))

    def Delete(self, request: pb.DeleteRequest, context: grpc.ServicerContext) -> pb.DeleteReply:
        self._script("Delete", request, context)
        return pb.DeleteReply()

    def Check(self, request: pb.CheckRequest, context: grpc.ServicerContext) -> pb.CheckReply:
        self._script("Check", request, context)
        return pb.CheckReply(differences=self.differences)

    def Status(self, request: pb.StatusRequest, context: grpc.ServicerContext) -> pb.StatusReply:
        self._script("Status", request, context)
        return self.status_reply

    def GarbageCollect(
        self, request: pb.GarbageCollectRequest, context: grpc.ServicerContext
    ) -> pb.GarbageCollectReply:
        self._script("GarbageCollect", request, context)
        return pb.GarbageCollectReply(removed=self.removed)


def serve(fake: FakeDaemon, socket_path: Path) -> grpc.Server:
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    pb_grpc.add_DaemonServicer_to_server(fake, server)  # type: ignore[no-untyped-call]
    server.add_insecure_port(f"unix:{socket_path}")
    server.start()
    return server
