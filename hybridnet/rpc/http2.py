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
"""Also the largest frame we accept: we never advertise a larger SETTINGS_MAX_FRAME_SIZE."""
MAX_FRAME_SIZE_LIMIT = (1 << 24) - 1
MAX_WINDOW = (1 << 31) - 1
MAX_BODY = 4 * 1024 * 1024 + 5
"""The largest reply body accepted: gRPC's default message limit and its 5-byte prefix."""
RECEIVE_WINDOW = 2 * MAX_BODY
"""Opened once at the start, with room for padding, so the client never sends WINDOW_UPDATE."""
MAX_HEADER_BLOCK = 64 * 1024
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
        self._goaway = ""
        """How the server announced it was going away, for the error if it then hangs up."""

    def run(self, headers: list[tuple[str, str]], body: bytes) -> Response:
        block = encode(headers)
        if len(block) > DEFAULT_FRAME_SIZE:
            raise ValueError("request headers larger than one frame")
        settings = struct.pack(
            ">HIHI", SETTINGS_ENABLE_PUSH, 0, SETTINGS_INITIAL_WINDOW_SIZE, RECEIVE_WINDOW
        )
        self._send(
            PREFACE
            + _frame(SETTINGS, 0, 0, settings)
            + _frame(WINDOW_UPDATE, 0, 0, struct.pack(">I", RECEIVE_WINDOW - DEFAULT_WINDOW))
            + _frame(HEADERS, END_HEADERS | (0 if body else END_STREAM), STREAM, block)
        )
        remaining = memoryview(body)
        while remaining and not self._ended:  # a server may answer before reading it all
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
        _check_length(kind, flags, payload)
        if self._header_open and (kind != CONTINUATION or stream != STREAM):
            raise ProtocolError("a frame inside a header block (CONTINUATION expected)")
        if kind == SETTINGS:
            if not flags & ACK:
                self._apply_settings(payload)
                self._acknowledge(_frame(SETTINGS, ACK, 0, b""))
        elif kind == PING:
            if not flags & ACK:
                self._acknowledge(_frame(PING, ACK, 0, payload))
        elif kind == WINDOW_UPDATE:
            self._window_update(stream, struct.unpack(">I", payload)[0] & MAX_WINDOW)
        elif kind == GOAWAY:
            last_stream, error_code = struct.unpack(">II", payload[:8])
            if last_stream & MAX_WINDOW < STREAM:  # not processed: safe to try again
                raise Unreachable(f"the server went away before taking the request ({error_code})")
            self._goaway = f" after GOAWAY with HTTP/2 error code {error_code}"
        elif kind == RST_STREAM and stream == STREAM:
            # Not read after a complete answer (RST_STREAM(NO_ERROR) may follow one): reading
            # stops at the end of the stream, also while the request body is still being sent.
            raise StreamReset(struct.unpack(">I", payload)[0], "the server reset the request")
        elif kind == PUSH_PROMISE:
            raise ProtocolError("PUSH_PROMISE although push is disabled")
        elif stream == STREAM and kind in (HEADERS, CONTINUATION, DATA):
            self._on_stream(kind, flags, payload)

    def _window_update(self, stream: int, increment: int) -> None:
        if increment == 0:
            raise ProtocolError("WINDOW_UPDATE of 0")
        if stream == 0:
            self._connection_window += increment
        elif stream == STREAM:
            self._send_window += increment
        if max(self._connection_window, self._send_window) > MAX_WINDOW:
            raise ProtocolError("flow-control window beyond 2^31-1")

    def _on_stream(self, kind: int, flags: int, payload: bytes) -> None:
        if kind == DATA:
            self._on_data(flags, _unpad(payload, flags))
            return
        if kind == CONTINUATION:
            if not self._header_open:
                raise ProtocolError("CONTINUATION without HEADERS")
            self._pending_block += payload
        else:
            self._start_block(flags, _unpad(payload, flags))
        if len(self._pending_block) > MAX_HEADER_BLOCK:
            raise ProtocolError(f"response header block larger than {MAX_HEADER_BLOCK} bytes")
        if flags & END_HEADERS:
            try:
                self._blocks.append(dict(self._decoder.decode(bytes(self._pending_block))))
            except HpackError as exc:
                raise ProtocolError(f"response headers: {exc}") from None
            self._pending_block = bytearray()
            self._header_open = False
            self._ended = self._end_with_headers

    def _start_block(self, flags: int, payload: bytes) -> None:
        """A HEADERS frame: the response headers, or the trailers that end the stream."""
        if len(self._blocks) == 2 or (self._blocks and not flags & END_STREAM):
            raise ProtocolError("a header block after the trailers, or trailers that go on")
        if flags & PRIORITY_FLAG:
            if len(payload) < 5:
                raise ProtocolError("HEADERS too short for its priority fields")
            payload = payload[5:]
        self._header_open = True
        self._end_with_headers = bool(flags & END_STREAM)
        self._pending_block = bytearray(payload)

    def _on_data(self, flags: int, payload: bytes) -> None:
        if not self._blocks:
            raise ProtocolError("DATA before response headers")
        self._body += payload
        if len(self._body) > MAX_BODY:
            raise ProtocolError(f"response body larger than {MAX_BODY} bytes")
        self._ended = bool(flags & END_STREAM)

    def _apply_settings(self, payload: bytes) -> None:
        for offset in range(0, len(payload), 6):
            key, value = struct.unpack(">HI", payload[offset : offset + 6])
            if key == SETTINGS_INITIAL_WINDOW_SIZE:
                if value > MAX_WINDOW:
                    raise ProtocolError(f"SETTINGS_INITIAL_WINDOW_SIZE {value}")
                self._send_window += value - self._peer_initial_window
                self._peer_initial_window = value
            elif key == SETTINGS_MAX_FRAME_SIZE:
                if not DEFAULT_FRAME_SIZE <= value <= MAX_FRAME_SIZE_LIMIT:
                    raise ProtocolError(f"SETTINGS_MAX_FRAME_SIZE {value}")
                self._peer_frame_size = value

    def _read_frame(self) -> tuple[int, int, int, bytes]:
        header = self._read_exactly(9)
        length_bytes, kind, flags, stream = _HEADER.unpack(header)
        length = int.from_bytes(length_bytes, "big")
        if length > DEFAULT_FRAME_SIZE:
            raise ProtocolError(f"a frame of {length} bytes (the most we accept is 16384)")
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
                closed = "the server closed the connection before answering"
                raise Unreachable(closed + self._goaway)
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


_FIXED_LENGTH = {PRIORITY: 5, RST_STREAM: 4, PING: 8, WINDOW_UPDATE: 4}


def _check_length(kind: int, flags: int, payload: bytes) -> None:
    """The frame sizes RFC 9113 fixes; anything else is a FRAME_SIZE_ERROR."""
    expected = _FIXED_LENGTH.get(kind)
    if expected is not None and len(payload) != expected:
        raise ProtocolError(f"frame type {kind} of {len(payload)} bytes, not {expected}")
    if kind == SETTINGS and (len(payload) % 6 or (flags & ACK and payload)):
        raise ProtocolError(f"SETTINGS of {len(payload)} bytes")
    if kind == GOAWAY and len(payload) < 8:
        raise ProtocolError(f"GOAWAY of {len(payload)} bytes")


def _unpad(payload: bytes, flags: int) -> bytes:
    if not flags & PADDED:
        return payload
    if not payload or payload[0] >= len(payload):
        raise ProtocolError("padding longer than the frame")
    return payload[1 : len(payload) - payload[0]]
