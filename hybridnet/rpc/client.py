"""The client side of the Daemon service, as the CNI plugin uses it: gRPC without grpcio.

The plugin is exec'd for every CNI call, and importing grpcio and protobuf took longer than the
daemon needs to attach a pod. So the plugin speaks gRPC itself: one unary call over a
one-request HTTP/2 connection (:mod:`hybridnet.rpc.http2`), messages in the light classes of
:mod:`hybridnet.rpc.messages`. The daemon is an ordinary grpcio server; the unit tests run this
client against one.

Failures become :class:`DaemonError` carrying the CNI code the runtime should see: the daemon
puts it in the trailing metadata key ``cni-code``; a daemon that cannot be reached, or does not
answer in time, is 11 ("try again later"); NOT_FOUND without a code is 3 ("container
unknown", e.g. the attachment is already gone); anything else without a code is 999.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from hybridnet.rpc import http2, protowire
from hybridnet.rpc import messages as m
from hybridnet.rpc.codes import CNI_CODE_KEY, CONTAINER_UNKNOWN, INTERNAL, TRY_AGAIN_LATER

STATUS_NAMES = (
    "OK",
    "CANCELLED",
    "UNKNOWN",
    "INVALID_ARGUMENT",
    "DEADLINE_EXCEEDED",
    "NOT_FOUND",
    "ALREADY_EXISTS",
    "PERMISSION_DENIED",
    "RESOURCE_EXHAUSTED",
    "FAILED_PRECONDITION",
    "ABORTED",
    "OUT_OF_RANGE",
    "UNIMPLEMENTED",
    "INTERNAL",
    "UNAVAILABLE",
    "DATA_LOSS",
    "UNAUTHENTICATED",
)
"""gRPC status codes by number."""
OK, CANCELLED, UNKNOWN, DEADLINE_EXCEEDED, NOT_FOUND = 0, 1, 2, 4, 5
INTERNAL_STATUS, UNAVAILABLE = 13, 14
MAX_NUMBER_DIGITS = 9
"""Digits a status or code header may have (int() refuses strings over 4300 digits)."""
_TRANSIENT = (UNAVAILABLE, DEADLINE_EXCEEDED)
_STATUS_OF_HTTP = {400: INTERNAL_STATUS, 401: 16, 403: 7, 404: 12, 429: 14, 502: 14, 503: 14}
"""gRPC's mapping of an HTTP status without grpc-status; anything else is UNKNOWN."""
_STATUS_OF_RESET = {7: UNAVAILABLE, 8: CANCELLED, 11: 8, 12: 7}
"""gRPC's mapping of RST_STREAM codes (REFUSED_STREAM, CANCEL, ENHANCE_YOUR_CALM,
INADEQUATE_SECURITY); anything else is INTERNAL."""


class DaemonError(Exception):
    """A Daemon call failed; ``cni_code`` is what the plugin answers the runtime with."""

    def __init__(self, cni_code: int, msg: str, details: str = "", *, unreachable: bool = False):
        super().__init__(f"[{cni_code}] {msg}" + (f": {details}" if details else ""))
        self.cni_code = cni_code
        self.msg = msg
        self.details = details
        self.unreachable = unreachable
        """True when no daemon answered at all (nothing listening, or no reply in time)."""


def error_from_status(
    status: int, message: str, metadata: dict[str, str], target: str
) -> DaemonError:
    """Map a failed call to its CNI code (see the module docstring)."""
    name = STATUS_NAMES[status] if 0 <= status < len(STATUS_NAMES) else f"STATUS_{status}"
    message = message or name
    raw_code = metadata.get(CNI_CODE_KEY)
    if raw_code is not None:
        code = _number(raw_code) or INTERNAL  # neither 0 nor a non-number is a failure's code
        return DaemonError(code, message, f"daemon at {target}: {name}")
    if status in _TRANSIENT:
        return DaemonError(
            TRY_AGAIN_LATER,
            "the hybridnet daemon is not available",
            f"{target}: {name}: {message}",
            unreachable=True,
        )
    if status == NOT_FOUND:
        return DaemonError(CONTAINER_UNKNOWN, message, f"daemon at {target}: {name}")
    return DaemonError(INTERNAL, message, f"daemon at {target}: {name}")


