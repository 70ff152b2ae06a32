"""The certificate keeper against a real HTTPS server: changed files or a renewed Secret are
served from the next connection on, a half-written pair is not, caBundle is put back."""

from __future__ import annotations

import base64
import datetime
import logging
import socket
import ssl
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from hybridnet.api.builtin import ValidatingWebhookConfiguration
from hybridnet.manager.webhook import certs, registration
from hybridnet.manager.webhook.cabundle import CABundlePatcher
from hybridnet.manager.webhook.certs import CertificateSet
from hybridnet.manager.webhook.keeper import (
    CertificateKeeper,
    FileSource,
    SecretSource,
    ServingMaterial,
)
from hybridnet.manager.webhook.secret import CertificateSecret
from hybridnet.manager.webhook.server import WebhookServer, pem_context
from hybridnet.store.sqlite import SQLiteStore

NAMESPACE = "hybridnet-system"
SERVICE = "hybridnet-webhook"
NAMES = certs.service_dns_names(SERVICE, NAMESPACE)


def answer(endpoint: str, body: bytes) -> tuple[int, dict[str, Any]]:
    return 200, {}


def served_certificate(server: WebhookServer) -> bytes:
    """The DER certificate a new connection is handed (not verified: only compared)."""
    client = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    client.check_hostname = False
    client.verify_mode = ssl.CERT_NONE
    with (
        socket.create_connection((server.host, server.port), timeout=5) as raw,
        client.wrap_socket(raw) as tls,
    ):
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    return der


def der(pem: bytes) -> bytes:
    return ssl.PEM_cert_to_DER_cert(pem.decode())


def now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SQLiteStore]:
    sqlite = SQLiteStore(tmp_path / "store.db")
    yield sqlite
    sqlite.close()


def write(directory: Path, made: CertificateSet) -> FileSource:
    (directory / "tls.crt").write_bytes(made.cert)
    (directory / "tls.key").write_bytes(made.key)
    (directory / "ca.crt").write_bytes(made.ca_cert)
    return FileSource(directory / "tls.crt", directory / "tls.key", directory / "ca.crt")


def start(source: FileSource | SecretSource, **keeper: Any) -> tuple[WebhookServer, Any]:
    material = source.read()
    server = WebhookServer(
        answer, host="127.0.0.1", port=0, context=pem_context(material.cert, material.key)
    )
    server.start()
    return server, CertificateKeeper(source, server.use_context, material, **keeper)


def test_changed_files_are_served_without_a_restart(tmp_path: Path) -> None:
    first, second = certs.new_certificate_set(NAMES, now()), certs.new_certificate_set(NAMES, now())
    source = write(tmp_path, first)
    server, keeper = start(source)
    try:
        assert served_certificate(server) == der(first.cert)
        keeper.check()  # unchanged: still the same
        assert served_certificate(server) == der(first.cert)
        write(tmp_path, second)
        keeper.check()
        assert served_certificate(server) == der(second.cert)
    finally:
        server.stop()


def test_a_half_written_pair_is_not_served(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    first, second = certs.new_certificate_set(NAMES, now()), certs.new_certificate_set(NAMES, now())
    source = write(tmp_path, first)
    server, keeper = start(source)
    try:
        (tmp_path / "tls.crt").write_bytes(second.cert)  # the key is still the old one
        with caplog.at_level(logging.WARNING, "hybridnet.manager.webhook.keeper"):
            keeper.check()
        assert "still serving the previous one" in caplog.text
        assert served_certificate(server) == der(first.cert)
        (tmp_path / "tls.key").write_bytes(second.key)
        keeper.check()
        assert served_certificate(server) == der(second.cert)
    finally:
        server.stop()


def test_a_renewed_secret_is_served_and_the_ca_stays(store: SQLiteStore) -> None:
    start_time = now()
    clock = [start_time]
    secret = CertificateSecret(store, NAMESPACE, "certs", NAMES, clock=lambda: clock[0])
    source = SecretSource(secret)
    server, keeper = start(source)
    try:
        first = source.read()
        assert served_certificate(server) == der(first.cert)
        clock[0] = start_time + certs.SERVING_VALIDITY - certs.RENEW_WHEN_LEFT / 2
        keeper.check()
        renewed = source.read()
        assert renewed.ca == first.ca and renewed.cert != first.cert
        assert served_certificate(server) == der(renewed.cert)
    finally:
        server.stop()


def test_the_check_patches_the_ca_into_the_configurations(
    tmp_path: Path, store: SQLiteStore
) -> None:
    for config in registration.service_configurations(NAMESPACE, SERVICE):
        store.create(config)
    made = certs.new_certificate_set(NAMES, now())
    keeper = CertificateKeeper(
        write(tmp_path, made),
        lambda context: None,
        ServingMaterial(made.cert, made.key, made.ca_cert),
        CABundlePatcher(store, NAMESPACE, SERVICE),
    )
    keeper.check()
    validating = store.get(ValidatingWebhookConfiguration, registration.VALIDATING_NAME)
    client_config = validating.body["webhooks"][0]["clientConfig"]
    assert base64.b64decode(client_config["caBundle"]) == made.ca_cert


def test_the_running_keeper_picks_up_a_change(tmp_path: Path) -> None:
    first, second = certs.new_certificate_set(NAMES, now()), certs.new_certificate_set(NAMES, now())
    source = write(tmp_path, first)
    server, keeper = start(source, interval=0.05)
    keeper.start()
    try:
        write(tmp_path, second)
        deadline = time.monotonic() + 30  # hundreds of resyncs: only a stuck keeper misses it
        while served_certificate(server) != der(second.cert):
            assert time.monotonic() < deadline, "the keeper never served the new certificate"
            time.sleep(0.05)
    finally:
        keeper.stop()
        server.stop()
