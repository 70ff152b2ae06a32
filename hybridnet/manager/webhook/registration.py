"""The webhook configurations: what the API server sends to the webhook, and when it may not.

Two ways to the API server: :func:`register` creates the configurations with a ``url``
clientConfig (the lab and tests, where the webhook is not behind a Service); a deployment ships
:func:`service_configurations` (``hybridnet-validating`` and ``hybridnet-mutating`` calling
Service ``hybridnet-webhook``, no caBundle) and the manager only fills in their caBundle
(cabundle.py).

Failure policy and scope. Both fail closed (``failurePolicy: Fail``): a Subnet that skipped the
overlap check, or a Pod that skipped node selection, would be worse than a refused request
while the webhook is down; a refused Pod is retried by its controller once the webhook is back.
Network and Subnet objects are hybridnet's own, so nothing else waits on that webhook. Pods are
everyone's, so the pod webhook stays out of the way of what must start without it:

- ``namespaceSelector`` leaves out ``kube-system`` (the cluster's own system pods: DNS, proxies,
  cloud controllers), the install namespace (the manager's replacement replicas must start
  while no replica answers), and every namespace labelled ``networking.alibaba.com/webhook:
  disabled`` (for anything hybridnet depends on, such as cert-manager's namespace when
  cert-manager issues the webhook's certificate);
- ``matchConditions`` leave out host-network pods, which need no network decision (node agents
  in any namespace start whatever the webhook's state);
- only ``CREATE`` of ``pods`` (no subresources), ``timeoutSeconds: 10``, ``sideEffects: None``
  (safe for dry runs), ``reinvocationPolicy: Never``.

``matchConditions`` need Kubernetes 1.30 (1.28 with the beta feature on).
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
VALIDATE_PATH = "/validate"
MUTATE_PATH = "/mutate"
SERVICE_PORT = 443
TIMEOUT_SECONDS = 10
APPLY_ATTEMPTS = 5
MANAGED_BY = {"app.kubernetes.io/managed-by": "hybridnet"}
NAMESPACE_NAME_LABEL = "kubernetes.io/metadata.name"
"""Set on every namespace by the API server (1.21+): selects namespaces by name."""
OPT_OUT_LABEL = f"{c.GROUP}/webhook"
OPT_OUT_VALUE = "disabled"
SYSTEM_NAMESPACE = "kube-system"
NOT_HOST_NETWORK = {
    "name": "not-host-network",
    "expression": "!has(object.spec.hostNetwork) || !object.spec.hostNetwork",
}

W = TypeVar("W", ValidatingWebhookConfiguration, MutatingWebhookConfiguration)

LabelSelector = dict[str, Any]
"""A Kubernetes LabelSelector as JSON: ``{"matchLabels": {...}, "matchExpressions": [...]}``."""
ClientConfig = dict[str, Any]


def pod_namespace_selector(install_namespace: str) -> LabelSelector:
    """Every namespace but kube-system, the install namespace and those that opted out."""
    excluded = sorted({SYSTEM_NAMESPACE, install_namespace})
    return {
        "matchExpressions": [
            {"key": NAMESPACE_NAME_LABEL, "operator": "NotIn", "values": excluded},
            {"key": OPT_OUT_LABEL, "operator": "NotIn", "values": [OPT_OUT_VALUE]},
        ]
    }


def url_client_config(url: str, ca_pem: bytes) -> ClientConfig:
    if not url.startswith("https://"):
        raise ValueError(f"webhook URL {url!r} must be https://")
    return {"url": url, "caBundle": base64.b64encode(ca_pem).decode()}


def service_client_config(
    namespace: str, service: str, path: str, port: int = SERVICE_PORT
) -> ClientConfig:
    """A Service reference without caBundle: the manager patches it in."""
    return {"service": {"namespace": namespace, "name": service, "path": path, "port": port}}


def _common(client_config: ClientConfig, timeout_seconds: int) -> dict[str, Any]:
    return {
        "clientConfig": client_config,
        "failurePolicy": "Fail",
        "sideEffects": "None",
        "admissionReviewVersions": ["v1"],
        "matchPolicy": "Equivalent",
        "timeoutSeconds": timeout_seconds,
    }


def _validating(
    client_config: ClientConfig, object_selector: LabelSelector | None, timeout_seconds: int
) -> ValidatingWebhookConfiguration:
    webhook = {
        "name": VALIDATING_WEBHOOK,
        **_common(client_config, timeout_seconds),
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


def _mutating(
    client_config: ClientConfig,
    namespace_selector: LabelSelector | None,
    object_selector: LabelSelector | None,
    timeout_seconds: int,
) -> MutatingWebhookConfiguration:
    webhook = {
        "name": MUTATING_WEBHOOK,
        **_common(client_config, timeout_seconds),
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
        "matchConditions": [dict(NOT_HOST_NETWORK)],
    }
    if namespace_selector is not None:
        webhook["namespaceSelector"] = namespace_selector
    if object_selector is not None:
        webhook["objectSelector"] = object_selector
    return MutatingWebhookConfiguration(
        ObjectMeta(name=MUTATING_NAME, labels=dict(MANAGED_BY)), body={"webhooks": [webhook]}
    )


def validating_configuration(
    url: str,
    ca_pem: bytes,
    *,
    object_selector: LabelSelector | None = None,
    timeout_seconds: int = TIMEOUT_SECONDS,
) -> ValidatingWebhookConfiguration:
    """Networks and Subnets, on create, update and delete, go to ``url`` (the /validate path)."""
    return _validating(url_client_config(url, ca_pem), object_selector, timeout_seconds)


def mutating_configuration(
    url: str,
    ca_pem: bytes,
    *,
    namespace_selector: LabelSelector | None = None,
    object_selector: LabelSelector | None = None,
    timeout_seconds: int = TIMEOUT_SECONDS,
) -> MutatingWebhookConfiguration:
    """New Pods (not host-network ones) go to ``url`` (the /mutate path) for their network
    and node selection."""
    return _mutating(
        url_client_config(url, ca_pem), namespace_selector, object_selector, timeout_seconds
    )


def service_configurations(
    namespace: str,
    service: str,
    *,
    port: int = SERVICE_PORT,
    object_selector: LabelSelector | None = None,
) -> tuple[ValidatingWebhookConfiguration, MutatingWebhookConfiguration]:
    """The configurations a deployment ships for Service ``namespace/service`` (the manager
    never creates them; the chart renders exactly these)."""
    validating = _validating(
        service_client_config(namespace, service, VALIDATE_PATH, port),
        object_selector,
        TIMEOUT_SECONDS,
    )
    mutating = _mutating(
        service_client_config(namespace, service, MUTATE_PATH, port),
        pod_namespace_selector(namespace),
        object_selector,
        TIMEOUT_SECONDS,
    )
    for shipped in (validating, mutating):
        shipped.metadata.labels = {}  # the chart's own labels, not "managed by hybridnet"
    return validating, mutating


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
            f"{base}{VALIDATE_PATH}",
            ca_pem,
            object_selector=object_selector,
            timeout_seconds=timeout_seconds,
        ),
    )
    mutating = apply(
        store,
        mutating_configuration(
            f"{base}{MUTATE_PATH}",
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
