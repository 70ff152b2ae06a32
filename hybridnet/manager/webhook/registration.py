"""Tell the API server where the webhook is: one validating and one mutating configuration.

Both fail closed (``failurePolicy: Fail``): a Subnet that skipped the overlap check or a Pod that
skipped node selection would be worse than a refused request while the webhook is down. So a
deployment must keep the webhook's own pods out of the mutating scope (``namespace_selector``,
``object_selector``) or run them with host networking, and :func:`unregister` on uninstall.
"""

from __future__ import annotations

import base64
import contextlib
from typing import Any, TypeVar

from hybridnet.api import constants as c
from hybridnet.api.builtin import MutatingWebhookConfiguration, ValidatingWebhookConfiguration
from hybridnet.api.meta import ObjectMeta
from hybridnet.store.errors import AlreadyExists, Conflict, NotFound
from hybridnet.store.interface import Store

VALIDATING_NAME = "hybridnet-validating"
MUTATING_NAME = "hybridnet-mutating"
VALIDATING_WEBHOOK = "validating.networking.alibaba.com"
MUTATING_WEBHOOK = "pods.mutating.networking.alibaba.com"
TIMEOUT_SECONDS = 10
APPLY_ATTEMPTS = 5
MANAGED_BY = {"app.kubernetes.io/managed-by": "hybridnet"}

W = TypeVar("W", ValidatingWebhookConfiguration, MutatingWebhookConfiguration)

LabelSelector = dict[str, Any]
"""A Kubernetes LabelSelector as JSON: ``{"matchLabels": {...}, "matchExpressions": [...]}``."""


def _client_config(url: str, ca_pem: bytes) -> dict[str, str]:
    if not url.startswith("https://"):
        raise ValueError(f"webhook URL {url!r} must be https://")
    return {"url": url, "caBundle": base64.b64encode(ca_pem).decode()}


def _common(url: str, ca_pem: bytes, timeout_seconds: int) -> dict[str, Any]:
    return {
        "clientConfig": _client_config(url, ca_pem),
        "failurePolicy": "Fail",
        "sideEffects": "None",
        "admissionReviewVersions": ["v1"],
        "matchPolicy": "Equivalent",
        "timeoutSeconds": timeout_seconds,
    }


def validating_configuration(
    url: str,
    ca_pem: bytes,
    *,
    object_selector: LabelSelector | None = None,
    timeout_seconds: int = TIMEOUT_SECONDS,
) -> ValidatingWebhookConfiguration:
    """Networks and Subnets, on create, update and delete, go to ``url`` (the /validate path)."""
    webhook = {
        "name": VALIDATING_WEBHOOK,
        **_common(url, ca_pem, timeout_seconds),
        "rules": [
            {
                "apiGroups": [c.GROUP],
                "apiVersions": [c.VERSION],
                "operations": ["CREATE", "UPDATE", "DELETE"],
                "resources": ["networks", "subnets"],
                "scope": "Cluster",
            }
        ],
    }
    if object_selector is not None:
        webhook["objectSelector"] = object_selector
    return ValidatingWebhookConfiguration(
        ObjectMeta(name=VALIDATING_NAME, labels=dict(MANAGED_BY)), body={"webhooks": [webhook]}
    )


def mutating_configuration(
    url: str,
    ca_pem: bytes,
    *,
    namespace_selector: LabelSelector | None = None,
    object_selector: LabelSelector | None = None,
    timeout_seconds: int = TIMEOUT_SECONDS,
) -> MutatingWebhookConfiguration:
    """New Pods go to ``url`` (the /mutate path) for their network and node selection."""
    webhook = {
        "name": MUTATING_WEBHOOK,
        **_common(url, ca_pem, timeout_seconds),
        "reinvocationPolicy": "Never",
        "rules": [
            {
                "apiGroups": [""],
                "apiVersions": ["v1"],
                "operations": ["CREATE"],
                "resources": ["pods"],
                "scope": "Namespaced",
            }
        ],
    }
    if namespace_selector is not None:
        webhook["namespaceSelector"] = namespace_selector
    if object_selector is not None:
        webhook["objectSelector"] = object_selector
    return MutatingWebhookConfiguration(
        ObjectMeta(name=MUTATING_NAME, labels=dict(MANAGED_BY)), body={"webhooks": [webhook]}
    )


def apply(store: Store, desired: W) -> W:
    """Create the configuration, or replace the one of that name; retried on write races."""
    kind = type(desired)
    for _ in range(APPLY_ATTEMPTS):
        try:
            current = store.get(kind, desired.name)
        except NotFound:
            try:
                return store.create(desired)
            except AlreadyExists:
                continue
        current.metadata.labels.update(desired.metadata.labels)
        current.body = {**current.body, **desired.body}
        try:
            return store.update(current)
        except (Conflict, NotFound):
            continue
    raise Conflict(f"{kind.KIND.kind} {desired.name}: still changing after {APPLY_ATTEMPTS} tries")


def register(
    store: Store,
    base_url: str,
    ca_pem: bytes,
    *,
    namespace_selector: LabelSelector | None = None,
    object_selector: LabelSelector | None = None,
    timeout_seconds: int = TIMEOUT_SECONDS,
) -> tuple[ValidatingWebhookConfiguration, MutatingWebhookConfiguration]:
    """Apply both configurations for a server at ``base_url`` (``https://host:port``) whose
    certificate is signed by ``ca_pem``."""
    base = base_url.rstrip("/")
    validating = apply(
        store,
        validating_configuration(
            f"{base}/validate",
            ca_pem,
            object_selector=object_selector,
            timeout_seconds=timeout_seconds,
        ),
    )
    mutating = apply(
        store,
        mutating_configuration(
            f"{base}/mutate",
            ca_pem,
            namespace_selector=namespace_selector,
            object_selector=object_selector,
            timeout_seconds=timeout_seconds,
        ),
    )
    return validating, mutating


def unregister(store: Store) -> None:
    """Delete both configurations (those already gone are fine)."""
    for kind, name in (
        (ValidatingWebhookConfiguration, VALIDATING_NAME),
        (MutatingWebhookConfiguration, MUTATING_NAME),
    ):
        with contextlib.suppress(NotFound):
            store.delete(kind, name)
