"""The one-request HTTP/2 client against a scripted server on a unix socket, for what a grpcio
server (tests/unit/cni/test_client.py) does not show on demand: padding, CONTINUATION, PING,
GOAWAY, RST_STREAM, a server that hangs up or stalls."""

from __future__ import annotations

import socket
import struct
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from hybridnet.rpc import hpack, http2
from hybridnet.rpc.client import DaemonClient, DaemonError

Frame = tuple[int, int, int, bytes]
REQUEST = [(":method", "POST"), (":scheme", "http"), (":path", "/x/Y"), (":authority", "l")]


def frame(kind: int, flags: int, stream: int, payload: bytes) -> bytes:
    return len(payload).to_bytes(3, "big") + struct.pack(">BBI", kind, flags, stream) + payload


def read_request(conn: socket.socket, whole: bool = True) -> list[Frame]:
    """The client's preface and frames, up to its request's END_STREAM (or, not ``whole``, up
    to its HEADERS)."""
    data = b""
    while not data.startswith(http2.PREFACE) or len(data) < len(http2.PREFACE):
        data += conn.recv(65536)
    data = data[len(http2.PREFACE) :]
    frames: list[Frame] = []
    while True:
        while len(data) < 9 or len(data) < 9 + int.from_bytes(data[:3], "big"):
            chunk = conn.recv(65536)
            assert chunk, "client hung up"
            data += chunk
        length = int.from_bytes(data[:3], "big")
        kind, flags, stream = struct.unpack(">BBI", data[3:9])
        frames.append((kind, flags, stream, data[9 : 9 + length]))
        data = data[9 + length :]
        if stream == 1 and flags & http2.END_STREAM and kind in (http2.DATA, http2.HEADERS):
            return frames
        if not whole and kind == http2.HEADERS:
            return frames


Script = Callable[[socket.socket, list[Frame]], None]


class ScriptedServer:
    """Serves one connection on a unix socket with a script."""

    def __init__(self, directory: Path):
        self.path = str(directory / "s.sock")
        self._listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._listener.bind(self.path)
        self._listener.listen(1)
        self._thread: threading.Thread | None = None

    def start(self, script: Script, whole_request: bool = True) -> str:
        def serve() -> None:
            conn, _ = self._listener.accept()
            with conn:
                script(conn, read_request(conn, whole_request))

        self._thread = threading.Thread(target=serve, daemon=True)
        self._thread.start()
        return self.path

    def join(self) -> None:
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._listener.close()


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Callable[[Script], str]]:
    scripted = ScriptedServer(tmp_path)
    yield scripted.start
    scripted.join()


def headers_frame(headers: list[tuple[str, str]], flags: int) -> bytes:
    return frame(http2.HEADERS, flags | http2.END_HEADERS, 1, hpack.encode(headers))


def test_request_shape_and_a_plain_response(server: Callable[[Script], str]) -> None:
    seen: list[Frame] = []

    def script(conn: socket.socket, frames: list[Frame]) -> None:
        seen.extend(frames)
        conn.sendall(
            frame(http2.SETTINGS, 0, 0, b"")
            + headers_frame([(":status", "200")], 0)
            + frame(http2.DATA, 0, 1, b"hello")
            + headers_frame([("grpc-status", "0")], http2.END_STREAM)
        )

    response = http2.request(server(script), REQUEST, b"body", timeout=5)
    assert response == http2.Response({":status": "200"}, b"hello", {"grpc-status": "0"})
    kinds = [kind for kind, _, _, _ in seen]
    assert kinds == [http2.SETTINGS, http2.WINDOW_UPDATE, http2.HEADERS, http2.DATA]
    assert hpack.Decoder().decode(seen[2][3]) == REQUEST
    assert seen[3][3] == b"body" and seen[3][1] & http2.END_STREAM


