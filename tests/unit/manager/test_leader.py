"""Leader election over the embedded SQLite store.

Durations are short (lease 1 s, renew deadline 0.6 s, retry 0.1 s) so the suite is quick, and no
assertion depends on the machine being fast: waits poll with generous timeouts, and the bounds
that are asserted follow from the election's own guarantees (e.g. a takeover cannot come sooner
than ``lease_duration - renew_deadline`` after the old leader was seen leading), never from how
quickly something usually happens.
"""

from __future__ import annotations

import datetime
import logging
import re
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from hybridnet.api.builtin import Lease
from hybridnet.manager.leader import LeaderElector
from hybridnet.store.errors import Unavailable
from hybridnet.store.interface import ListResult, R, Store, WatchEvent
from hybridnet.store.sqlite import SQLiteStore

NAMESPACE = "kube-system"
NAME = "hybridnet-manager"
LEASE = 1.0
RENEW = 0.6
RETRY = 0.1
WAIT = 20.0
"""Generous timeout for anything that should happen within a second or two."""
SNAPSHOT_SLACK = 0.1
"""A sample of several electors' is_leader counts only if taken within this time: a handover
that does not go through a release leaves a gap of at least LEASE - RENEW (0.4 s) with no
leader, so a quick sample cannot see the old and the new leader at once by accident."""
MICRO_TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$")


def wait_until(condition: Callable[[], bool], what: str, timeout: float = WAIT) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.01)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def parse_micro_time(text: str) -> float:
    assert MICRO_TIME.match(text), text
    moment = datetime.datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ")
    return moment.replace(tzinfo=datetime.UTC).timestamp()


def log_fields(record: logging.LogRecord) -> dict[str, Any]:
    """The fields a record carries (``extra=fields(...)``, see hybridnet/logs.py)."""
    values: dict[str, Any] = record.__dict__["hybridnet_fields"]
    return values


class FlakyStore(Store):
    """A stand-in for a store that becomes unreachable (API server down, network partition):
    it forwards every call to a real store, except that while :attr:`broken` is set each call
    raises :class:`Unavailable` instead."""

    def __init__(self, inner: Store) -> None:
        self.inner = inner
        self.broken = threading.Event()
        self.failures = 0

    def _check(self) -> None:
        if self.broken.is_set():
            self.failures += 1
            raise Unavailable("stand-in store: unreachable on purpose")

    def get(self, kind: type[R], name: str, namespace: str | None = None) -> R:
        self._check()
        return self.inner.get(kind, name, namespace)

    def list(
        self, kind: type[R], namespace: str | None = None, label_selector: str | None = None
    ) -> ListResult[R]:
        self._check()
        return self.inner.list(kind, namespace, label_selector)

    def create(self, obj: R) -> R:
        self._check()
        return self.inner.create(obj)

    def update(self, obj: R) -> R:
        self._check()
        return self.inner.update(obj)

    def update_status(self, obj: R) -> R:
        self._check()
        return self.inner.update_status(obj)

    def delete(
        self,
        kind: type[R],
        name: str,
        namespace: str | None = None,
        resource_version: str | None = None,
        grace_period_seconds: int | None = None,
    ) -> None:
        self._check()
        self.inner.delete(kind, name, namespace, resource_version, grace_period_seconds)

    def watch(
        self,
        kind: type[R],
        resource_version: str,
        namespace: str | None = None,
        label_selector: str | None = None,
        timeout_seconds: float | None = None,
    ) -> Iterator[WatchEvent[R]]:
        self._check()
        return self.inner.watch(kind, resource_version, namespace, label_selector, timeout_seconds)

    def close(self) -> None:
        self.inner.close()


