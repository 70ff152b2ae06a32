"""Self-managed webhook certificates: a CA and the serving certificate it signs, without I/O.

The API server calls the webhook at its Service's DNS name and trusts nothing but the
``caBundle`` of the webhook configuration, so what must stay stable is the CA: the serving
certificate is renewed by the same CA when a third of its life is left (about four months
before it expires), and ``caBundle`` never changes. The CA is replaced only when it cannot be
used at all (unreadable, not a CA, its key lost) or has less than a third of a serving
certificate's life left; with a ten-year CA that is once a decade, and then admission fails
until every replica has read the new pair and the configurations carry the new CA (one
resync).

Keys are ECDSA P-256: quick to make at start-up and accepted by every API server.
:func:`assess` never says "renew" for a pair that is still good, which is what keeps
restarts and a second replica from rotating anything.
"""

from __future__ import annotations

import dataclasses
import datetime
import enum
from collections.abc import Sequence

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

CA_VALIDITY = datetime.timedelta(days=3650)
SERVING_VALIDITY = datetime.timedelta(days=365)
RENEW_WHEN_LEFT = SERVING_VALIDITY / 3
"""A serving certificate with less than this left is renewed: months of warning, and a failed
renewal (an API server down for days) still has time to succeed."""
BACKDATE = datetime.timedelta(minutes=5)
"""notBefore lies this far in the past, so a replica or API server whose clock is a little
behind accepts a certificate made a moment ago."""
CA_COMMON_NAME = "hybridnet-webhook-ca"
CLUSTER_DOMAIN = "cluster.local"


class Action(enum.Enum):
    """What a stored certificate set needs."""

    KEEP = "keep"
    RENEW_SERVING = "renew-serving"
    """A new serving certificate from the same CA (caBundle stays valid)."""
    NEW_CA = "new-ca"
    """A new CA and serving certificate (caBundle changes)."""


@dataclasses.dataclass(frozen=True)
class Assessment:
    action: Action
    reason: str


@dataclasses.dataclass(frozen=True)
class CertificateSet:
    """The CA and the serving certificate, each with its private key, all PEM."""

    ca_cert: bytes
    ca_key: bytes
    cert: bytes
    key: bytes


def service_dns_names(service: str, namespace: str) -> tuple[str, ...]:
    """The names a Service is called by; the API server uses ``<service>.<ns>.svc``."""
    return (
        service,
        f"{service}.{namespace}",
        f"{service}.{namespace}.svc",
        f"{service}.{namespace}.svc.{CLUSTER_DOMAIN}",
    )


# --------------------------------------------------------------------------- making


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _cert_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _key_usage(*, signs_certificates: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=signs_certificates,
        crl_sign=signs_certificates,
        encipher_only=False,
        decipher_only=False,
    )