def test_padding_continuation_ping_and_settings(tmp_path: Path) -> None:
    pings: list[bytes] = []
    scripted = ScriptedServer(tmp_path)

    def script(conn: socket.socket, _: list[Frame]) -> None:
        block = hpack.encode([(":status", "200"), ("x-long", "v" * 40)])
        padded_headers = bytes([3]) + block[:10] + b"\0\0\0"
        conn.sendall(
            frame(http2.SETTINGS, 0, 0, struct.pack(">HI", 0x5, 32768))
            + frame(http2.PING, 0, 0, b"12345678")
            + frame(http2.HEADERS, http2.PADDED, 1, padded_headers)
            + frame(http2.CONTINUATION, http2.END_HEADERS, 1, block[10:])
            + frame(http2.DATA, http2.PADDED, 1, bytes([2]) + b"abc" + b"\0\0")
            + frame(http2.DATA, http2.END_STREAM, 1, b"def")
        )
        data = b""
        while len(data) < 2 * 9 + 8:
            chunk = conn.recv(4096)
            if not chunk:
                break  # the client hung up: the assertions below say what was missing
            data += chunk
        pings.append(data)

    response = http2.request(scripted.start(script), REQUEST, b"", timeout=5)
    scripted.join()
    assert response.headers == {":status": "200", "x-long": "v" * 40}
    assert response.body == b"abcdef" and response.trailers == {}
    # The client acknowledged the server's SETTINGS and answered its PING with the same data.
    assert frame(http2.SETTINGS, http2.ACK, 0, b"") in pings[0]
    assert frame(http2.PING, http2.ACK, 0, b"12345678") in pings[0]


def test_an_answer_before_the_whole_request_was_read(tmp_path: Path) -> None:
    """A server may answer (here: trailers-only, NOT_FOUND) without reading a body larger than
    its window, and give no more window: the answer counts, the rest is not sent."""
    scripted = ScriptedServer(tmp_path)
    release = threading.Event()

    def script(conn: socket.socket, _: list[Frame]) -> None:
        trailers = [(":status", "200"), ("grpc-status", "5")]
        conn.sendall(headers_frame(trailers, http2.END_STREAM))
        release.wait()  # keep the connection open until the client has its answer

    try:
        response = http2.request(scripted.start(script, False), REQUEST, bytes(200_000), 5)
    finally:
        release.set()
        scripted.join()
    assert response.headers == {":status": "200", "grpc-status": "5"} and response.body == b""


def test_a_frame_inside_a_header_block(server: Callable[[Script], str]) -> None:
    def script(conn: socket.socket, _: list[Frame]) -> None:
        block = hpack.encode([(":status", "200")])
        conn.sendall(frame(http2.HEADERS, 0, 1, block[:1]) + frame(http2.PING, 0, 0, b"12345678"))

    with pytest.raises(http2.ProtocolError, match="inside a header block"):
        http2.request(server(script), REQUEST, b"x", timeout=5)


def test_goaway_before_the_request_was_taken(server: Callable[[Script], str]) -> None:
    def script(conn: socket.socket, _: list[Frame]) -> None:
        conn.sendall(frame(http2.GOAWAY, 0, 0, struct.pack(">II", 0, 0)))

    # Not processed, so safe to try again: reported like a daemon that is not there.
    with pytest.raises(http2.Unreachable, match="before taking"):
        http2.request(server(script), REQUEST, b"x", timeout=5)


def test_goaway_with_an_error_then_a_hang_up_says_so(server: Callable[[Script], str]) -> None:
    def script(conn: socket.socket, _: list[Frame]) -> None:
        conn.sendall(frame(http2.GOAWAY, 0, 0, struct.pack(">II", 1, 2)))

    with pytest.raises(http2.Unreachable, match="after GOAWAY with HTTP/2 error code 2"):
        http2.request(server(script), REQUEST, b"x", timeout=5)


def test_reset_stream(server: Callable[[Script], str]) -> None:
    def script(conn: socket.socket, _: list[Frame]) -> None:
        conn.sendall(frame(http2.RST_STREAM, 0, 1, struct.pack(">I", 7)))

    with pytest.raises(http2.StreamReset) as reset:
        http2.request(server(script), REQUEST, b"x", timeout=5)
    assert reset.value.error_code == 7