class Candidate:
    """One replica: an elector and a record of its callbacks (monotonic times)."""

    def __init__(self, store: Store, identity: str, **options: Any) -> None:
        self.store = store
        self.identity = identity
        self.started: list[float] = []
        self.stopped: list[float] = []
        self.leader_when_stopped: list[bool] = []
        durations: dict[str, Any] = {
            "lease_duration": LEASE,
            "renew_deadline": RENEW,
            "retry_period": RETRY,
        }
        self.elector = LeaderElector(
            store,
            namespace=NAMESPACE,
            name=NAME,
            identity=identity,
            on_started_leading=self._on_started,
            on_stopped_leading=self._on_stopped,
            **{**durations, **options},
        )

    def _on_started(self) -> None:
        self.started.append(time.monotonic())

    def _on_stopped(self) -> None:
        self.leader_when_stopped.append(self.elector.is_leader)
        self.stopped.append(time.monotonic())

    def leads(self) -> bool:
        """``elector.is_leader`` (a call, so type checkers do not pin its value)."""
        return self.elector.is_leader


CandidateFactory = Callable[..., Candidate]


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "s.db"


@pytest.fixture
def store(db: Path) -> Iterator[SQLiteStore]:
    """The test's own view of the store (each candidate has its own, like a process)."""
    own = SQLiteStore(db, poll_interval=0.01)
    yield own
    own.close()


@pytest.fixture
def candidate(db: Path) -> Iterator[CandidateFactory]:
    """Make candidates, each with its own SQLiteStore on the shared file (optionally behind a
    FlakyStore); all are stopped and their stores closed when the test ends."""
    made: list[Candidate] = []
    stores: list[Store] = []

    def make(identity: str, *, flaky: bool = False, **options: Any) -> Candidate:
        inner = SQLiteStore(db, poll_interval=0.01)
        stores.append(inner)
        own: Store = FlakyStore(inner) if flaky else inner
        made.append(Candidate(own, identity, **options))
        return made[-1]

    yield make
    for each in made:
        each.elector.stop(release=False)
    for each_store in stores:
        each_store.close()


def lease_spec(store: Store) -> dict[str, Any]:
    spec: dict[str, Any] = store.get(Lease, NAME, NAMESPACE).body["spec"]
    return spec


def leaders(candidates: list[Candidate]) -> list[str] | None:
    """Who leads now; None when the sample took too long to count (see SNAPSHOT_SLACK)."""
    began = time.monotonic()
    names = [c.identity for c in candidates if c.leads()]
    return names if time.monotonic() - began < SNAPSHOT_SLACK else None


def the_leader(candidates: list[Candidate]) -> Candidate | None:
    current = [c for c in candidates if c.leads()]
    return current[0] if len(current) == 1 else None


# --------------------------------------------------------------------------- the Lease


def test_a_lone_candidate_creates_a_valid_lease_and_renews_it(
    candidate: CandidateFactory, store: SQLiteStore
) -> None:
    a = candidate("a")
    assert a.elector.start() is a.elector
    assert a.elector.wait_for_leadership(WAIT)
    wait_until(lambda: bool(a.started), "on_started_leading")  # runs just after the flag

    lease = store.get(Lease, NAME, NAMESPACE)
    assert lease.metadata.name == NAME
    assert lease.metadata.namespace == NAMESPACE
    spec = lease.body["spec"]
    assert spec["holderIdentity"] == "a"
    assert type(spec["leaseDurationSeconds"]) is int
    assert spec["leaseDurationSeconds"] == 1
    assert spec["leaseTransitions"] == 0
    acquired = parse_micro_time(spec["acquireTime"])
    renewed = parse_micro_time(spec["renewTime"])
    assert renewed >= acquired
    assert abs(acquired - time.time()) < 3600  # written from the wall clock

    wait_until(lambda: lease_spec(store)["renewTime"] != spec["renewTime"], "a renewal")
    later = lease_spec(store)
    assert later["holderIdentity"] == "a"
    assert later["acquireTime"] == spec["acquireTime"]
    assert parse_micro_time(later["renewTime"]) > renewed
    assert later["leaseTransitions"] == 0


