"""The HTTPS server: endpoints, limits, TLS, logging, and that a stuck client blocks nobody."""

from __future__ import annotations

import http.client
import json
import logging
import socket
import ssl
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from hack.controlplane import CertificateAuthority
from hybridnet.manager.webhook.server import WebhookServer


class Recorder:
    def __init__(self) -> None:
        self.calls: list[tuple[str, bytes]] = []

    def __call__(self, endpoint: str, body: bytes) -> tuple[int, dict[str, Any]]:
        self.calls.append((endpoint, body))
        if body == b'{"boom": true}':
            raise RuntimeError("handler bug")
        return 200, {"endpoint": endpoint}


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    directory = tmp_path_factory.mktemp("tls")
    ca = CertificateAuthority("webhook-unit-ca")
    cert, key = ca.issue("webhook", sans=["127.0.0.1"], server=True).write(directory, "serving")
    ca_path = directory / "ca.crt"
    ca_path.write_bytes(ca.cert_pem)
    return cert, key, ca_path


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


@pytest.fixture
def server(tls: tuple[Path, Path, Path], recorder: Recorder) -> Iterator[WebhookServer]:
    cert, key, _ = tls
    with WebhookServer(
        recorder, cert, key, "127.0.0.1", 0, max_body_bytes=1024, request_timeout=2.0
    ) as running:
        yield running


def client_context(tls: tuple[Path, Path, Path]) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(tls[2]))


def call(
    server: WebhookServer,
    tls: tuple[Path, Path, Path],
    method: str,
    path: str,
    body: bytes | None = None,
    *,
    content_type: str = "application/json",
) -> tuple[int, bytes]:
    connection = http.client.HTTPSConnection(
        "127.0.0.1", server.port, context=client_context(tls), timeout=5
    )
    try:
        headers = {"Content-Type": content_type} if body is not None else {}
        connection.request(method, path, body=body, headers=headers)
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def test_port_zero_picks_a_port_and_healthz_answers(
    server: WebhookServer, tls: tuple[Path, Path, Path]
) -> None:
    assert server.port > 0
    assert call(server, tls, "GET", "/healthz") == (200, b"ok\n")
    assert call(server, tls, "GET", "/nope")[0] == 404


def test_review_endpoints_reach_the_handler(
    server: WebhookServer, tls: tuple[Path, Path, Path], recorder: Recorder
) -> None:
    status, body = call(server, tls, "POST", "/validate", b'{"a": 1}')
    assert (status, json.loads(body)) == (200, {"endpoint": "validate"})
    status, body = call(
        server, tls, "POST", "/mutate?timeout=10s", b"{}", content_type="application/json; x=y"
    )
    assert (status, json.loads(body)) == (200, {"endpoint": "mutate"})
    assert recorder.calls == [("validate", b'{"a": 1}'), ("mutate", b"{}")]


def test_requests_that_are_not_reviews_are_refused(
    server: WebhookServer, tls: tuple[Path, Path, Path], recorder: Recorder
) -> None:
    assert call(server, tls, "POST", "/elsewhere", b"{}")[0] == 404
    assert call(server, tls, "POST", "/validate", b"{}", content_type="text/plain")[0] == 415
    status, body = call(server, tls, "POST", "/validate", b"x" * 2000)
    assert status == 413 and b"exceeds 1024" in body
    assert call(server, tls, "PUT", "/validate", b"{}")[0] == 501
    assert recorder.calls == []


def test_a_failing_handler_gives_500_json(
    server: WebhookServer, tls: tuple[Path, Path, Path], caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="hybridnet.manager.webhook.server"):
        status, body = call(server, tls, "POST", "/validate", b'{"boom": true}')
    assert status == 500 and "internal error" in json.loads(body)["error"]
    assert any(r.exc_info for r in caplog.records if r.levelno == logging.ERROR)


def test_requests_are_logged_as_structured_records(
    server: WebhookServer, tls: tuple[Path, Path, Path], caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="hybridnet.manager.webhook.server"):
        call(server, tls, "GET", "/healthz")
    (record,) = [r for r in caplog.records if r.getMessage() == "webhook request"]
    logged = record.hybridnet_fields  # type: ignore[attr-defined]
    assert logged["status"] == 200 and logged["path"] == "/healthz" and logged["method"] == "GET"


def test_keep_alive_serves_several_requests_on_one_connection(
    server: WebhookServer, tls: tuple[Path, Path, Path]
) -> None:
    connection = http.client.HTTPSConnection(
        "127.0.0.1", server.port, context=client_context(tls), timeout=5
    )
    try:
        for _ in range(3):
            connection.request("POST", "/validate", b"{}", {"Content-Type": "application/json"})
            assert connection.getresponse().read() == b'{"endpoint": "validate"}'
    finally:
        connection.close()


def test_tls_below_1_2_is_refused(server: WebhookServer, tls: tuple[Path, Path, Path]) -> None:
    old = client_context(tls)
    with warnings.catch_warnings():  # Python deprecates TLS 1.1: exactly the point
        warnings.simplefilter("ignore", DeprecationWarning)
        old.minimum_version = ssl.TLSVersion.MINIMUM_SUPPORTED
        old.maximum_version = ssl.TLSVersion.TLSv1_1
    with pytest.raises((ssl.SSLError, ConnectionError)):
        call_with(old, server)


def call_with(context: ssl.SSLContext, server: WebhookServer) -> None:
    connection = http.client.HTTPSConnection("127.0.0.1", server.port, context=context, timeout=5)
    try:
        connection.request("GET", "/healthz")
        connection.getresponse().read()
    finally:
        connection.close()


def test_a_client_that_never_handshakes_blocks_nobody(
    server: WebhookServer, tls: tuple[Path, Path, Path], caplog: pytest.LogCaptureFixture
) -> None:
    with socket.create_connection(("127.0.0.1", server.port)) as silent:
        assert call(server, tls, "GET", "/healthz")[0] == 200
        silent.settimeout(5)
        # The server gives up on it after request_timeout (2 s) and closes the connection.
        assert silent.recv(1) == b""


def test_stop_closes_the_port(tls: tuple[Path, Path, Path], recorder: Recorder) -> None:
    server = WebhookServer(recorder, tls[0], tls[1], "127.0.0.1", 0)
    server.start()
    port = server.port
    server.stop()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