def test_server_hangs_up_mid_answer(server: Callable[[Script], str]) -> None:
    def script(conn: socket.socket, _: list[Frame]) -> None:
        conn.sendall(headers_frame([(":status", "200")], 0))

    with pytest.raises(http2.Unreachable, match="closed"):
        http2.request(server(script), REQUEST, b"x", timeout=5)


def test_server_that_never_answers(server: Callable[[Script], str]) -> None:
    done = threading.Event()

    def script(conn: socket.socket, _: list[Frame]) -> None:
        done.wait()  # never answers, however long the client takes to give up

    try:
        with pytest.raises(http2.DeadlineExceeded):
            http2.request(server(script), REQUEST, b"x", timeout=0.3)
    finally:
        done.set()


def test_nothing_listening(tmp_path: Path) -> None:
    with pytest.raises(http2.Unreachable, match="connect"):
        http2.request(str(tmp_path / "none.sock"), REQUEST, b"x", timeout=5)


@pytest.mark.parametrize(
    ("frames", "problem"),
    [
        (frame(http2.DATA, 0, 1, b"x"), "DATA before"),
        (frame(http2.PUSH_PROMISE, 0, 1, bytes(4)), "PUSH_PROMISE"),
        (frame(http2.CONTINUATION, http2.END_HEADERS, 1, b""), "CONTINUATION without"),
        (frame(http2.HEADERS, http2.END_HEADERS | http2.END_STREAM, 1, b"\xbe"), "response head"),
        (frame(http2.HEADERS, http2.END_HEADERS, 1, b"\x88"), "trailers that go on"),
        (frame(http2.WINDOW_UPDATE, 0, 0, b"\x00\x01"), "not 4"),
        (frame(http2.RST_STREAM, 0, 1, b""), "not 4"),
        (frame(http2.GOAWAY, 0, 0, b"\x00"), "GOAWAY of 1"),
        (frame(http2.SETTINGS, 0, 0, b"\x00\x05\x00\x00"), "SETTINGS of 4"),
        (frame(http2.SETTINGS, 0, 0, struct.pack(">HI", 0x5, 0)), "MAX_FRAME_SIZE 0"),
        (frame(http2.SETTINGS, 0, 0, struct.pack(">HI", 0x4, 1 << 31)), "INITIAL_WINDOW"),
        (frame(http2.WINDOW_UPDATE, 0, 0, bytes(4)), "WINDOW_UPDATE of 0"),
        (frame(http2.DATA, 0, 1, bytes(16385)), "16385 bytes"),
        (frame(http2.DATA, http2.PADDED, 1, b"\x05ab"), "padding"),
    ],
)
def test_protocol_violations(server: Callable[[Script], str], frames: bytes, problem: str) -> None:
    def script(conn: socket.socket, _: list[Frame]) -> None:
        conn.sendall(headers_frame([(":status", "200")], 0) if "DATA before" not in problem and
                     "padding" not in problem else b"")  # fmt: skip
        conn.sendall(frames)

    with pytest.raises(http2.ProtocolError, match=problem):
        http2.request(server(script), REQUEST, b"x", timeout=5)


@pytest.mark.parametrize(
    ("headers", "cni_code"),
    [
        ([(":status", "503")], 11),  # no grpc-status: gRPC's HTTP mapping, UNAVAILABLE
        ([(":status", "404")], 999),  # UNIMPLEMENTED
        ([(":status", "500"), ("grpc-status", "5")], 3),  # grpc-status decides: NOT_FOUND
        ([(":status", "200")], 999),  # no grpc-status at all: UNKNOWN
    ],
)
def test_the_client_reads_a_trailers_only_answer(
    server: Callable[[Script], str], headers: list[tuple[str, str]], cni_code: int
) -> None:
    def script(conn: socket.socket, _: list[Frame]) -> None:
        conn.sendall(headers_frame(headers, http2.END_STREAM))

    with pytest.raises(DaemonError) as failed:
        DaemonClient(server(script), timeout=5).status()
    assert failed.value.cni_code == cni_code