def test_timestamps_come_from_the_clock_but_skew_does_not_decide_expiry(
    candidate: CandidateFactory, store: SQLiteStore, caplog: pytest.LogCaptureFixture
) -> None:
    """``a``'s clock is an hour slow, ``b``'s an hour fast: judged by timestamps, ``b`` would
    see ``a``'s lease as expired long ago. Judged by local observation, it waits."""
    caplog.set_level(logging.INFO, logger="hybridnet.manager.leader")
    a = candidate("a", clock=lambda: time.time() - 3600)
    b = candidate("b", clock=lambda: time.time() + 3600)
    a.elector.start()
    assert a.elector.wait_for_leadership(WAIT)
    renew_time = parse_micro_time(lease_spec(store)["renewTime"])
    assert abs(renew_time - (time.time() - 3600)) < 600

    b.elector.start()
    time.sleep(3 * LEASE)  # well past a lease duration; a keeps renewing meanwhile
    # b may have taken over only if a itself gave up first (renew deadline on a slow machine),
    # never because a's timestamps looked old to b.
    lost_to_others = [
        r
        for r in caplog.records
        if r.getMessage() == "lost leadership"
        and log_fields(r)["identity"] == "a"
        and "held by" in log_fields(r)["reason"]
    ]
    assert not lost_to_others
    if not a.stopped:
        assert a.leads()
        assert not b.started

    t0 = time.monotonic()
    if a.leads():  # (always, unless this machine stalled a past its renew deadline)
        a.elector.stop(release=False)
        assert b.elector.wait_for_leadership(WAIT)
        wait_until(lambda: bool(b.started), "b's on_started_leading")
        assert b.started[0] > t0 + (LEASE - RENEW)  # after expiry, not an hour later either
        assert parse_micro_time(lease_spec(store)["renewTime"]) > time.time() + 3000


# --------------------------------------------------------------------------- one at a time


def test_exactly_one_of_three_leads_at_a_time(candidate: CandidateFactory) -> None:
    trio = [candidate(name) for name in ("a", "b", "c")]
    for each in trio:
        each.elector.start()
    wait_until(lambda: any(c.leads() for c in trio), "a leader")

    samples: list[list[str]] = []
    end = time.monotonic() + 3.0
    while time.monotonic() < end:
        sample = leaders(trio)
        if sample is not None:
            samples.append(sample)
        time.sleep(0.002)
    assert len(samples) > 100
    assert max(len(s) for s in samples) == 1, [s for s in samples if len(s) > 1][:5]
    assert sum(len(s) == 1 for s in samples) > len(samples) // 2
    for each in trio:
        assert not any(each.leader_when_stopped)


def test_a_stopped_leader_releases_and_another_takes_over_before_expiry(
    candidate: CandidateFactory, store: SQLiteStore
) -> None:
    """With a 60 s lease, a takeover within the wait can only come from the release."""
    options = {"lease_duration": 60.0, "renew_deadline": 40.0}
    a = candidate("a", **options)
    a.elector.start()
    assert a.elector.wait_for_leadership(WAIT)
    others = [candidate("b", **options), candidate("c", **options)]
    for each in others:
        each.elector.start()
    time.sleep(5 * RETRY)
    assert a.leads()
    assert not any(c.leads() for c in others)

    a.elector.stop()
    assert not a.leads()
    assert a.leader_when_stopped == [False]
    assert lease_spec(store)["holderIdentity"] != "a"

    wait_until(lambda: the_leader(others) is not None, "b or c to take over", timeout=30.0)
    new = the_leader(others)
    assert new is not None
    spec = lease_spec(store)
    assert spec["holderIdentity"] == new.identity
    assert spec["leaseTransitions"] == 1
    assert spec["leaseDurationSeconds"] == 60

    follower = next(c for c in others if c is not new)
    follower.elector.stop()
    follower.elector.stop()  # twice is harmless
    assert not follower.stopped  # it never led: no callback, nothing released
    assert lease_spec(store)["holderIdentity"] == new.identity
    assert new.leads()


