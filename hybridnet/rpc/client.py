"""The client side of the Daemon service: one call per CNI command over the daemon's socket.

Failures become :class:`DaemonError` carrying the CNI code the runtime should see: the daemon
puts it in the trailing metadata key ``cni-code``; a daemon that cannot be reached, or does not
answer in time, is 11 ("try again later"); NOT_FOUND without a code is 3 ("container
unknown", e.g. the attachment is already gone); anything else without a code is 999. Only grpc and
the generated modules are imported, so the plugin starts fast.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import grpc

from hybridnet.rpc import daemon_pb2 as pb
from hybridnet.rpc import daemon_pb2_grpc as pb_grpc

CNI_CODE_KEY = "cni-code"
CONTAINER_UNKNOWN = 3
TRY_AGAIN_LATER = 11
INTERNAL = 999
_TRANSIENT = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)


class DaemonError(Exception):
    """A Daemon call failed; ``cni_code`` is what the plugin answers the runtime with."""

    def __init__(self, cni_code: int, msg: str, details: str = "", *, unreachable: bool = False):
        super().__init__(f"[{cni_code}] {msg}" + (f": {details}" if details else ""))
        self.cni_code = cni_code
        self.msg = msg
        self.details = details
        self.unreachable = unreachable
        """True when no daemon answered at all (nothing listening, or no reply in time)."""


def error_from_rpc(exc: grpc.RpcError, target: str) -> DaemonError:
    """Map a failed call to its CNI code (see the module docstring)."""
    status = exc.code() if isinstance(exc, grpc.Call) else grpc.StatusCode.UNKNOWN
    message = (exc.details() if isinstance(exc, grpc.Call) else None) or str(status)
    metadata = dict(exc.trailing_metadata() or ()) if isinstance(exc, grpc.Call) else {}
    raw_code = metadata.get(CNI_CODE_KEY)
    if raw_code is not None:
        try:
            code = int(raw_code)
        except (TypeError, ValueError):
            code = INTERNAL
        return DaemonError(code, message, f"daemon at {target}: {status.name}")
    if status in _TRANSIENT:
        return DaemonError(
            TRY_AGAIN_LATER,
            "the hybridnet daemon is not available",
            f"{target}: {status.name}: {message}",
            unreachable=True,
        )
    if status == grpc.StatusCode.NOT_FOUND:
        return DaemonError(CONTAINER_UNKNOWN, message, f"daemon at {target}: {status.name}")
    return DaemonError(INTERNAL, message, f"daemon at {target}: {status.name}")


class DaemonClient:
    """Calls the node daemon at ``unix:<socket_path>``; every call gives up after ``timeout``
    seconds. Use as a context manager (or call :meth:`close`)."""

    def __init__(self, socket_path: str, timeout: float):
        self.target = f"unix:{socket_path}"
        self.timeout = timeout
        self._channel = grpc.insecure_channel(self.target)
        self._stub = pb_grpc.DaemonStub(self._channel)

    def __enter__(self) -> DaemonClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        self._channel.close()

    def add(self, attachment: pb.Attachment, mtu: int = 0) -> pb.AddReply:
        reply: pb.AddReply = self._call(
            self._stub.Add, pb.AddRequest(attachment=attachment, mtu=mtu)
        )
        return reply

    def delete(self, attachment: pb.Attachment) -> None:
        self._call(self._stub.Delete, pb.DeleteRequest(attachment=attachment))

    def check(self, attachment: pb.Attachment, expected: pb.AddReply) -> list[str]:
        """What differs between the attachment and ``expected`` (empty: all is as expected)."""
        request = pb.CheckRequest(attachment=attachment, expected=expected)
        reply: pb.CheckReply = self._call(self._stub.Check, request)
        return list(reply.differences)

    def status(self) -> pb.StatusReply:
        reply: pb.StatusReply = self._call(self._stub.Status, pb.StatusRequest())
        return reply

    def garbage_collect(self, valid: Sequence[tuple[str, str]]) -> list[str]:
        """Remove every attachment not among ``valid`` (container id, ifname) pairs."""
        request = pb.GarbageCollectRequest(
            valid=[pb.ValidAttachment(container_id=c, ifname=i) for c, i in valid]
        )
        reply: pb.GarbageCollectReply = self._call(self._stub.GarbageCollect, request)
        return list(reply.removed)

    def _call(self, method: Callable[..., Any], request: Any) -> Any:
        try:
            return method(request, timeout=self.timeout)
        except grpc.RpcError as exc:
            raise error_from_rpc(exc, self.target) from None
