"""Put the CA into the shipped webhook configurations, and nothing else.

The chart (or deploy/) ships ``hybridnet-validating`` and ``hybridnet-mutating`` with a
``service`` clientConfig and no caBundle; the manager fills in ``caBundle`` of every webhook
entry that calls its Service, leaves every other field and entry alone, and never creates a
configuration (the chart owns their scope, so a configuration the manager made up would
outlive an uninstall). Each update carries the resourceVersion it read, so a concurrent change
by someone else is never overwritten: the manager reads again and re-applies only its field.
The check repeats every resync, which undoes a ``kubectl replace`` or an upgrade that drops
the field.
"""

from __future__ import annotations

import base64
import logging
from collections.abc import Mapping
from typing import Any

from hybridnet.api.builtin import MutatingWebhookConfiguration, ValidatingWebhookConfiguration
from hybridnet.logs import fields
from hybridnet.manager.webhook.access import ConfigurationMissing, permission
from hybridnet.manager.webhook.registration import MUTATING_NAME, VALIDATING_NAME
from hybridnet.store.errors import Conflict, NotFound, StoreError
from hybridnet.store.interface import Store

log = logging.getLogger(__name__)

ATTEMPTS = 5
CONFIGURATIONS: tuple[
    tuple[type[ValidatingWebhookConfiguration] | type[MutatingWebhookConfiguration], str], ...
] = (
    (ValidatingWebhookConfiguration, VALIDATING_NAME),
    (MutatingWebhookConfiguration, MUTATING_NAME),
)


class NoWebhookForService(StoreError):
    """A configuration has no webhook entry that calls the manager's Service."""


def calls_service(webhook: Mapping[str, Any], namespace: str, service: str) -> bool:
    reference = (webhook.get("clientConfig") or {}).get("service") or {}
    return bool(reference.get("namespace") == namespace and reference.get("name") == service)


def with_ca_bundle(
    body: Mapping[str, Any], namespace: str, service: str, ca_bundle: str
) -> tuple[list[dict[str, Any]], int, bool]:
    """The webhook list with ``ca_bundle`` (base64) in each entry that calls the Service;
    also how many entries call it and whether any of them changed."""
    webhooks: list[dict[str, Any]] = []
    matched, changed = 0, False
    for webhook in body.get("webhooks") or []:
        entry = dict(webhook)
        if calls_service(entry, namespace, service):
            matched += 1
            client_config = dict(entry["clientConfig"])
            if client_config.get("caBundle") != ca_bundle:
                client_config["caBundle"] = ca_bundle
                changed = True
            entry["clientConfig"] = client_config
        webhooks.append(entry)
    return webhooks, matched, changed


class CABundlePatcher:
    """Keeps the CA in the configurations whose webhooks call Service ``namespace/service``."""

    def __init__(self, store: Store, namespace: str, service: str) -> None:
        self.store = store
        self.namespace = namespace
        self.service = service

    def ensure(self, ca_pem: bytes) -> list[str]:
        """Patch both configurations where needed; the names of those that changed.

        Raises ConfigurationMissing, NoWebhookForService, PermissionMissing (naming the verb
        and the configuration), or the store's error."""
        ca_bundle = base64.b64encode(ca_pem).decode()
        return [name for kind, name in CONFIGURATIONS if self._ensure_one(kind, name, ca_bundle)]

    def _ensure_one(
        self,
        kind: type[ValidatingWebhookConfiguration] | type[MutatingWebhookConfiguration],
        name: str,
        ca_bundle: str,
    ) -> bool:
        for _ in range(ATTEMPTS):
            try:
                with permission("get", kind.KIND, name):
                    current = self.store.get(kind, name)
            except NotFound as exc:
                raise ConfigurationMissing(kind.KIND, name) from exc
            webhooks, matched, changed = with_ca_bundle(
                current.body, self.namespace, self.service, ca_bundle
            )
            if not matched:
                raise NoWebhookForService(
                    f"{kind.KIND.kind} {name} has no webhook whose clientConfig.service is "
                    f"{self.namespace}/{self.service}"
                )
            if not changed:
                return False
            current.body = {**current.body, "webhooks": webhooks}
            try:
                with permission("update", kind.KIND, name):
                    self.store.update(current)
            except Conflict:
                continue
            except NotFound as exc:
                raise ConfigurationMissing(kind.KIND, name) from exc
            log.info(
                "webhook CA bundle patched",
                extra=fields(configuration=f"{kind.KIND.kind}/{name}", webhooks=matched),
            )
            return True
        raise Conflict(f"{kind.KIND.kind} {name}: still changing after {ATTEMPTS} tries")