def test_an_abandoned_lease_is_taken_only_after_it_expires(
    candidate: CandidateFactory, store: SQLiteStore
) -> None:
    """``stop(release=False)`` models kill -9: the Lease stays ``a``'s until it expires."""
    a = candidate("a", lease_duration=2.0, renew_deadline=1.0)
    b = candidate("b", lease_duration=2.0, renew_deadline=1.0)
    a.elector.start()
    assert a.elector.wait_for_leadership(WAIT)
    b.elector.start()

    t0 = time.monotonic()
    if not a.leads():
        pytest.fail("a lost leadership without any competition")
    a.elector.stop(release=False)
    assert not a.leads()
    assert a.leader_when_stopped == [False]
    assert lease_spec(store)["holderIdentity"] in {"a", "b"}  # not released

    assert b.elector.wait_for_leadership(WAIT)
    # a was leading at t0, so its last renewal was at most renew_deadline earlier; b must see
    # that renewal unchanged for a whole lease duration before it may take over.
    wait_until(lambda: bool(b.started), "b's on_started_leading")
    assert b.started[0] > t0 + (2.0 - 1.0)
    spec = lease_spec(store)
    assert spec["holderIdentity"] == "b"
    assert spec["leaseTransitions"] == 1
    assert spec["leaseDurationSeconds"] == 2


# --------------------------------------------------------------------------- failures


def test_a_leader_whose_store_fails_steps_down_within_the_renew_deadline(
    candidate: CandidateFactory, store: SQLiteStore
) -> None:
    a = candidate("a", flaky=True)
    b = candidate("b")
    a.elector.start()
    assert a.elector.wait_for_leadership(WAIT)
    b.elector.start()
    flaky = a.store
    assert isinstance(flaky, FlakyStore)

    flaky.broken.set()
    broken_at = time.monotonic()
    # Its last successful renewal began before the store broke, so by broken_at + RENEW it no
    # longer acts as leader, however slow this machine is.
    time.sleep(max(0.0, broken_at + RENEW - time.monotonic()) + 0.01)
    assert not a.leads()
    wait_until(lambda: bool(a.stopped), "a's on_stopped_leading")
    assert a.leader_when_stopped == [False]
    assert flaky.failures > 0

    assert b.elector.wait_for_leadership(WAIT)
    spec = lease_spec(store)
    assert spec["holderIdentity"] == "b"
    assert spec["leaseTransitions"] == 1

    flaky.broken.clear()  # a comes back and stays a follower
    samples = []
    end = time.monotonic() + 1.5
    while time.monotonic() < end:
        sample = leaders([a, b])
        if sample is not None:
            samples.append(sample)
        time.sleep(0.005)
    assert samples
    assert max(len(s) for s in samples) <= 1
    if not b.stopped:  # b kept the lease (unless this machine stalled it past its deadline)
        assert len(a.started) == 1


def test_lease_transitions_count_changes_of_holder_only(
    candidate: CandidateFactory, store: SQLiteStore
) -> None:
    a = candidate("a")
    a.elector.start()
    assert a.elector.wait_for_leadership(WAIT)
    assert lease_spec(store)["leaseTransitions"] == 0

    b = candidate("b")
    b.elector.start()
    a.elector.stop()  # released: b takes it
    assert b.elector.wait_for_leadership(WAIT)
    assert lease_spec(store)["leaseTransitions"] == 1

    c = candidate("c", flaky=True)
    c.elector.start()
    b.elector.stop(release=False)  # abandoned: c takes it after expiry
    assert c.elector.wait_for_leadership(WAIT)
    spec = lease_spec(store)
    assert (spec["holderIdentity"], spec["leaseTransitions"]) == ("c", 2)

    # c loses its store, steps down, comes back and takes its own lease again: the holder did
    # not change, so neither do leaseTransitions and acquireTime.
    flaky = c.store
    assert isinstance(flaky, FlakyStore)
    flaky.broken.set()
    wait_until(lambda: bool(c.stopped), "c to step down")
    flaky.broken.clear()
    assert c.elector.wait_for_leadership(WAIT)
    wait_until(lambda: len(c.started) == 2, "c's second on_started_leading")
    later = lease_spec(store)
    assert later["holderIdentity"] == "c"
    assert later["leaseTransitions"] == 2
    assert later["acquireTime"] == spec["acquireTime"]


# --------------------------------------------------------------------------- API


