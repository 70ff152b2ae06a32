"""Leader election against the real API server: the Lease passes its validation, kubectl shows
the holder, and an abandoned Lease passes to the other candidate once it expires."""

from __future__ import annotations

import json
import re
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from hack.controlplane import ControlPlane
from hybridnet.api.builtin import Lease, Namespace
from hybridnet.api.meta import ObjectMeta
from hybridnet.manager.leader import LeaderElector
from hybridnet.store.errors import Invalid
from hybridnet.store.kube import KubeStore

LEASE = 2.0
RENEW = 1.2
RETRY = 0.2
WAIT = 30.0
MICRO_TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$")


def wait_until(condition: Callable[[], bool], what: str, timeout: float = WAIT) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.02)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


@pytest.fixture(scope="module")
def kube_store(control_plane: ControlPlane) -> Iterator[KubeStore]:
    store = KubeStore.from_kubeconfig(control_plane.kubeconfig_path)
    yield store
    store.close()


@pytest.fixture(scope="module")
def lease_namespace(kube_store: KubeStore) -> str:
    name = f"leader-{uuid.uuid4().hex[:6]}"
    kube_store.create(Namespace(ObjectMeta(name=name)))
    return name


@pytest.fixture
def lease_name() -> str:
    return f"hybridnet-manager-{uuid.uuid4().hex[:6]}"


class Candidate:
    """One replica with its own connection to the API server, and its callbacks' times."""

    def __init__(
        self, plane: ControlPlane, namespace: str, name: str, identity: str, **options: Any
    ):
        self.store = KubeStore.from_kubeconfig(plane.kubeconfig_path)
        self.started: list[float] = []
        self.stopped: list[float] = []
        durations: dict[str, Any] = {
            "lease_duration": LEASE,
            "renew_deadline": RENEW,
            "retry_period": RETRY,
        }
        self.elector = LeaderElector(
            self.store,
            namespace=namespace,
            name=name,
            identity=identity,
            on_started_leading=lambda: self.started.append(time.monotonic()),
            on_stopped_leading=lambda: self.stopped.append(time.monotonic()),
            **{**durations, **options},
        )

    def leads(self) -> bool:
        return self.elector.is_leader


@pytest.fixture
def candidate(
    control_plane: ControlPlane, lease_namespace: str, lease_name: str
) -> Iterator[Callable[..., Candidate]]:
    made: list[Candidate] = []

    def make(identity: str, **options: Any) -> Candidate:
        made.append(Candidate(control_plane, lease_namespace, lease_name, identity, **options))
        return made[-1]

    yield make
    for each in made:
        each.elector.stop(release=False)
        each.store.close()


def kubectl_lease(plane: ControlPlane, namespace: str, name: str) -> dict[str, Any]:
    result = subprocess.run(
        [
            str(plane.kubectl),
            "--kubeconfig",
            str(plane.kubeconfig_path),
            "get",
            "lease",
            "-n",
            namespace,
            name,
            "-o",
            "json",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    lease: dict[str, Any] = json.loads(result.stdout)
    return lease


def test_one_leads_and_an_abandoned_lease_passes_on_after_expiry(
    control_plane: ControlPlane,
    candidate: Callable[..., Candidate],
    lease_namespace: str,
    lease_name: str,
) -> None:
    a = candidate("replica-a")
    b = candidate("replica-b")
    a.elector.start()
    assert a.elector.wait_for_leadership(WAIT)
    b.elector.start()

    shown = kubectl_lease(control_plane, lease_namespace, lease_name)
    assert shown["apiVersion"] == "coordination.k8s.io/v1"
    spec = shown["spec"]
    assert spec["holderIdentity"] == "replica-a"
    assert spec["leaseDurationSeconds"] == 2
    assert spec["leaseTransitions"] == 0
    assert MICRO_TIME.match(spec["acquireTime"]), spec
    assert MICRO_TIME.match(spec["renewTime"]), spec
    wait_until(
        lambda: (
            kubectl_lease(control_plane, lease_namespace, lease_name)["spec"]["renewTime"]
            != spec["renewTime"]
        ),
        "a renewal",
    )

    t0 = time.monotonic()
    if not a.leads():
        pytest.fail("replica-a lost the lease without competition")
    if b.leads():
        pytest.fail("replica-b leads while replica-a does")
    a.elector.stop(release=False)  # kill -9: the Lease stays replica-a's until it expires
    assert not a.leads()

    assert b.elector.wait_for_leadership(WAIT)
    wait_until(lambda: bool(b.started), "replica-b's on_started_leading")
    # replica-a was leading at t0, so replica-b saw its last renewal at most RENEW earlier and
    # must then have waited a whole LEASE.
    assert b.started[0] > t0 + (LEASE - RENEW)
    spec = kubectl_lease(control_plane, lease_namespace, lease_name)["spec"]
    assert spec["holderIdentity"] == "replica-b"
    assert spec["leaseTransitions"] == 1
    assert MICRO_TIME.match(spec["acquireTime"]), spec


def test_release_hands_over_at_once_and_the_api_server_checks_leases(
    control_plane: ControlPlane,
    candidate: Callable[..., Candidate],
    kube_store: KubeStore,
    lease_namespace: str,
    lease_name: str,
) -> None:
    """With a 60 s lease, a takeover within the wait can only come from the release."""
    a = candidate("replica-a", lease_duration=60.0, renew_deadline=40.0)
    b = candidate("replica-b", lease_duration=60.0, renew_deadline=40.0)
    a.elector.start()
    assert a.elector.wait_for_leadership(WAIT)
    b.elector.start()
    assert not b.elector.wait_for_leadership(5 * RETRY)

    a.elector.stop()
    assert a.stopped
    assert b.elector.wait_for_leadership(WAIT)
    spec = kubectl_lease(control_plane, lease_namespace, lease_name)["spec"]
    assert spec["holderIdentity"] == "replica-b"
    assert spec["leaseDurationSeconds"] == 60
    assert spec["leaseTransitions"] == 1

    # The API server does validate Leases: what the elector writes passes where this does not.
    bad = Lease(
        ObjectMeta(name=f"{lease_name}-bad", namespace=lease_namespace),
        {"spec": {"holderIdentity": "x", "leaseDurationSeconds": 0, "leaseTransitions": -1}},
    )
    with pytest.raises(Invalid, match="leaseDurationSeconds"):
        kube_store.create(bad)