class DaemonClient:
    """Calls the node daemon at ``unix:<socket_path>``; every call gives up after ``timeout``
    seconds. Each call is one connection: the plugin makes one call per run."""

    def __init__(self, socket_path: str, timeout: float):
        self.socket_path = socket_path
        self.target = f"unix:{socket_path}"
        self.timeout = timeout

    def add(self, attachment: m.Attachment, mtu: int = 0) -> m.AddReply:
        reply: m.AddReply = self._call("Add", m.AddRequest(attachment, mtu), m.AddReply)
        return reply

    def delete(self, attachment: m.Attachment) -> None:
        self._call("Delete", m.DeleteRequest(attachment), m.DeleteReply)

    def check(self, attachment: m.Attachment, expected: m.AddReply) -> list[str]:
        """What differs between the attachment and ``expected`` (empty: all is as expected)."""
        reply: m.CheckReply = self._call(
            "Check", m.CheckRequest(attachment, expected), m.CheckReply
        )
        return list(reply.differences)

    def status(self) -> m.StatusReply:
        reply: m.StatusReply = self._call("Status", m.StatusRequest(), m.StatusReply)
        return reply

    def garbage_collect(self, valid: Sequence[tuple[str, str]]) -> list[str]:
        """Remove every attachment not among ``valid`` (container id, ifname) pairs."""
        request = m.GarbageCollectRequest(tuple(m.ValidAttachment(c, i) for c, i in valid))
        reply: m.GarbageCollectReply = self._call("GarbageCollect", request, m.GarbageCollectReply)
        return list(reply.removed)

    def diagnose(self) -> m.DiagnoseReply:
        """The node datapath's differences and problems, and the pods attached (the CLI)."""
        reply: m.DiagnoseReply = self._call("Diagnose", m.DiagnoseRequest(), m.DiagnoseReply)
        return reply

    def _call(self, method: str, request: Any, reply_type: type) -> Any:
        body = protowire.encode(request, m.SCHEMA)
        headers = [
            (":method", "POST"),
            (":scheme", "http"),
            (":path", f"/{m.SERVICE}/{method}"),
            (":authority", "localhost"),
            ("content-type", "application/grpc"),
            ("te", "trailers"),
            ("grpc-timeout", f"{max(1, int(self.timeout * 1000))}m"),
            ("user-agent", "hybridnet-cni"),
        ]
        framed = b"\x00" + len(body).to_bytes(4, "big") + body
        try:
            response = http2.request(self.socket_path, headers, framed, self.timeout)
        except http2.Unreachable as exc:
            raise error_from_status(UNAVAILABLE, str(exc), {}, self.target) from None
        except http2.DeadlineExceeded as exc:
            raise error_from_status(DEADLINE_EXCEEDED, str(exc), {}, self.target) from None
        except http2.StreamReset as exc:
            status = _STATUS_OF_RESET.get(exc.error_code, INTERNAL_STATUS)
            raise error_from_status(status, str(exc), {}, self.target) from None
        except http2.ProtocolError as exc:
            raise error_from_status(INTERNAL_STATUS, str(exc), {}, self.target) from None
        status, message, metadata = _outcome(response)
        if status != OK:
            raise error_from_status(status, message, metadata, self.target)
        try:
            return protowire.decode(reply_type, _unframe(response.body), m.SCHEMA)
        except (ValueError, protowire.WireError) as exc:
            raise error_from_status(INTERNAL_STATUS, f"bad reply: {exc}", {}, self.target) from None


def _outcome(response: http2.Response) -> tuple[int, str, dict[str, str]]:
    """(gRPC status, message, metadata) of a response; trailers-only answers carry them in the
    headers."""
    metadata = response.trailers or response.headers
    status = _number(metadata.get("grpc-status", ""))
    if status is not None:  # it decides, whatever the HTTP status
        return status, _percent_decode(metadata.get("grpc-message", "")), metadata
    http_status = response.headers.get(":status", "")
    if http_status != "200":
        code = _STATUS_OF_HTTP.get(_number(http_status) or 0, UNKNOWN)
        return code, f"HTTP status {http_status}", {}
    return UNKNOWN, "the reply carries no grpc-status", {}


def _number(text: str) -> int | None:
    """The value of a status or code header, None if it is not 1 to 9 ASCII digits: str.isdigit
    also accepts e.g. superscripts, which int() refuses, and int() refuses more than 4300
    digits (a ValueError past the client's error mapping); no status or code has 10."""
    if text.isascii() and text.isdigit() and len(text) <= MAX_NUMBER_DIGITS:
        return int(text)
    return None


def _unframe(body: bytes) -> bytes:
    """The single message of a unary reply (gRPC's 5-byte length prefix, never compressed)."""
    if len(body) < 5:
        raise ValueError("no message in the reply")
    if body[0] != 0:
        raise ValueError("compressed message, although none was offered")
    length = int.from_bytes(body[1:5], "big")
    if length != len(body) - 5:
        raise ValueError("reply is not exactly one message")
    return body[5:]


_HEX = set(b"0123456789abcdefABCDEF")


def _percent_decode(text: str) -> str:
    """grpc-message is percent-encoded UTF-8."""
    if "%" not in text:
        return text
    out = bytearray()
    at = 0
    raw = text.encode("latin-1")
    while at < len(raw):
        hex_digits = raw[at + 1 : at + 3]
        if raw[at] == ord("%") and len(hex_digits) == 2 and set(hex_digits) <= _HEX:
            out.append(int(hex_digits, 16))
            at += 3
            continue
        out.append(raw[at])
        at += 1
    return out.decode("utf-8", "replace")
