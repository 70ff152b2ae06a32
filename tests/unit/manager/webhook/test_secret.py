"""The shared certificate Secret: made once, reused by restarts and other replicas, renewed in
place keeping the CA, and races settled by the store (AlreadyExists, Conflict)."""

from __future__ import annotations

import base64
import datetime
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from hybridnet.api.builtin import Secret
from hybridnet.api.meta import ObjectMeta
from hybridnet.manager.webhook import certs
from hybridnet.manager.webhook.access import PermissionMissing
from hybridnet.manager.webhook.certs import CertificateSet
from hybridnet.manager.webhook.secret import (
    CertificateSecret,
    secret_data,
    stored_certificates,
)
from hybridnet.store.errors import Forbidden, Invalid
from hybridnet.store.interface import R, Store
from hybridnet.store.sqlite import SQLiteStore
from tests.unit.manager.stores import DelegatingStore

NAMESPACE = "hybridnet-system"
NAME = "hybridnet-webhook-certs"
NAMES = certs.service_dns_names("hybridnet-webhook", NAMESPACE)
START = datetime.datetime(2030, 1, 1, tzinfo=datetime.UTC)
RENEWAL_DUE = START + certs.SERVING_VALIDITY - certs.RENEW_WHEN_LEFT / 2


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SQLiteStore]:
    sqlite = SQLiteStore(tmp_path / "store.db")
    yield sqlite
    sqlite.close()


def replica(store: Store, at: datetime.datetime = START) -> CertificateSecret:
    return CertificateSecret(store, NAMESPACE, NAME, NAMES, clock=lambda: at)


def stored(store: Store) -> tuple[Secret, CertificateSet]:
    secret = store.get(Secret, NAME, NAMESPACE)
    found = stored_certificates(secret)
    assert found is not None
    return secret, found


def test_the_first_start_creates_a_tls_secret(store: SQLiteStore) -> None:
    made = replica(store).ensure()
    secret, found = stored(store)
    assert secret.body["type"] == "kubernetes.io/tls"
    assert sorted(secret.body["data"]) == ["ca.crt", "ca.key", "tls.crt", "tls.key"]
    assert base64.b64decode(secret.body["data"]["ca.crt"]) == made.ca_cert
    assert found == made
    assert certs.assess(made, NAMES, START).action is certs.Action.KEEP


def test_a_restart_and_a_second_replica_reuse_it_untouched(store: SQLiteStore) -> None:
    first = replica(store).ensure()
    version = store.get(Secret, NAME, NAMESPACE).resource_version
    later = START + datetime.timedelta(days=200)
    assert replica(store, later).ensure() == first
    assert replica(store, later).ensure() == first
    assert store.get(Secret, NAME, NAMESPACE).resource_version == version


def test_renewal_replaces_the_serving_pair_and_keeps_the_ca(store: SQLiteStore) -> None:
    first = replica(store).ensure()
    renewed = replica(store, RENEWAL_DUE).ensure()
    assert (renewed.ca_cert, renewed.ca_key) == (first.ca_cert, first.ca_key)
    assert renewed.cert != first.cert
    assert stored(store)[1] == renewed
    assert replica(store, RENEWAL_DUE).ensure() == renewed  # and then it is kept


class CreateRacer(DelegatingStore):
    """Another replica creates the Secret between this one's get (NotFound) and create."""

    def __init__(self, inner: Store) -> None:
        super().__init__(inner)
        self.winner: CertificateSet | None = None

    def create(self, obj: R) -> R:
        if self.winner is None and isinstance(obj, Secret):
            self.winner = replica(self.inner).ensure()
        return self.inner.create(obj)


def test_a_replica_that_loses_the_create_race_uses_the_winners(store: SQLiteStore) -> None:
    racer = CreateRacer(store)
    mine = replica(racer).ensure()
    assert racer.winner is not None
    assert mine == racer.winner == stored(store)[1]


class RenewalRacer(DelegatingStore):
    """Another replica renews between this one's get and update."""

    def __init__(self, inner: Store) -> None:
        super().__init__(inner)
        self.winner: CertificateSet | None = None

    def update(self, obj: R) -> R:
        if self.winner is None and isinstance(obj, Secret):
            self.winner = replica(self.inner, RENEWAL_DUE).ensure()
        return self.inner.update(obj)


def test_a_replica_that_loses_the_renewal_race_uses_the_winners(store: SQLiteStore) -> None:
    first = replica(store).ensure()
    racer = RenewalRacer(store)
    mine = replica(racer, RENEWAL_DUE).ensure()
    assert racer.winner is not None and racer.winner.cert != first.cert
    assert mine == racer.winner == stored(store)[1]


def test_replicas_starting_together_share_one_set(store: SQLiteStore) -> None:
    barrier = threading.Barrier(4)
    results: list[CertificateSet] = []

    def start() -> None:
        barrier.wait()
        results.append(replica(store).ensure())

    threads = [threading.Thread(target=start) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(results) == 4
    assert all(r == results[0] for r in results)
    assert stored(store)[1] == results[0]


def test_an_incomplete_secret_is_filled_in(store: SQLiteStore) -> None:
    store.create(
        Secret(
            ObjectMeta(name=NAME, namespace=NAMESPACE),
            body={"type": "kubernetes.io/tls", "data": {"tls.crt": "bm9wZQ=="}},
        )
    )
    made = replica(store).ensure()
    assert stored(store)[1] == made
    assert certs.assess(made, NAMES, START).action is certs.Action.KEEP


def test_a_secret_of_another_type_is_refused_naming_it(store: SQLiteStore) -> None:
    made = certs.new_certificate_set(NAMES, START)
    store.create(
        Secret(
            ObjectMeta(name=NAME, namespace=NAMESPACE),
            body={"type": "Opaque", "data": secret_data(made)},
        )
    )
    with pytest.raises(Invalid, match=f"{NAMESPACE}/{NAME} has type 'Opaque'"):
        replica(store).ensure()


class Refusing(DelegatingStore):
    def __init__(self, inner: Store, verb: str) -> None:
        super().__init__(inner)
        self.verb = verb

    def _before(self, verb: str, kind: str) -> None:
        if verb == self.verb:
            raise Forbidden(f'{kind} is forbidden: User "x" cannot {verb} resource "{kind}"')


@pytest.mark.parametrize("verb", ["get", "create", "update"])
def test_a_missing_permission_names_verb_and_resource(store: SQLiteStore, verb: str) -> None:
    if verb == "update":
        replica(store).ensure()  # so that renewing it needs an update
    at = RENEWAL_DUE if verb == "update" else START
    with pytest.raises(PermissionMissing) as refused:
        replica(Refusing(store, verb), at).ensure()
    message = str(refused.value)
    assert f'forbidden to {verb} secrets "{NAME}" in namespace "{NAMESPACE}"' in message
    assert refused.value.verb == verb and refused.value.resource == "secrets"
