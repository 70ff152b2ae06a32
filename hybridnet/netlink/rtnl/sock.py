"""One rtnetlink socket: dumps, and many requests in flight at once.

``execute`` sends requests in chunks of up to ``WINDOW`` messages per ``send`` (the kernel
handles each message of a chunk in order and acknowledges each one), then matches the
acknowledgements to requests by sequence number, so a failed request fails alone and the rest
still apply. ``WINDOW`` bounds how many acknowledgements can wait in the receive buffer.
"""

from __future__ import annotations

import errno
import os
import socket
from collections.abc import Sequence
from types import TracebackType

from hybridnet.netlink.rtnl import wire

NETLINK_ROUTE = 0
SOL_NETLINK = 270
NETLINK_CAP_ACK = 10
NETLINK_EXT_ACK = 11
SO_RCVBUFFORCE = 33
RECEIVE_BUFFER = 8 << 20
WINDOW = 256
DUMP_ATTEMPTS = 5


class NetlinkError(OSError):
    """The kernel refused a request: ``errno`` and, when the kernel said, its reason."""

    def __init__(self, code: int, reason: str = ""):
        detail = os.strerror(code) + (f": {reason}" if reason else "")
        super().__init__(code, detail)
        self.reason = reason


class DumpInterrupted(NetlinkError):
    """The kernel kept changing the table while it was dumped, attempt after attempt."""

    def __init__(self) -> None:
        super().__init__(errno.EAGAIN, "dump interrupted by concurrent changes")


class RtnlSocket:
    """An rtnetlink socket in the calling thread's network namespace. Not thread-safe: one
    owner at a time (the datapath's reconcile worker)."""

    def __init__(self) -> None:
        self._socket = socket.socket(
            socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC, NETLINK_ROUTE
        )
        try:
            self._socket.setsockopt(SOL_NETLINK, NETLINK_EXT_ACK, 1)
            self._socket.setsockopt(SOL_NETLINK, NETLINK_CAP_ACK, 1)
            try:
                self._socket.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, RECEIVE_BUFFER)
            except PermissionError:  # without CAP_NET_ADMIN: the sysctl's ceiling applies
                self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RECEIVE_BUFFER)
            self._socket.bind((0, 0))
        except BaseException:
            self._socket.close()
            raise
        self._sequence = 0

    def __enter__(self) -> RtnlSocket:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        self._socket.close()

    def _frame(self, msg_type: int, flags: int, body: bytes) -> tuple[int, bytes]:
        self._sequence = (self._sequence % 0xFFFFFFFF) + 1
        header = wire.HEADER.pack(wire.HEADER.size + len(body), msg_type, flags, self._sequence, 0)
        return self._sequence, header + body

    def dump(self, msg_type: int, body: bytes) -> list[bytes]:
        """Every message body the kernel answers a dump request with. A dump the kernel marks
        as interrupted (the table changed meanwhile) is retried."""
        for _ in range(DUMP_ATTEMPTS):
            bodies, interrupted = self._dump_once(msg_type, body)
            if not interrupted:
                return bodies
        raise DumpInterrupted

    def _dump_once(self, msg_type: int, body: bytes) -> tuple[list[bytes], bool]:
        sequence, message = self._frame(msg_type, wire.NLM_F_REQUEST | wire.NLM_F_DUMP, body)
        self._socket.send(message)
        bodies: list[bytes] = []
        interrupted = False
        while True:
            data = self._socket.recv(1 << 20)
            offset = 0
            while offset + wire.HEADER.size <= len(data):
                length, kind, flags, seq, _ = wire.HEADER.unpack_from(data, offset)
                if length < wire.HEADER.size:
                    raise NetlinkError(errno.EPROTO, "truncated netlink message")
                if seq == sequence:
                    interrupted |= bool(flags & wire.NLM_F_DUMP_INTR)
                    if kind == wire.NLMSG_DONE:
                        return bodies, interrupted
                    if kind == wire.NLMSG_ERROR:
                        failure = _error(data, offset, length, flags)
                        if failure is not None:
                            raise failure
                    else:
                        bodies.append(data[offset + wire.HEADER.size : offset + length])
                offset += (length + 3) & ~3

    def request(self, request: wire.Request) -> None:
        """Send one request and wait for its acknowledgement; raises NetlinkError."""
        (failure,) = self.execute([request])
        if failure is not None:
            raise failure

    def execute(self, requests: Sequence[wire.Request]) -> list[NetlinkError | None]:
        """Send every request (each acknowledged) and return, per request, None or its error."""
        results: list[NetlinkError | None] = [None] * len(requests)
        waiting: dict[int, int] = {}
        sent = 0
        while sent < len(requests) or waiting:
            chunk = []
            while sent < len(requests) and len(waiting) < WINDOW:
                request = requests[sent]
                sequence, message = self._frame(
                    request.msg_type,
                    request.flags | wire.NLM_F_REQUEST | wire.NLM_F_ACK,
                    request.body,
                )
                waiting[sequence] = sent
                chunk.append(message)
                sent += 1
            if chunk:
                self._socket.send(b"".join(chunk))
            self._collect_acks(waiting, results)
        return results

    def _collect_acks(self, waiting: dict[int, int], results: list[NetlinkError | None]) -> None:
        data = self._socket.recv(1 << 20)
        offset = 0
        while offset + wire.HEADER.size <= len(data):
            length, kind, flags, seq, _ = wire.HEADER.unpack_from(data, offset)
            if length < wire.HEADER.size:
                raise NetlinkError(errno.EPROTO, "truncated netlink message")
            if kind == wire.NLMSG_ERROR and seq in waiting:
                results[waiting.pop(seq)] = _error(data, offset, length, flags)
            offset += (length + 3) & ~3


def _error(data: bytes, offset: int, length: int, flags: int) -> NetlinkError | None:
    """The error an NLMSG_ERROR message carries (None for a plain acknowledgement)."""
    start = offset + wire.HEADER.size
    code = -int.from_bytes(data[start : start + 4], "little", signed=True)
    if code == 0:
        return None
    reason = ""
    if flags & wire.NLM_F_ACK_TLVS:
        # With NETLINK_CAP_ACK the kernel echoes only the request's header after the code.
        echoed = data[start + 4 : start + 4 + wire.HEADER.size]
        tlvs_at = start + 4 + wire.HEADER.size
        if len(echoed) == wire.HEADER.size:
            found = wire.attrs(data, tlvs_at, offset + length)
            if wire.NLMSGERR_ATTR_MSG in found:
                reason = wire.text(found[wire.NLMSGERR_ATTR_MSG])
    return NetlinkError(code, reason)
