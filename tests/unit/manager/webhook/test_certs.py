"""Self-managed certificates: what is made, when it is kept, renewed or replaced, and that a
real TLS client accepts it for exactly the Service's names."""

from __future__ import annotations

import datetime
import socket
import ssl
import threading

import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

from hybridnet.manager.webhook import certs
from hybridnet.manager.webhook.certs import Action, CertificateSet
from hybridnet.manager.webhook.server import pem_context

NOW = datetime.datetime(2030, 1, 1, tzinfo=datetime.UTC)
NAMES = certs.service_dns_names("hybridnet-webhook", "hybridnet-system")


@pytest.fixture(scope="module")
def fresh() -> CertificateSet:
    return certs.new_certificate_set(NAMES, NOW)


def cert(pem: bytes) -> x509.Certificate:
    return x509.load_pem_x509_certificate(pem)


def dns_names(pem: bytes) -> list[str]:
    sans = cert(pem).extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return list(sans.get_values_for_type(x509.DNSName))


def test_the_service_names() -> None:
    assert NAMES == (
        "hybridnet-webhook",
        "hybridnet-webhook.hybridnet-system",
        "hybridnet-webhook.hybridnet-system.svc",
        "hybridnet-webhook.hybridnet-system.svc.cluster.local",
    )


def test_a_new_set_is_a_ca_and_a_serving_certificate_for_the_names(fresh: CertificateSet) -> None:
    ca, serving = cert(fresh.ca_cert), cert(fresh.cert)
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert not serving.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    usages = serving.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(usages) == [ExtendedKeyUsageOID.SERVER_AUTH]
    assert dns_names(fresh.cert) == list(NAMES)
    serving.verify_directly_issued_by(ca)
    assert ca.not_valid_after_utc == NOW + certs.CA_VALIDITY
    assert serving.not_valid_after_utc == NOW + certs.SERVING_VALIDITY
    assert serving.not_valid_before_utc == NOW - certs.BACKDATE
    assert certs.assess(fresh, NAMES, NOW).action is Action.KEEP


def _handshake(server: ssl.SSLContext, client: ssl.SSLContext, hostname: str) -> None:
    """A TLS handshake over a socket pair; raises the client's ssl.SSLError on a refusal."""
    left, right = socket.socketpair()
    failures: list[BaseException] = []

    def serve() -> None:
        try:
            with server.wrap_socket(right, server_side=True) as tls:
                tls.recv(1)
        except (ssl.SSLError, OSError) as exc:
            failures.append(exc)

    thread = threading.Thread(target=serve)
    thread.start()
    try:
        with client.wrap_socket(left, server_hostname=hostname) as tls:
            tls.sendall(b"x")
    finally:
        thread.join()


def test_a_tls_client_trusting_the_ca_accepts_exactly_the_service_names() -> None:
    now = datetime.datetime.now(datetime.UTC)
    made = certs.new_certificate_set(NAMES, now)
    server = pem_context(made.cert, made.key)
    client = ssl.create_default_context(cadata=made.ca_cert.decode())
    for name in NAMES:
        _handshake(server, client, name)
    with pytest.raises(ssl.SSLCertVerificationError, match="mismatch"):
        _handshake(server, client, "other.hybridnet-system.svc")


def test_kept_until_a_third_of_its_life_is_left(fresh: CertificateSet) -> None:
    renew_at = NOW + certs.SERVING_VALIDITY - certs.RENEW_WHEN_LEFT
    second = datetime.timedelta(seconds=1)
    assert certs.assess(fresh, NAMES, renew_at - second).action is Action.KEEP
    due = certs.assess(fresh, NAMES, renew_at + second)
    assert due.action is Action.RENEW_SERVING
    assert "expires at" in due.reason


def test_renewal_keeps_the_ca(fresh: CertificateSet) -> None:
    later = NOW + certs.SERVING_VALIDITY - datetime.timedelta(days=30)
    renewed, verdict = certs.refreshed(fresh, NAMES, later)
    assert verdict.action is Action.RENEW_SERVING
    assert (renewed.ca_cert, renewed.ca_key) == (fresh.ca_cert, fresh.ca_key)
    assert renewed.cert != fresh.cert and renewed.key != fresh.key
    cert(renewed.cert).verify_directly_issued_by(cert(fresh.ca_cert))
    assert cert(renewed.cert).not_valid_after_utc == later + certs.SERVING_VALIDITY
    assert certs.assess(renewed, NAMES, later).action is Action.KEEP