def test_wait_for_leadership(candidate: CandidateFactory) -> None:
    options = {"lease_duration": 60.0, "renew_deadline": 40.0}
    a = candidate("a", **options)
    b = candidate("b", **options)
    a.elector.start()
    assert a.elector.wait_for_leadership(WAIT)
    b.elector.start()
    assert not b.elector.wait_for_leadership(0.3)
    a.elector.stop()
    assert not a.elector.wait_for_leadership(0)
    assert b.elector.wait_for_leadership(WAIT)


def test_run_in_the_callers_thread_releases_when_its_event_is_set(
    candidate: CandidateFactory, store: SQLiteStore
) -> None:
    a = candidate("a")
    stop = threading.Event()
    thread = threading.Thread(target=a.elector.run, args=(stop,))
    thread.start()
    try:
        assert a.elector.wait_for_leadership(WAIT)
        with pytest.raises(RuntimeError, match="already running"):
            a.elector.run(threading.Event())
    finally:
        stop.set()
        thread.join(WAIT)
    assert not thread.is_alive()
    assert a.leader_when_stopped == [False]
    spec = lease_spec(store)
    assert spec["holderIdentity"] == ""
    assert spec["leaseDurationSeconds"] == 1
    assert MICRO_TIME.match(spec["renewTime"])


def test_a_failing_callback_is_logged_and_does_not_stop_the_election(
    db: Path, caplog: pytest.LogCaptureFixture
) -> None:
    def explode() -> None:
        raise RuntimeError("boom")

    own = SQLiteStore(db, poll_interval=0.01)
    elector = LeaderElector(
        own,
        namespace=NAMESPACE,
        name=NAME,
        identity="a",
        lease_duration=LEASE,
        renew_deadline=RENEW,
        retry_period=RETRY,
        on_started_leading=explode,
    )
    try:
        elector.start()
        assert elector.wait_for_leadership(WAIT)
        wait_until(
            lambda: any(r.getMessage() == "on_started_leading failed" for r in caplog.records),
            "the callback's failure to be logged",
        )
        first = lease_spec(own)["renewTime"]
        wait_until(lambda: lease_spec(own)["renewTime"] != first, "renewals to go on")
        assert elector.is_leader
    finally:
        elector.stop()
        own.close()


def test_transitions_are_logged_with_identity_and_lease(
    candidate: CandidateFactory, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="hybridnet.manager.leader")
    a = candidate("a", flaky=True)
    a.elector.start()
    assert a.elector.wait_for_leadership(WAIT)
    flaky = a.store
    assert isinstance(flaky, FlakyStore)
    flaky.broken.set()
    wait_until(lambda: bool(a.stopped), "a to step down")
    flaky.broken.clear()
    assert a.elector.wait_for_leadership(WAIT)
    a.elector.stop()

    ours = [r for r in caplog.records if r.name == "hybridnet.manager.leader"]
    messages = [r.getMessage() for r in ours]
    for expected in ("acquired leadership", "lost leadership", "released the lease"):
        assert expected in messages, messages
    for record in ours:
        if record.levelno >= logging.INFO:
            assert log_fields(record)["identity"] == "a"
            assert log_fields(record)["lease"] == f"{NAMESPACE}/{NAME}"
    lost = next(r for r in ours if r.getMessage() == "lost leadership")
    assert lost.levelno == logging.WARNING
    assert "renew_deadline" in log_fields(lost)["reason"]


@pytest.mark.parametrize(
    ("options", "complaint"),
    [
        ({"lease_duration": 10.0, "renew_deadline": 10.0}, "lease_duration"),
        ({"renew_deadline": 2.0, "retry_period": 2.0}, "renew_deadline"),
        ({"retry_period": 0.0}, "retry_period"),
        ({"identity": ""}, "identity"),
        ({"name": ""}, "name"),
    ],
)
def test_parameters_are_checked(
    store: SQLiteStore, options: dict[str, Any], complaint: str
) -> None:
    arguments: dict[str, Any] = {"namespace": NAMESPACE, "name": NAME, "identity": "a", **options}
    with pytest.raises(ValueError, match=complaint):
        LeaderElector(store, **arguments)
