"""Webhook configurations: their shape, and create-or-update through a store."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path

import pytest

from hybridnet.api.builtin import MutatingWebhookConfiguration, ValidatingWebhookConfiguration
from hybridnet.manager.webhook import registration
from hybridnet.store.errors import NotFound
from hybridnet.store.sqlite import SQLiteStore

CA = b"-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SQLiteStore]:
    sqlite = SQLiteStore(tmp_path / "store.db")
    yield sqlite
    sqlite.close()


def test_validating_configuration_shape() -> None:
    config = registration.validating_configuration("https://10.0.0.1:9898/validate", CA)
    assert config.name == "hybridnet-validating"
    (webhook,) = config.body["webhooks"]
    assert webhook["clientConfig"] == {
        "url": "https://10.0.0.1:9898/validate",
        "caBundle": base64.b64encode(CA).decode(),
    }
    assert webhook["failurePolicy"] == "Fail" and webhook["sideEffects"] == "None"
    assert webhook["admissionReviewVersions"] == ["v1"]
    (rule,) = webhook["rules"]
    assert rule["resources"] == ["networks", "subnets"]
    assert rule["operations"] == ["CREATE", "UPDATE", "DELETE"]
    assert rule["apiGroups"] == ["networking.alibaba.com"]
    assert "objectSelector" not in webhook


def test_mutating_configuration_shape() -> None:
    config = registration.mutating_configuration(
        "https://h/mutate",
        CA,
        namespace_selector={"matchLabels": {"hybridnet": "on"}},
        object_selector={"matchLabels": {"a": "b"}},
    )
    assert config.name == "hybridnet-mutating"
    (webhook,) = config.body["webhooks"]
    assert webhook["reinvocationPolicy"] == "Never" and webhook["failurePolicy"] == "Fail"
    assert webhook["rules"][0]["resources"] == ["pods"]
    assert webhook["rules"][0]["operations"] == ["CREATE"]
    assert webhook["namespaceSelector"] == {"matchLabels": {"hybridnet": "on"}}
    assert webhook["objectSelector"] == {"matchLabels": {"a": "b"}}


def test_only_https_urls() -> None:
    with pytest.raises(ValueError, match="https"):
        registration.validating_configuration("http://h/validate", CA)


def test_register_creates_then_updates_then_unregisters(store: SQLiteStore) -> None:
    validating, mutating = registration.register(store, "https://h:1/", CA)
    assert validating.body["webhooks"][0]["clientConfig"]["url"] == "https://h:1/validate"
    assert mutating.body["webhooks"][0]["clientConfig"]["url"] == "https://h:1/mutate"
    registration.register(store, "https://h:2", CA)
    current = store.get(ValidatingWebhookConfiguration, "hybridnet-validating")
    assert current.body["webhooks"][0]["clientConfig"]["url"] == "https://h:2/validate"
    assert current.metadata.labels["app.kubernetes.io/managed-by"] == "hybridnet"
    assert len(store.list(MutatingWebhookConfiguration).items) == 1
    registration.unregister(store)
    registration.unregister(store)  # twice is fine
    with pytest.raises(NotFound):
        store.get(MutatingWebhookConfiguration, "hybridnet-mutating")


def test_the_shipped_configurations_call_the_service_without_a_ca_bundle() -> None:
    validating, mutating = registration.service_configurations("hybridnet-system", "hw")
    (check,) = validating.body["webhooks"]
    (pods,) = mutating.body["webhooks"]
    assert check["clientConfig"] == {
        "service": {"namespace": "hybridnet-system", "name": "hw", "path": "/validate", "port": 443}
    }
    assert pods["clientConfig"]["service"]["path"] == "/mutate"
    assert validating.metadata.labels == {} == mutating.metadata.labels
    assert "namespaceSelector" not in check  # Networks and Subnets are cluster-scoped
    assert pods["namespaceSelector"] == registration.pod_namespace_selector("hybridnet-system")


def test_the_pod_webhook_leaves_out_system_and_install_namespaces_and_host_network_pods() -> None:
    selector = registration.pod_namespace_selector("hybridnet-system")
    assert selector["matchExpressions"] == [
        {
            "key": "kubernetes.io/metadata.name",
            "operator": "NotIn",
            "values": ["hybridnet-system", "kube-system"],
        },
        {"key": "networking.alibaba.com/webhook", "operator": "NotIn", "values": ["disabled"]},
    ]
    installed_in_kube_system = registration.pod_namespace_selector("kube-system")
    assert installed_in_kube_system["matchExpressions"][0]["values"] == ["kube-system"]
    (pods,) = registration.mutating_configuration("https://h/mutate", CA).body["webhooks"]
    assert pods["matchConditions"] == [
        {
            "name": "not-host-network",
            "expression": "!has(object.spec.hostNetwork) || !object.spec.hostNetwork",
        }
    ]