def test_a_good_set_comes_back_unchanged(fresh: CertificateSet) -> None:
    kept, verdict = certs.refreshed(fresh, NAMES, NOW + datetime.timedelta(days=100))
    assert kept is fresh and verdict.action is Action.KEEP


def test_other_names_get_a_new_serving_certificate_from_the_same_ca(
    fresh: CertificateSet,
) -> None:
    names = certs.service_dns_names("renamed", "hybridnet-system")
    verdict = certs.assess(fresh, names, NOW)
    assert verdict.action is Action.RENEW_SERVING
    assert "renamed.hybridnet-system.svc" in verdict.reason
    renewed, _ = certs.refreshed(fresh, names, NOW)
    assert dns_names(renewed.cert) == list(names)
    assert renewed.ca_cert == fresh.ca_cert


def test_a_serving_pair_that_does_not_fit_is_renewed(fresh: CertificateSet) -> None:
    other = certs.new_certificate_set(NAMES, NOW)
    cases = {
        "not signed by the CA": CertificateSet(fresh.ca_cert, fresh.ca_key, other.cert, other.key),
        "does not belong": CertificateSet(fresh.ca_cert, fresh.ca_key, fresh.cert, other.key),
        "cannot be read": CertificateSet(fresh.ca_cert, fresh.ca_key, b"junk", fresh.key),
    }
    for why, broken in cases.items():
        verdict = certs.assess(broken, NAMES, NOW)
        assert verdict.action is Action.RENEW_SERVING, why
        assert why in verdict.reason


def test_a_certificate_from_the_future_is_renewed(fresh: CertificateSet) -> None:
    verdict = certs.assess(fresh, NAMES, NOW - datetime.timedelta(hours=1))
    assert verdict.action is Action.RENEW_SERVING
    assert "valid only from" in verdict.reason


def test_an_unusable_ca_means_a_new_ca(fresh: CertificateSet) -> None:
    other = certs.new_certificate_set(NAMES, NOW)
    cases = {
        "cannot be read": CertificateSet(b"junk", fresh.ca_key, fresh.cert, fresh.key),
        "does not belong": CertificateSet(fresh.ca_cert, other.ca_key, fresh.cert, fresh.key),
        "not a CA": CertificateSet(fresh.cert, fresh.key, fresh.cert, fresh.key),
    }
    for why, broken in cases.items():
        verdict = certs.assess(broken, NAMES, NOW)
        assert verdict.action is Action.NEW_CA, why
        assert why in verdict.reason


def test_a_ca_near_its_end_is_replaced_and_never_outlived(fresh: CertificateSet) -> None:
    ca_end = NOW + certs.CA_VALIDITY
    # With a year left the serving certificate is cut to the CA's end...
    year_left = ca_end - datetime.timedelta(days=365)
    renewed = certs.renew_serving(fresh, NAMES, year_left)
    assert cert(renewed.cert).not_valid_after_utc == ca_end
    # ...and with less than a third of a serving certificate's life left, the CA goes.
    verdict = certs.assess(renewed, NAMES, ca_end - certs.RENEW_WHEN_LEFT / 2)
    assert verdict.action is Action.NEW_CA and "the CA expires" in verdict.reason
    replaced, _ = certs.refreshed(renewed, NAMES, ca_end - certs.RENEW_WHEN_LEFT / 2)
    assert replaced.ca_cert != fresh.ca_cert


def test_nothing_stored_means_a_new_set() -> None:
    made, verdict = certs.refreshed(None, NAMES, NOW)
    assert verdict.action is Action.NEW_CA
    assert certs.assess(made, NAMES, NOW).action is Action.KEEP


def test_names_are_required() -> None:
    with pytest.raises(ValueError, match="DNS name"):
        certs.new_certificate_set((), NOW)
