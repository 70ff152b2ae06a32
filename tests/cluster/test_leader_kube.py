"""Leader election against the real API server: the Lease passes its validation, kubectl shows
the holder, and an abandoned Lease passes to the other candidate once it expires.

Real time here, so nothing is asserted about speed: every wait is for a positive signal (a
callback, the holder kubectl shows, an attempt that returned) and its bound, WAIT, only stops a
hang. The one assertion that involves durations follows from the election's guarantee: a
standby takes over no earlier than ``lease_duration`` after the leader took the timestamp of
its last renewal (it must see that renewal, which comes later, unchanged for that long).
"""

from __future__ import annotations

import json
import re
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from hack.controlplane import ControlPlane
from hybridnet.api.builtin import Lease, Namespace
from hybridnet.api.meta import ObjectMeta
from hybridnet.manager.leader import LeaderElector, SystemClock, format_micro_time
from hybridnet.store.errors import Invalid
from hybridnet.store.kube import KubeStore

LEASE = 8.0
RENEW = 6.0
RETRY = 0.5
"""A leader renews every half second and has six seconds for a renewal (a GET and a PUT to
the API server on loopback) to succeed before it must stop. That API server answers in
milliseconds even while the session's other cluster tests load it, so six seconds is a wide
margin: a leader that loses its lease here without competition is a fault, not a slow
machine. (kube-controller-manager's defaults are 15/10/2 s; these keep the expiry test short.)"""
WAIT = 60.0
"""Bound for what should take at most LEASE plus a few retry periods: only stops a hang."""
MICRO_TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$")


def wait_until(condition: Callable[[], bool], what: str, timeout: float = WAIT) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.02)


class RecordingClock(SystemClock):
    """The system clock, noting the monotonic time at which each Lease timestamp was taken."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._stamps: list[tuple[float, str]] = []

    def wall(self) -> float:
        now = super().wall()
        with self._lock:
            self._stamps.append((self.monotonic(), format_micro_time(now)))
        return now

    def taken_at(self, micro_time: str) -> float:
        """When this clock produced ``micro_time`` (the earliest time, should two calls have
        fallen into one microsecond)."""
        with self._lock:
            moments = [moment for moment, text in self._stamps if text == micro_time]
        assert moments, f"{micro_time} was not written by this candidate"
        return min(moments)


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
    """One replica with its own connection to the API server, its clock, and the (monotonic)
    times its callbacks were called."""

    def __init__(
        self, plane: ControlPlane, namespace: str, name: str, identity: str, **options: Any
    ):
        self.store = KubeStore.from_kubeconfig(plane.kubeconfig_path)
        self.clock = RecordingClock()
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
            clock=self.clock,
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
    wait_until(lambda: bool(a.started), "replica-a's on_started_leading")

    shown = kubectl_lease(control_plane, lease_namespace, lease_name)
    assert shown["apiVersion"] == "coordination.k8s.io/v1"
    spec = shown["spec"]
    assert spec["holderIdentity"] == "replica-a"
    assert spec["leaseDurationSeconds"] == 8
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

    b.elector.step()  # one attempt, returned: b has read the Lease and declined
    assert not b.leads()
    b.elector.start()

    a.elector.stop(release=False)  # kill -9: the Lease stays replica-a's until it expires
    assert not a.leads()
    # replica-a led without a break until now (RETRY and RENEW above say why it must).
    assert (len(a.started), len(a.stopped)) == (1, 1)
    last = kubectl_lease(control_plane, lease_namespace, lease_name)["spec"]
    assert last["holderIdentity"] == "replica-a"
    last_renewal = a.clock.taken_at(last["renewTime"])

    wait_until(lambda: bool(b.started), "replica-b's on_started_leading")
    assert b.leads()
    # b saw that renewal only after replica-a took its timestamp, then waited a whole LEASE.
    assert b.started[0] >= last_renewal + LEASE
    spec = kubectl_lease(control_plane, lease_namespace, lease_name)["spec"]
    assert spec["holderIdentity"] == "replica-b"
    assert spec["leaseTransitions"] == 1
    assert MICRO_TIME.match(spec["acquireTime"]), spec
    assert (len(b.started), b.stopped) == (1, [])


def test_release_hands_over_at_once_and_the_api_server_checks_leases(
    control_plane: ControlPlane,
    candidate: Callable[..., Candidate],
    kube_store: KubeStore,
    lease_namespace: str,
    lease_name: str,
) -> None:
    """replica-b is driven one attempt at a time. With a 60 s lease that it first saw moments
    ago, its takeover right after the release can only come from the release."""
    a = candidate("replica-a", lease_duration=60.0, renew_deadline=40.0)
    b = candidate("replica-b", lease_duration=60.0, renew_deadline=40.0)
    a.elector.start()
    wait_until(lambda: bool(a.started), "replica-a's on_started_leading")
    b.elector.step()
    assert not b.leads()  # the attempt returned: it saw replica-a's lease and declined

    a.elector.stop()
    assert len(a.stopped) == 1 and not a.leads()
    released = kubectl_lease(control_plane, lease_namespace, lease_name)["spec"]
    assert (released["holderIdentity"], released["leaseDurationSeconds"]) == ("", 1)
    b.elector.step()
    assert b.leads()
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
