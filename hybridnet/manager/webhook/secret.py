"""The self-managed certificates, kept in one Secret that every manager replica shares.

Each replica calls :meth:`CertificateSecret.ensure` at start and on every resync. The first
replica to find no Secret creates one; a replica that loses that race (AlreadyExists) reads the
winner's, and one that loses a renewal race (Conflict) reads the renewed pair. Nothing is
written while the stored pair is good (certs.assess), so restarts and extra replicas never
rotate anything.

The Secret is ``kubernetes.io/tls`` with ``tls.crt``, ``tls.key`` and ``ca.crt`` (what a
cert-manager Secret holds, so the same mount works in both modes) and also ``ca.key``: without
the CA's key the serving certificate could not be renewed by the same CA, and caBundle would
have to change at every renewal. The CA signs nothing but this webhook's certificate, so its
key in this Secret gives no more than ``tls.key`` already does: the power to answer as the
webhook.
"""

from __future__ import annotations

import base64
import binascii
import datetime
import logging
from collections.abc import Callable, Sequence

from hybridnet.api.builtin import Secret
from hybridnet.api.meta import ObjectMeta
from hybridnet.logs import fields
from hybridnet.manager.webhook.access import permission
from hybridnet.manager.webhook.certs import Action, CertificateSet, refreshed
from hybridnet.store.errors import AlreadyExists, Conflict, Invalid, NotFound
from hybridnet.store.interface import Store

log = logging.getLogger(__name__)

SECRET_TYPE = "kubernetes.io/tls"  # noqa: S105 (a Secret type, not a password)
CERT_KEY = "tls.crt"
KEY_KEY = "tls.key"
CA_CERT_KEY = "ca.crt"
CA_KEY_KEY = "ca.key"
DATA_KEYS = (CERT_KEY, KEY_KEY, CA_CERT_KEY, CA_KEY_KEY)
ATTEMPTS = 5
MANAGED_BY = {"app.kubernetes.io/managed-by": "hybridnet"}

Clock = Callable[[], datetime.datetime]


def utc_now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def secret_data(certs: CertificateSet) -> dict[str, str]:
    pems = {
        CERT_KEY: certs.cert,
        KEY_KEY: certs.key,
        CA_CERT_KEY: certs.ca_cert,
        CA_KEY_KEY: certs.ca_key,
    }
    return {key: base64.b64encode(pem).decode() for key, pem in pems.items()}


def stored_certificates(secret: Secret) -> CertificateSet | None:
    """The set the Secret holds; None when a key is missing or not base64 (then it is
    replaced whole, as a first start would make it)."""
    data = secret.body.get("data") or {}
    try:
        pems = {key: base64.b64decode(data[key], validate=True) for key in DATA_KEYS}
    except (KeyError, TypeError, binascii.Error):
        return None
    return CertificateSet(
        ca_cert=pems[CA_CERT_KEY], ca_key=pems[CA_KEY_KEY], cert=pems[CERT_KEY], key=pems[KEY_KEY]
    )


class CertificateSecret:
    """Secret ``name`` in ``namespace``, holding certificates valid for ``dns_names``."""

    def __init__(
        self,
        store: Store,
        namespace: str,
        name: str,
        dns_names: Sequence[str],
        clock: Clock = utc_now,
    ) -> None:
        self.store = store
        self.namespace = namespace
        self.name = name
        self.dns_names = tuple(dns_names)
        self.clock = clock

    def ensure(self) -> CertificateSet:
        """The stored certificates, after creating or renewing them if that is due."""
        for _ in range(ATTEMPTS):
            try:
                with permission("get", Secret.KIND, self.name, self.namespace):
                    secret = self.store.get(Secret, self.name, self.namespace)
            except NotFound:
                try:
                    return self._create()
                except AlreadyExists:
                    continue  # another replica was first: use its certificates
            try:
                return self._refresh(secret)
            except Conflict:
                continue  # another replica renewed first: read its pair
        raise Conflict(
            f"Secret {self.namespace}/{self.name}: still changing after {ATTEMPTS} tries"
        )

    def _create(self) -> CertificateSet:
        certs, _ = refreshed(None, self.dns_names, self.clock())
        secret = Secret(
            ObjectMeta(name=self.name, namespace=self.namespace, labels=dict(MANAGED_BY)),
            body={"type": SECRET_TYPE, "data": secret_data(certs)},
        )
        with permission("create", Secret.KIND, self.name, self.namespace):
            self.store.create(secret)
        log.info(
            "webhook certificates created",
            extra=fields(secret=f"{self.namespace}/{self.name}", dns_names=list(self.dns_names)),
        )
        return certs

    def _refresh(self, secret: Secret) -> CertificateSet:
        kind = secret.body.get("type")
        if kind != SECRET_TYPE:
            # The type cannot be changed in place, and deleting a Secret someone else made is
            # not the manager's call.
            raise Invalid(
                f"Secret {self.namespace}/{self.name} has type {kind!r}, not {SECRET_TYPE!r}: "
                "delete it and the manager makes its own"
            )
        stored = stored_certificates(secret)
        certs, verdict = refreshed(stored, self.dns_names, self.clock())
        if certs is stored:
            return certs
        secret.body["data"] = secret_data(certs)
        with permission("update", Secret.KIND, self.name, self.namespace):
            self.store.update(secret)
        renewal = verdict.action is Action.RENEW_SERVING
        log.log(
            logging.INFO if renewal else logging.WARNING,
            "webhook serving certificate renewed" if renewal else "webhook CA replaced",
            extra=fields(
                secret=f"{self.namespace}/{self.name}",
                action=verdict.action.value,
                reason=verdict.reason,
            ),
        )
        return certs
