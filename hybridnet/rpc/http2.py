"""A one-request HTTP/2 client over a unix socket (RFC 9113), for the plugin's gRPC calls.

Each plugin run makes exactly one call, so the client opens a connection, sends one request on
stream 1, reads until that stream ends and closes. It keeps to the protocol where a server could
notice: it acknowledges SETTINGS and PING, honours the server's frame size and flow-control
windows when sending, decodes every header block in order (HPACK state is per connection) and
reads CONTINUATION, padding and GOAWAY. It opens a receive window large enough for the biggest
reply it accepts, so it never has to send WINDOW_UPDATE.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import time
from typing import NamedTuple

from hybridnet.rpc.hpack import Decoder, HpackError, encode

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
DATA, HEADERS, PRIORITY, RST_STREAM, SETTINGS = 0x0, 0x1, 0x2, 0x3, 0x4
PUSH_PROMISE, PING, GOAWAY, WINDOW_UPDATE, CONTINUATION = 0x5, 0x6, 0x7, 0x8, 0x9
END_STREAM = ACK = 0x1
END_HEADERS, PADDED, PRIORITY_FLAG = 0x4, 0x8, 0x20
SETTINGS_ENABLE_PUSH, SETTINGS_INITIAL_WINDOW_SIZE, SETTINGS_MAX_FRAME_SIZE = 0x2, 0x4, 0x5
DEFAULT_WINDOW = 65535
DEFAULT_FRAME_SIZE = 16384
MAX_BODY = 4 * 1024 * 1024
"""The largest reply body accepted (gRPC's default message limit); also our receive window."""
STREAM = 1
_HEADER = struct.Struct(">3sBBI")


class Unreachable(Exception):
    """No server answered: nothing listening, refused, or no complete answer in time."""


class DeadlineExceeded(Exception):
    """The call's time ran out before the whole answer arrived."""


class StreamReset(Exception):
    """The server ended the request with RST_STREAM or a GOAWAY that excludes it."""

    def __init__(self, error_code: int, what: str):
        super().__init__(f"{what} (HTTP/2 error code {error_code})")
        self.error_code = error_code


class ProtocolError(Exception):
    """The server broke the protocol; the connection is useless."""


class Response(NamedTuple):
    headers: dict[str, str]
    body: bytes
    trailers: dict[str, str]


def request(
    socket_path: str, headers: list[tuple[str, str]], body: bytes, timeout: float
) -> Response:
    """Send one request (``headers`` include the pseudo-headers) and return the whole response."""
    deadline = time.monotonic() + timeout
    try:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    except OSError as exc:
        raise Unreachable(f"socket: {exc}") from None
    with sock:
        try:
            sock.settimeout(timeout)
            sock.connect(socket_path)
        except TimeoutError:
            raise DeadlineExceeded(f"connect {socket_path}: timed out") from None
        except OSError as exc:
            raise Unreachable(f"connect {socket_path}: {exc.strerror or exc}") from None
        return _Exchange(sock, deadline).run(headers, body)


class _Exchange:
    def __init__(self, sock: socket.socket, deadline: float):
        self._sock = sock
        self._deadline = deadline
        self._buffer = bytearray()
        self._decoder = Decoder()
        self._send_window = DEFAULT_WINDOW
        self._connection_window = DEFAULT_WINDOW
        self._peer_initial_window = DEFAULT_WINDOW
        self._peer_frame_size = DEFAULT_FRAME_SIZE
        self._blocks: list[dict[str, str]] = []
        self._pending_block = bytearray()
        self._header_open = False
        """A HEADERS frame came without END_HEADERS: CONTINUATION frames follow."""
        self._end_with_headers = False
        self._body = bytearray()
        self._ended = False

    def run(self, headers: list[tuple[str, str]], body: bytes) -> Response:
        block = encode(headers)
        if len(block) > DEFAULT_FRAME_SIZE:
            raise ValueError("request headers larger than one frame")
        settings = struct.pack(
            ">HIHI", SETTINGS_ENABLE_PUSH, 0, SETTINGS_INITIAL_WINDOW_SIZE, MAX_BODY
        )
        self._send(
            PREFACE
            + _frame(SETTINGS, 0, 0, settings)
            + _frame(WINDOW_UPDATE, 0, 0, struct.pack(">I", MAX_BODY - DEFAULT_WINDOW))
            + _frame(HEADERS, END_HEADERS | (0 if body else END_STREAM), STREAM, block)
        )
        remaining = memoryview(body)
        while remaining:
            allowed = min(self._send_window, self._connection_window, self._peer_frame_size)
            if allowed <= 0:
                self._handle(*self._read_frame())
                continue
            chunk, remaining = remaining[:allowed], remaining[allowed:]
            self._send_window -= len(chunk)
            self._connection_window -= len(chunk)
            self._send(_frame(DATA, 0 if remaining else END_STREAM, STREAM, bytes(chunk)))
        while not self._ended:
            self._handle(*self._read_frame())
        if not self._blocks:
            raise ProtocolError("the stream ended without response headers")
        trailers = self._blocks[1] if len(self._blocks) > 1 else {}
        return Response(self._blocks[0], bytes(self._body), trailers)

    def _handle(self, kind: int, flags: int, stream: int, payload: bytes) -> None:
        if kind == SETTINGS:
            if not flags & ACK:
                self._apply_settings(payload)
                self._acknowledge(_frame(SETTINGS, ACK, 0, b""))
        elif kind == PING:
            if not flags & ACK:
                self._acknowledge(_frame(PING, ACK, 0, payload))
        elif kind == WINDOW_UPDATE:
            increment = struct.unpack(">I", payload)[0] & 0x7FFFFFFF
            if stream == 0:
                self._connection_window += increment
            elif stream == STREAM:
                self._send_window += increment
        elif kind == GOAWAY:
            last_stream, error_code = struct.unpack(">II", payload[:8])
            if last_stream & 0x7FFFFFFF < STREAM:
                raise StreamReset(error_code, "the server went away before taking the request")
        elif kind == RST_STREAM and stream == STREAM:
            raise StreamReset(struct.unpack(">I", payload)[0], "the server reset the request")
        elif kind == PUSH_PROMISE:
            raise ProtocolError("PUSH_PROMISE although push is disabled")
        elif stream == STREAM and kind in (HEADERS, CONTINUATION, DATA):
            self._on_stream(kind, flags, payload)

    def _on_stream(self, kind: int, flags: int, payload: bytes) -> None:
        if kind == CONTINUATION and not self._header_open:
            raise ProtocolError("CONTINUATION without HEADERS")
        if kind in (HEADERS, DATA):
            payload = _unpad(payload, flags)
        if kind == HEADERS:
            if flags & PRIORITY_FLAG:
                payload = payload[5:]
            self._header_open = True
            self._end_with_headers = bool(flags & END_STREAM)
            self._pending_block = bytearray(payload)
        elif kind == CONTINUATION:
            self._pending_block += payload
        if kind in (HEADERS, CONTINUATION) and flags & END_HEADERS:
            try:
                self._blocks.append(dict(self._decoder.decode(bytes(self._pending_block))))
            except HpackError as exc:
                raise ProtocolError(f"response headers: {exc}") from None
            self._pending_block = bytearray()
            self._header_open = False
            self._ended = self._end_with_headers
        elif kind == DATA:
            if not self._blocks:
                raise ProtocolError("DATA before response headers")
            self._body += payload
            if len(self._body) > MAX_BODY:
                raise ProtocolError(f"response body larger than {MAX_BODY} bytes")
            self._ended = bool(flags & END_STREAM)

    def _apply_settings(self, payload: bytes) -> None:
        for offset in range(0, len(payload) - len(payload) % 6, 6):
            key, value = struct.unpack(">HI", payload[offset : offset + 6])
            if key == SETTINGS_INITIAL_WINDOW_SIZE:
                self._send_window += value - self._peer_initial_window
                self._peer_initial_window = value
            elif key == SETTINGS_MAX_FRAME_SIZE:
                self._peer_frame_size = value

    def _read_frame(self) -> tuple[int, int, int, bytes]:
        header = self._read_exactly(9)
        length_bytes, kind, flags, stream = _HEADER.unpack(header)
        length = int.from_bytes(length_bytes, "big")
        if length > MAX_BODY:
            raise ProtocolError(f"frame of {length} bytes")
        return kind, flags, stream & 0x7FFFFFFF, self._read_exactly(length)

    def _read_exactly(self, count: int) -> bytes:
        while len(self._buffer) < count:
            self._sock.settimeout(self._remaining())
            try:
                chunk = self._sock.recv(max(65536, count - len(self._buffer)))
            except TimeoutError:
                raise DeadlineExceeded("no complete answer in time") from None
            except OSError as exc:
                raise Unreachable(f"no complete answer: {exc.strerror or exc}") from None
            if not chunk:
                raise Unreachable("the server closed the connection before answering")
            self._buffer += chunk
        data = bytes(self._buffer[:count])
        del self._buffer[:count]
        return data

    def _send(self, data: bytes) -> None:
        self._sock.settimeout(self._remaining())
        try:
            self._sock.sendall(data)
        except TimeoutError:
            raise DeadlineExceeded("the request could not be sent in time") from None
        except OSError as exc:
            raise Unreachable(f"send: {exc.strerror or exc}") from None

    def _acknowledge(self, frame: bytes) -> None:
        """A courtesy the answer does not depend on: a server that already hung up after
        sending everything has still answered."""
        with contextlib.suppress(Unreachable):
            self._send(frame)

    def _remaining(self) -> float:
        left = self._deadline - time.monotonic()
        if left <= 0:
            raise DeadlineExceeded("no complete answer in time")
        return left


def _frame(kind: int, flags: int, stream: int, payload: bytes) -> bytes:
    return _HEADER.pack(len(payload).to_bytes(3, "big"), kind, flags, stream) + payload


def _unpad(payload: bytes, flags: int) -> bytes:
    if not flags & PADDED:
        return payload
    if not payload or payload[0] >= len(payload):
        raise ProtocolError("padding longer than the frame")
    return payload[1 : len(payload) - payload[0]]