def _new_ca(now: datetime.datetime) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, CA_COMMON_NAME)])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - BACKDATE)
        .not_valid_after(now + CA_VALIDITY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_key_usage(signs_certificates=True), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return cert, key


def _issue(
    ca_cert: x509.Certificate,
    ca_key: ec.EllipticCurvePrivateKey,
    dns_names: Sequence[str],
    now: datetime.datetime,
) -> tuple[bytes, bytes]:
    """A serving certificate for ``dns_names`` that ends no later than its CA."""
    key = ec.generate_private_key(ec.SECP256R1())
    not_after = min(now + SERVING_VALIDITY, ca_cert.not_valid_after_utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, dns_names[0])]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - BACKDATE)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(signs_certificates=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.SubjectAlternativeName([x509.DNSName(name) for name in dns_names]), critical=False
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    return _cert_pem(cert), _key_pem(key)


def new_certificate_set(dns_names: Sequence[str], now: datetime.datetime) -> CertificateSet:
    """A fresh CA and a serving certificate for ``dns_names`` signed by it."""
    if not dns_names:
        raise ValueError("a serving certificate needs at least one DNS name")
    ca_cert, ca_key = _new_ca(now)
    cert, key = _issue(ca_cert, ca_key, dns_names, now)
    return CertificateSet(_cert_pem(ca_cert), _key_pem(ca_key), cert, key)


def renew_serving(
    certs: CertificateSet, dns_names: Sequence[str], now: datetime.datetime
) -> CertificateSet:
    """The same CA with a new serving certificate (and key) for ``dns_names``."""
    if not dns_names:
        raise ValueError("a serving certificate needs at least one DNS name")
    ca_cert = x509.load_pem_x509_certificate(certs.ca_cert)
    ca_key = _ec_key(certs.ca_key)
    cert, key = _issue(ca_cert, ca_key, dns_names, now)
    return dataclasses.replace(certs, cert=cert, key=key)


def refreshed(
    certs: CertificateSet | None, dns_names: Sequence[str], now: datetime.datetime
) -> tuple[CertificateSet, Assessment]:
    """What ``certs`` should become (unchanged when they are good) and why."""
    if certs is None:
        return new_certificate_set(dns_names, now), Assessment(Action.NEW_CA, "none stored")
    verdict = assess(certs, dns_names, now)
    if verdict.action is Action.RENEW_SERVING:
        return renew_serving(certs, dns_names, now), verdict
    if verdict.action is Action.NEW_CA:
        return new_certificate_set(dns_names, now), verdict
    return certs, verdict


# --------------------------------------------------------------------------- judging


class _Unusable(Exception):
    """Internal: why a stored CA or serving pair cannot be used."""


def _ec_key(pem: bytes) -> ec.EllipticCurvePrivateKey:
    key = serialization.load_pem_private_key(pem, password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise _Unusable(f"the key is {type(key).__name__}, not an EC key")
    return key


def _same_public_key(cert: x509.Certificate, key: ec.EllipticCurvePrivateKey) -> bool:
    encoding, fmt = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    return cert.public_key().public_bytes(encoding, fmt) == key.public_key().public_bytes(
        encoding, fmt
    )


def _usable_ca(certs: CertificateSet, now: datetime.datetime) -> x509.Certificate:
    try:
        ca_cert = x509.load_pem_x509_certificate(certs.ca_cert)
        ca_key = _ec_key(certs.ca_key)
    except ValueError as exc:
        raise _Unusable(f"the CA cannot be read: {exc}") from exc
    if not _same_public_key(ca_cert, ca_key):
        raise _Unusable("the CA key does not belong to the CA certificate")
    try:
        is_ca = ca_cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    except x509.ExtensionNotFound:
        is_ca = False
    if not is_ca:
        raise _Unusable("the CA certificate is not a CA")
    left = ca_cert.not_valid_after_utc - now
    if left < RENEW_WHEN_LEFT:
        raise _Unusable(f"the CA expires at {ca_cert.not_valid_after_utc.isoformat()}")
    return ca_cert


def _serving_problem(
    certs: CertificateSet,
    ca_cert: x509.Certificate,
    dns_names: Sequence[str],
    now: datetime.datetime,
) -> str:
    """Why the serving pair needs renewing, or "" when it does not."""
    try:
        cert = x509.load_pem_x509_certificate(certs.cert)
        key = _ec_key(certs.key)
    except (ValueError, _Unusable) as exc:
        return f"the serving certificate cannot be read: {exc}"
    if not _same_public_key(cert, key):
        return "the serving key does not belong to the serving certificate"
    try:
        cert.verify_directly_issued_by(ca_cert)
    except (ValueError, TypeError, InvalidSignature):
        return "the serving certificate is not signed by the CA"
    try:
        sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        names = set(sans.get_values_for_type(x509.DNSName))
    except x509.ExtensionNotFound:
        names = set()
    missing = [name for name in dns_names if name not in names]
    if missing:
        return f"the serving certificate is not valid for {', '.join(missing)}"
    if now < cert.not_valid_before_utc:
        return f"the serving certificate is valid only from {cert.not_valid_before_utc.isoformat()}"
    if cert.not_valid_after_utc - now < RENEW_WHEN_LEFT:
        return f"the serving certificate expires at {cert.not_valid_after_utc.isoformat()}"
    return ""


def assess(certs: CertificateSet, dns_names: Sequence[str], now: datetime.datetime) -> Assessment:
    """Whether ``certs`` serve ``dns_names`` well past ``now``, and if not, what is needed."""
    try:
        ca_cert = _usable_ca(certs, now)
    except _Unusable as exc:
        return Assessment(Action.NEW_CA, str(exc))
    problem = _serving_problem(certs, ca_cert, dns_names, now)
    if problem:
        return Assessment(Action.RENEW_SERVING, problem)
    return Assessment(Action.KEEP, "valid")
