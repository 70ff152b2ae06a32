"""caBundle into the shipped configurations: only the entries that call the Service, only that
field, never a configuration created, and clear errors for what is missing."""

from __future__ import annotations

import base64
import copy
from collections.abc import Iterator
from pathlib import Path

import pytest

from hybridnet.api.builtin import MutatingWebhookConfiguration, ValidatingWebhookConfiguration
from hybridnet.manager.webhook import registration
from hybridnet.manager.webhook.access import ConfigurationMissing, PermissionMissing
from hybridnet.manager.webhook.cabundle import CABundlePatcher, NoWebhookForService
from hybridnet.store.errors import Forbidden, NotFound
from hybridnet.store.interface import R, Store
from hybridnet.store.sqlite import SQLiteStore
from tests.unit.manager.stores import DelegatingStore

NAMESPACE = "hybridnet-system"
SERVICE = "hybridnet-webhook"
CA = b"-----BEGIN CERTIFICATE-----\nMIIBca\n-----END CERTIFICATE-----\n"
CA_BUNDLE = base64.b64encode(CA).decode()
OTHER = {"name": "other.example.com", "clientConfig": {"url": "https://elsewhere/x"}}


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SQLiteStore]:
    sqlite = SQLiteStore(tmp_path / "store.db")
    yield sqlite
    sqlite.close()


def ship(store: Store) -> None:
    """What the chart installs, plus a foreign entry and the chart's own metadata."""
    for config in registration.service_configurations(NAMESPACE, SERVICE):
        config.body["webhooks"].append(copy.deepcopy(OTHER))
        config.metadata.labels = {"app.kubernetes.io/managed-by": "Helm"}
        config.metadata.annotations = {"meta.helm.sh/release-name": "hybridnet"}
        store.create(config)


def webhooks(store: Store) -> list[dict[str, object]]:
    validating = store.get(ValidatingWebhookConfiguration, registration.VALIDATING_NAME)
    mutating = store.get(MutatingWebhookConfiguration, registration.MUTATING_NAME)
    return [*validating.body["webhooks"], *mutating.body["webhooks"]]


def test_the_ca_goes_into_the_entries_calling_the_service_only(store: SQLiteStore) -> None:
    ship(store)
    before = webhooks(store)
    changed = CABundlePatcher(store, NAMESPACE, SERVICE).ensure(CA)
    assert changed == [registration.VALIDATING_NAME, registration.MUTATING_NAME]
    after = webhooks(store)
    for old, new in zip(before, after, strict=True):
        if new["name"] == OTHER["name"]:
            assert new == old  # a foreign entry stays as it was
            continue
        expected = copy.deepcopy(old)
        expected["clientConfig"]["caBundle"] = CA_BUNDLE  # type: ignore[index]
        assert new == expected  # and nothing but caBundle changed
    mutating = store.get(MutatingWebhookConfiguration, registration.MUTATING_NAME)
    assert mutating.metadata.labels == {"app.kubernetes.io/managed-by": "Helm"}
    assert mutating.metadata.annotations == {"meta.helm.sh/release-name": "hybridnet"}


def test_nothing_is_written_when_it_is_already_there(store: SQLiteStore) -> None:
    ship(store)
    patcher = CABundlePatcher(store, NAMESPACE, SERVICE)
    patcher.ensure(CA)
    version = store.get(MutatingWebhookConfiguration, registration.MUTATING_NAME).resource_version
    assert patcher.ensure(CA) == []
    assert (
        store.get(MutatingWebhookConfiguration, registration.MUTATING_NAME).resource_version
        == version
    )


def test_a_changed_bundle_is_put_back(store: SQLiteStore) -> None:
    ship(store)
    patcher = CABundlePatcher(store, NAMESPACE, SERVICE)
    patcher.ensure(CA)
    tampered = store.get(ValidatingWebhookConfiguration, registration.VALIDATING_NAME)
    del tampered.body["webhooks"][0]["clientConfig"]["caBundle"]
    store.update(tampered)
    assert patcher.ensure(CA) == [registration.VALIDATING_NAME]
    assert webhooks(store)[0]["clientConfig"]["caBundle"] == CA_BUNDLE  # type: ignore[index]


def test_a_missing_configuration_is_named_and_never_created(store: SQLiteStore) -> None:
    validating, _ = registration.service_configurations(NAMESPACE, SERVICE)
    store.create(validating)
    with pytest.raises(
        ConfigurationMissing, match="MutatingWebhookConfiguration hybridnet-mutating"
    ):
        CABundlePatcher(store, NAMESPACE, SERVICE).ensure(CA)
    with pytest.raises(NotFound):
        store.get(MutatingWebhookConfiguration, registration.MUTATING_NAME)


def test_a_configuration_that_does_not_call_the_service_is_named(store: SQLiteStore) -> None:
    ship(store)
    with pytest.raises(NoWebhookForService, match=f"hybridnet-validating .* {NAMESPACE}/renamed"):
        CABundlePatcher(store, NAMESPACE, "renamed").ensure(CA)


class OneConcurrentEdit(DelegatingStore):
    """Someone else edits the configuration between the patcher's get and its update."""

    def __init__(self, inner: Store) -> None:
        super().__init__(inner)
        self.edited = False

    def update(self, obj: R) -> R:
        if not self.edited:
            self.edited = True
            theirs = self.inner.get(type(obj), obj.name)
            theirs.metadata.labels["edited"] = "by-someone-else"
            self.inner.update(theirs)
        return self.inner.update(obj)


def test_a_concurrent_edit_is_kept(store: SQLiteStore) -> None:
    ship(store)
    CABundlePatcher(OneConcurrentEdit(store), NAMESPACE, SERVICE).ensure(CA)
    validating = store.get(ValidatingWebhookConfiguration, registration.VALIDATING_NAME)
    assert validating.metadata.labels["edited"] == "by-someone-else"
    assert validating.body["webhooks"][0]["clientConfig"]["caBundle"] == CA_BUNDLE


class Refusing(DelegatingStore):
    def __init__(self, inner: Store, verb: str) -> None:
        super().__init__(inner)
        self.verb = verb

    def _before(self, verb: str, kind: str) -> None:
        if verb == self.verb:
            raise Forbidden(f"{kind} is forbidden")


@pytest.mark.parametrize("verb", ["get", "update"])
def test_a_missing_permission_names_verb_resource_and_configuration(
    store: SQLiteStore, verb: str
) -> None:
    ship(store)
    with pytest.raises(PermissionMissing) as refused:
        CABundlePatcher(Refusing(store, verb), NAMESPACE, SERVICE).ensure(CA)
    assert (
        f"forbidden to {verb} validatingwebhookconfigurations.admissionregistration.k8s.io "
        f'"hybridnet-validating"'
    ) in str(refused.value)
