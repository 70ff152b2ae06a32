"""Keep the webhook's certificate current while it serves: one check per resync period.

A check reads the certificates from their source (the shared Secret, renewed there when due;
or the mounted files cert-manager keeps up to date), puts the CA into the webhook
configurations again when a Service is given (which also undoes anyone who removed it), and
serves a changed certificate from the next connection on. A new pair that does not load (a
key that does not match its certificate, caught half-written) is not served: the old one
stays until a later check finds a consistent pair. A failed check is logged and the next one
tries again; only start-up (in main) gives up on an error.
"""

from __future__ import annotations

import dataclasses
import logging
import ssl
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from hybridnet.logs import fields
from hybridnet.manager.webhook.cabundle import CABundlePatcher
from hybridnet.manager.webhook.secret import CertificateSecret
from hybridnet.manager.webhook.server import pem_context
from hybridnet.store.errors import StoreError

log = logging.getLogger(__name__)

RESYNC_SECONDS = 30.0


@dataclasses.dataclass(frozen=True)
class ServingMaterial:
    """PEMs: the serving certificate (chain) and key, and the CA for caBundle if known."""

    cert: bytes
    key: bytes
    ca: bytes | None


class CertificateSource(Protocol):
    def read(self) -> ServingMaterial:
        """The current certificates; raises StoreError or OSError."""
        ...


class SecretSource:
    """The self-managed Secret (created or renewed on the way when due)."""

    def __init__(self, secret: CertificateSecret) -> None:
        self.secret = secret

    def read(self) -> ServingMaterial:
        certs = self.secret.ensure()
        return ServingMaterial(certs.cert, certs.key, certs.ca_cert)


class FileSource:
    """Files someone else keeps current (a mounted cert-manager Secret)."""

    def __init__(self, cert: Path, key: Path, ca: Path | None) -> None:
        self.cert = cert
        self.key = key
        self.ca = ca

    def read(self) -> ServingMaterial:
        ca = self.ca.read_bytes() if self.ca is not None else None
        return ServingMaterial(self.cert.read_bytes(), self.key.read_bytes(), ca)


class CertificateKeeper:
    """Runs :meth:`check` every ``interval`` seconds in a daemon thread."""

    def __init__(
        self,
        source: CertificateSource,
        serve: Callable[[ssl.SSLContext], None],
        served: ServingMaterial,
        patcher: CABundlePatcher | None = None,
        interval: float = RESYNC_SECONDS,
    ) -> None:
        """``serve`` switches the server to a new context; ``served`` is what it serves now."""
        self.source = source
        self.serve = serve
        self.patcher = patcher
        self.interval = interval
        self._served = (served.cert, served.key)
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def check(self) -> None:
        """One round: read, patch caBundle, serve what changed. Raises StoreError or OSError
        (the new pair, if it loads, is served even when patching failed)."""
        material = self.source.read()
        try:
            if self.patcher is not None and material.ca is not None:
                self.patcher.ensure(material.ca)
        finally:
            self._serve(material)

    def _serve(self, material: ServingMaterial) -> None:
        if (material.cert, material.key) == self._served:
            return
        try:
            context = pem_context(material.cert, material.key)
        except ssl.SSLError as exc:
            log.warning(
                "new webhook certificate does not load; still serving the previous one",
                extra=fields(error=str(exc)),
            )
            return
        self.serve(context)
        self._served = (material.cert, material.key)
        log.info("webhook certificate reloaded")

    def start(self) -> CertificateKeeper:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="webhook-certs", daemon=True)
            self._thread.start()
        return self

    def stop(self, timeout: float | None = None) -> None:
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def _run(self) -> None:
        while not self._stopping.wait(self.interval):
            try:
                self.check()
            except (StoreError, OSError) as exc:
                log.error(
                    "webhook certificate check failed; retrying at the next resync",
                    extra=fields(error=f"{type(exc).__name__}: {exc}", retry_seconds=self.interval),
                )
