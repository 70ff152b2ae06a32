"""Leader election over the embedded SQLite store, on a clock the test moves by hand.

Every candidate has its own SQLiteStore on one shared file (like separate processes) and its
clock on one shared :class:`Timeline`, which moves only when the test says so. The tests drive
each candidate one attempt at a time with ``LeaderElector.step()``, so they decide exactly when
every renewal and every acquisition attempt happens, and assert unconditionally: who leads,
the very instant a standby may take over, when a leader that cannot renew stops acting. Only
the tests of the loop itself (``start``/``run``/``stop``) run a thread, still on fake time,
and they wait for positive signals (leadership, a renewal written) with generous real-time
bounds; one test runs on the system clock to show the default works.

Durations are exact binary fractions (lease 4 s, renew deadline 3 s, retry 0.5 s of fake time)
so that "exactly ``lease_duration`` later" is exact in floating point.
"""

from __future__ import annotations

import datetime
import logging
import math
import re
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from hybridnet.api.builtin import Lease
from hybridnet.manager.bgp_handover import ANNOTATION_BGP_SPEAKER, LeaseSuccessor, Successor
from hybridnet.manager.leader import (
    JITTER_FACTOR,
    RELEASED_LEASE_DURATION_SECONDS,
    LeaderElector,
    format_micro_time,
)
from hybridnet.store.errors import Forbidden, StoreError, Unavailable
from hybridnet.store.interface import R
from hybridnet.store.sqlite import SQLiteStore

NAMESPACE = "kube-system"
NAME = "hybridnet-manager"
LEASE = 4.0
RENEW = 3.0
RETRY = 0.5
WAIT = 30.0
"""Real seconds to wait for what a thread should do at once (only the loop tests use it)."""
EPOCH = 1_800_000_000.0
"""Wall time when the timeline starts (2027-01-15): far from now, so a timestamp the system
clock wrote would stand out."""
MICRO_TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$")


def just_before(moment: float) -> float:
    """The largest float below ``moment``: the last instant at which it has not come yet."""
    return math.nextafter(moment, -math.inf)


def wait_until(condition: Callable[[], bool], what: str) -> None:
    """Poll (real time) for something a thread does at once; WAIT bounds a hang, not speed."""
    deadline = time.monotonic() + WAIT
    while not condition():
        assert time.monotonic() < deadline, f"timed out after {WAIT} s waiting for {what}"
        time.sleep(0.01)


def parse_micro_time(text: str) -> float:
    assert MICRO_TIME.match(text), text
    moment = datetime.datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ")
    return moment.replace(tzinfo=datetime.UTC).timestamp()


def log_fields(record: logging.LogRecord) -> dict[str, Any]:
    """The fields a record carries (``extra=fields(...)``, see hybridnet/logs.py)."""
    values: dict[str, Any] = record.__dict__["hybridnet_fields"]
    return values


# --------------------------------------------------------------------------- fake time


class Timeline:
    """Monotonic time shared by the candidates of one test; it moves only by :meth:`move_to`
    and :meth:`advance`. Threads sleeping in :meth:`FakeClock.wait` wake when it passes their
    deadline (or their event is set)."""

    def __init__(self) -> None:
        self.now = 1000.0
        self._cond = threading.Condition()
        self._sleepers = 0

    def move_to(self, moment: float) -> None:
        with self._cond:
            assert moment >= self.now, "monotonic time does not go back"
            self.now = moment
            self._cond.notify_all()

    def advance(self, seconds: float) -> None:
        self.move_to(self.now + seconds)

    def clock(self, wall_offset: float = 0.0) -> FakeClock:
        return FakeClock(self, wall_offset)

    def wait_for_sleepers(self, count: int) -> None:
        """Until ``count`` threads sleep on this timeline (so moving it now wakes them)."""
        with self._cond:
            assert self._cond.wait_for(lambda: self._sleepers >= count, WAIT), "nobody sleeps"

    def sleep(self, event: threading.Event, seconds: float) -> bool:
        with self._cond:
            deadline = self.now + seconds
            self._sleepers += 1
            self._cond.notify_all()
            try:
                while not event.is_set() and self.now < deadline:
                    # Setting an Event wakes no Condition: look at it again every 10 ms.
                    self._cond.wait(0.01)
            finally:
                self._sleepers -= 1
        return event.is_set()


class FakeClock:
    """A candidate's clock on a :class:`Timeline` (the elector's Clock protocol); its wall
    time is the timeline's plus ``wall_offset`` (a machine whose clock is off)."""

    def __init__(self, timeline: Timeline, wall_offset: float) -> None:
        self.timeline = timeline
        self.wall_offset = wall_offset

    def monotonic(self) -> float:
        return self.timeline.now

    def wall(self) -> float:
        return EPOCH + self.timeline.now + self.wall_offset

    def wait(self, event: threading.Event, seconds: float) -> bool:
        return self.timeline.sleep(event, seconds)


# --------------------------------------------------------------------------- candidates


class StandInStore(SQLiteStore):
    """A stand-in for an API server that fails or answers slowly: the real SQLite store,
    except that while :attr:`broken` each call raises :attr:`error` (:class:`Unavailable`
    unless a test says otherwise), and that :attr:`while_writing` (if set) runs inside each
    create and update, before the write."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.broken = False
        self.error: type[StoreError] = Unavailable
        self.failures = 0
        self.while_writing: Callable[[], None] | None = None

    def _enter(self, writing: bool) -> None:
        if self.broken:
            self.failures += 1
            raise self.error("stand-in store: failing on purpose")
        if writing and self.while_writing is not None:
            self.while_writing()

    def get(self, kind: type[R], name: str, namespace: str | None = None) -> R:
        self._enter(writing=False)
        return super().get(kind, name, namespace)

    def create(self, obj: R) -> R:
        self._enter(writing=True)
        return super().create(obj)

    def update(self, obj: R) -> R:
        self._enter(writing=True)
        return super().update(obj)


class Candidate:
    """One replica: its store, its elector, and what its callbacks saw (fake monotonic time
    of each call; whether ``is_leader`` was already False when told to stop)."""

    def __init__(self, store: StandInStore, clock: FakeClock, identity: str, **options: Any):
        self.store = store
        self.clock = clock
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
            clock=clock,
            on_started_leading=self._on_started,
            on_stopped_leading=self._on_stopped,
            **{**durations, **options},
        )

    def _on_started(self) -> None:
        self.started.append(self.clock.monotonic())

    def _on_stopped(self) -> None:
        self.leader_when_stopped.append(self.elector.is_leader)
        self.stopped.append(self.clock.monotonic())

    def step(self) -> float:
        return self.elector.step()

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
    own = SQLiteStore(db)
    yield own
    own.close()


@pytest.fixture
def timeline() -> Timeline:
    return Timeline()


@pytest.fixture
def candidate(db: Path, timeline: Timeline) -> Iterator[CandidateFactory]:
    """Make candidates on the shared file and timeline; all are stopped (without releasing)
    and their stores closed when the test ends."""
    made: list[Candidate] = []

    def make(identity: str, *, wall_offset: float = 0.0, **options: Any) -> Candidate:
        made.append(Candidate(StandInStore(db), timeline.clock(wall_offset), identity, **options))
        return made[-1]

    yield make
    for each in made:
        each.store.broken = False
        each.elector.stop(release=False)
        each.store.close()


def lease_spec(store: SQLiteStore) -> dict[str, Any]:
    spec: dict[str, Any] = store.get(Lease, NAME, NAMESPACE).body["spec"]
    return spec


def leaders(candidates: list[Candidate]) -> list[str]:
    """Who leads now. Fake time stands still while the test looks, so this is exact."""
    return [c.identity for c in candidates if c.leads()]


def lost_records(caplog: pytest.LogCaptureFixture, identity: str) -> list[logging.LogRecord]:
    return [
        r
        for r in caplog.records
        if r.getMessage() == "lost leadership" and log_fields(r)["identity"] == identity
    ]


# --------------------------------------------------------------------------- the Lease


def test_a_lone_candidate_creates_a_valid_lease_and_renews_it(
    candidate: CandidateFactory, store: SQLiteStore, timeline: Timeline
) -> None:
    a = candidate("a")
    assert a.step() == RETRY
    assert a.leads()
    assert a.started == [timeline.now]

    lease = store.get(Lease, NAME, NAMESPACE)
    assert (lease.metadata.name, lease.metadata.namespace) == (NAME, NAMESPACE)
    spec = lease.body["spec"]
    acquired_at = format_micro_time(a.clock.wall())
    assert spec == {
        "holderIdentity": "a",
        "leaseDurationSeconds": 4,
        "acquireTime": acquired_at,
        "renewTime": acquired_at,
        "leaseTransitions": 0,
    }
    assert type(spec["leaseDurationSeconds"]) is int

    timeline.advance(RETRY)
    assert a.step() == RETRY
    later = lease_spec(store)
    assert later["renewTime"] == format_micro_time(a.clock.wall())
    assert parse_micro_time(later["renewTime"]) == pytest.approx(
        parse_micro_time(acquired_at) + RETRY
    )
    assert (later["holderIdentity"], later["acquireTime"]) == ("a", acquired_at)
    assert later["leaseTransitions"] == 0
    assert (a.started, a.stopped) == ([timeline.now - RETRY], [])


def test_a_fractional_lease_duration_is_written_rounded_up(
    candidate: CandidateFactory, store: SQLiteStore
) -> None:
    candidate("a", lease_duration=4.5).step()
    assert lease_spec(store)["leaseDurationSeconds"] == 5


def test_skewed_wall_clocks_fill_timestamps_but_do_not_decide_expiry(
    candidate: CandidateFactory, store: SQLiteStore, timeline: Timeline
) -> None:
    """``a``'s clock is an hour slow, ``b``'s an hour fast: judged by timestamps, ``b`` would
    see ``a``'s lease as expired long ago. Judged by its own observation, it waits."""
    a = candidate("a", wall_offset=-3600.0)
    b = candidate("b", wall_offset=+3600.0)
    a.step()
    assert lease_spec(store)["renewTime"] == format_micro_time(EPOCH + timeline.now - 3600)

    for _ in range(int(10 * LEASE / RETRY)):  # ten lease durations of renewals
        timeline.advance(RETRY)
        a.step()
        b.step()
        assert leaders([a, b]) == ["a"]
    assert (len(a.started), a.stopped, b.started) == (1, [], [])

    a.elector.stop(release=False)  # kill -9: the Lease stays a's
    seen_last_renewal = timeline.now  # b's last step saw a's last renewal
    timeline.move_to(just_before(seen_last_renewal + LEASE))
    b.step()
    assert not b.leads()
    timeline.move_to(seen_last_renewal + LEASE)
    b.step()
    assert b.leads()
    spec = lease_spec(store)
    assert spec["holderIdentity"] == "b"
    assert spec["renewTime"] == spec["acquireTime"] == format_micro_time(b.clock.wall())
    assert parse_micro_time(spec["renewTime"]) == pytest.approx(EPOCH + timeline.now + 3600)


# --------------------------------------------------------------------------- one at a time


def test_exactly_one_of_three_leads_while_the_leader_renews(
    candidate: CandidateFactory, store: SQLiteStore, timeline: Timeline
) -> None:
    trio = [candidate(name) for name in ("a", "b", "c")]
    for each in trio:
        each.step()
    assert leaders(trio) == ["a"]  # the first to try created the Lease

    for _ in range(40):  # 20 s of fake time, five lease durations
        timeline.advance(RETRY)
        for each in trio:
            delay = each.step()
            if each.identity == "a":
                assert delay == RETRY  # the leader renews on the dot
            else:  # followers jitter, so that candidates started together drift apart
                assert RETRY <= delay <= RETRY * (1 + JITTER_FACTOR)
            assert leaders(trio) == ["a"]
    assert lease_spec(store)["leaseTransitions"] == 0
    assert [(len(c.started), len(c.stopped)) for c in trio] == [(1, 0), (0, 0), (0, 0)]


def test_a_stopped_leader_releases_and_another_takes_over_at_once(
    candidate: CandidateFactory, store: SQLiteStore, timeline: Timeline
) -> None:
    """Fake time stands still from the release on: the takeover can only come from it."""
    a, b, c = (candidate(name) for name in ("a", "b", "c"))
    a.step()
    b.step()
    c.step()
    assert leaders([a, b, c]) == ["a"]

    a.elector.stop()
    assert not a.leads()
    assert a.leader_when_stopped == [False]  # is_leader was False before the callback ran
    released = lease_spec(store)
    assert released["holderIdentity"] == ""
    assert released["leaseDurationSeconds"] == RELEASED_LEASE_DURATION_SECONDS
    assert released["renewTime"] == format_micro_time(a.clock.wall())

    b.step()
    assert leaders([a, b, c]) == ["b"]
    spec = lease_spec(store)
    assert (spec["holderIdentity"], spec["leaseTransitions"]) == ("b", 1)
    assert spec["leaseDurationSeconds"] == 4
    c.step()
    assert leaders([a, b, c]) == ["b"]

    c.elector.stop()
    c.elector.stop()  # twice is harmless
    assert (c.started, c.stopped) == ([], [])  # it never led: no callback, nothing released
    assert lease_spec(store) == spec
    assert b.leads()


def test_an_abandoned_lease_is_taken_exactly_a_lease_duration_after_the_last_renewal_seen(
    candidate: CandidateFactory, store: SQLiteStore, timeline: Timeline
) -> None:
    """``stop(release=False)`` models kill -9. ``b`` measures expiry from the moment *it saw*
    the record change, on its own clock, not from the timestamps in the Lease."""
    a = candidate("a")
    b = candidate("b")
    a.step()
    b.step()
    timeline.advance(RETRY)
    a.step()  # the last renewal
    timeline.advance(0.25)
    b.step()  # b sees it a quarter second after it was written
    seen = timeline.now
    a.elector.stop(release=False)
    assert a.stopped == [seen] and a.leader_when_stopped == [False]
    assert lease_spec(store)["holderIdentity"] == "a"  # not released

    for moment in (seen + 1.0, seen + 2.0, seen + 3.0, just_before(seen + LEASE)):
        timeline.move_to(moment)
        b.step()
        assert not b.leads(), moment - seen
    assert lease_spec(store)["holderIdentity"] == "a"

    timeline.move_to(seen + LEASE)
    b.step()
    assert b.leads()
    assert b.started == [seen + LEASE]
    spec = lease_spec(store)
    assert (spec["holderIdentity"], spec["leaseTransitions"]) == ("b", 1)


def test_a_candidate_that_starts_late_waits_a_whole_lease_duration_from_its_first_look(
    candidate: CandidateFactory, timeline: Timeline
) -> None:
    """A newcomer cannot know when the record last changed: it counts from its first look,
    however old the Lease's timestamps are."""
    a = candidate("a")
    a.step()
    a.elector.stop(release=False)
    timeline.advance(100 * LEASE)
    b = candidate("b")
    b.step()
    first_look = timeline.now
    timeline.move_to(just_before(first_look + LEASE))
    b.step()
    assert not b.leads()
    timeline.move_to(first_look + LEASE)
    b.step()
    assert b.leads()


# --------------------------------------------------------------------------- failures


def test_a_leader_that_cannot_renew_steps_down_at_its_renew_deadline(
    candidate: CandidateFactory,
    store: SQLiteStore,
    timeline: Timeline,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="hybridnet.manager.leader")
    a = candidate("a")
    b = candidate("b")
    a.step()
    timeline.advance(RETRY)
    renewed = timeline.now
    a.step()  # the last successful renewal began at `renewed`
    b.step()
    seen = timeline.now

    a.store.broken = True  # API server unreachable from a (but not from b)
    timeline.advance(RETRY)
    assert a.step() == RETRY  # failed: try again in a retry period...
    timeline.move_to(renewed + RENEW - 0.25)
    assert a.step() == 0.25  # ...but wake up no later than the deadline
    assert a.store.failures == 2
    timeline.move_to(just_before(renewed + RENEW))
    assert a.leads() and a.stopped == []

    timeline.move_to(renewed + RENEW)
    # is_leader turned False by itself, before a's loop noticed: the work stops on time even
    # when the elector's thread is stuck.
    assert not a.leads()
    assert a.stopped == []
    assert a.step() == 0.0  # noticed: step down, and try to acquire straight away
    assert a.stopped == [renewed + RENEW]
    assert a.leader_when_stopped == [False]
    (lost,) = lost_records(caplog, "a")
    assert lost.levelno == logging.WARNING
    assert "renew_deadline" in log_fields(lost)["reason"]

    # The margin: a stopped at renewed + RENEW; b may start only at seen + LEASE, later.
    timeline.move_to(just_before(seen + LEASE))
    b.step()
    assert leaders([a, b]) == []
    timeline.move_to(seen + LEASE)
    b.step()
    assert leaders([a, b]) == ["b"]
    spec = lease_spec(store)
    assert (spec["holderIdentity"], spec["leaseTransitions"]) == ("b", 1)

    a.store.broken = False  # a comes back and stays a follower
    for _ in range(4 * int(LEASE / RETRY)):
        timeline.advance(RETRY)
        a.step()
        b.step()
        assert leaders([a, b]) == ["b"]
    assert (len(a.started), len(b.started), b.stopped) == (1, 1, [])


def test_a_renewal_that_returns_after_the_deadline_ends_leadership(
    candidate: CandidateFactory, store: SQLiteStore, timeline: Timeline
) -> None:
    """The store call itself takes longer than the renew deadline: ``is_leader`` is False
    already during the call, and the late success does not bring leadership back."""
    a = candidate("a")
    a.step()
    timeline.advance(RETRY)
    started = timeline.now
    inside: list[bool] = []

    def slow_write() -> None:
        timeline.move_to(started + RENEW)
        inside.append(a.leads())

    a.store.while_writing = slow_write
    renew_time = format_micro_time(a.clock.wall())  # taken before the call
    assert a.step() == 0.0
    assert inside == [False]
    assert not a.leads()
    assert a.stopped == [started + RENEW] and a.leader_when_stopped == [False]
    assert lease_spec(store)["renewTime"] == renew_time  # the renewal was written, too late

    a.store.while_writing = None
    a.step()  # the Lease is still a's: it re-takes it, as a new term with the callbacks
    assert a.leads()
    assert len(a.started) == 2
    assert lease_spec(store)["leaseTransitions"] == 0


def test_an_acquisition_that_returns_after_the_deadline_is_not_acted_on(
    candidate: CandidateFactory, store: SQLiteStore, timeline: Timeline
) -> None:
    a = candidate("a")
    started = timeline.now
    a.store.while_writing = lambda: timeline.move_to(started + RENEW)
    delay = a.step()
    assert RETRY <= delay <= RETRY * (1 + JITTER_FACTOR)
    assert not a.leads() and a.started == []
    assert lease_spec(store)["holderIdentity"] == "a"  # written, but too late to lead on

    a.store.while_writing = None
    assert a.step() == RETRY
    assert a.leads() and a.started == [timeline.now]
    assert lease_spec(store)["leaseTransitions"] == 0  # still a's own: no transition


def test_a_leader_steps_down_at_once_when_the_lease_is_taken_or_deleted(
    candidate: CandidateFactory, store: SQLiteStore, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="hybridnet.manager.leader")
    a = candidate("a")
    a.step()
    lease = store.get(Lease, NAME, NAMESPACE)
    lease.body["spec"]["holderIdentity"] = "intruder"
    store.update(lease)
    assert a.step() == 0.0  # fake time did not move: no deadline involved
    assert not a.leads() and len(a.stopped) == 1
    assert log_fields(lost_records(caplog, "a")[-1])["reason"] == "the lease is held by 'intruder'"

    store.delete(Lease, NAME, NAMESPACE)
    a.step()  # re-creates it
    assert a.leads()
    store.delete(Lease, NAME, NAMESPACE)
    a.step()
    assert not a.leads() and len(a.stopped) == 2
    assert log_fields(lost_records(caplog, "a")[-1])["reason"] == "the lease was deleted"


def test_lease_transitions_count_changes_of_holder_only(
    candidate: CandidateFactory, store: SQLiteStore, timeline: Timeline
) -> None:
    a = candidate("a")
    a.step()
    assert lease_spec(store)["leaseTransitions"] == 0

    b = candidate("b")
    b.step()
    a.elector.stop()  # released: b takes it at its next attempt
    b.step()
    assert lease_spec(store)["leaseTransitions"] == 1

    c = candidate("c")
    c.step()
    b.elector.stop(release=False)  # abandoned: c takes it after expiry
    timeline.advance(LEASE)
    c.step()
    assert c.leads()
    spec = lease_spec(store)
    assert (spec["holderIdentity"], spec["leaseTransitions"]) == ("c", 2)

    # c loses its store, steps down, comes back and takes its own lease again: the holder did
    # not change, so neither do leaseTransitions and acquireTime.
    c.store.broken = True
    timeline.advance(RENEW)
    c.step()
    assert not c.leads() and len(c.stopped) == 1
    c.store.broken = False
    c.step()
    assert c.leads() and len(c.started) == 2
    later = lease_spec(store)
    assert (later["holderIdentity"], later["leaseTransitions"]) == ("c", 2)
    assert later["acquireTime"] == spec["acquireTime"]


# --------------------------------------------------------------------------- the loop


def test_wait_for_leadership(candidate: CandidateFactory) -> None:
    a = candidate("a")
    b = candidate("b")
    a.step()
    b.step()
    assert not b.elector.wait_for_leadership(0)  # b looked and declined: it is a follower

    result: list[bool] = []
    waiter = threading.Thread(target=lambda: result.append(b.elector.wait_for_leadership(WAIT)))
    waiter.start()
    a.elector.stop()
    b.step()
    waiter.join(WAIT)
    assert result == [True]
    assert not a.elector.wait_for_leadership(0)


def test_the_loop_renews_on_its_clock_and_releases_on_stop(
    candidate: CandidateFactory, store: SQLiteStore, timeline: Timeline
) -> None:
    """``start`` runs :meth:`step` in a thread and sleeps on the elector's clock between
    attempts; the test moves the clock and waits for the positive signal each time."""
    a = candidate("a")
    b = candidate("b")
    assert a.elector.start() is a.elector
    with pytest.raises(RuntimeError, match="already running"):
        a.elector.start()
    assert a.elector.wait_for_leadership(WAIT)
    first = lease_spec(store)["renewTime"]
    with pytest.raises(RuntimeError, match="do not step it"):
        a.step()

    timeline.wait_for_sleepers(1)  # a sleeps a retry period of fake time...
    assert lease_spec(store)["renewTime"] == first  # ...and has not renewed: time stood still
    timeline.advance(RETRY)
    wait_until(lambda: lease_spec(store)["renewTime"] != first, "the renewal")
    assert lease_spec(store)["renewTime"] == format_micro_time(EPOCH + timeline.now)

    b.step()
    assert not b.leads()
    a.elector.stop()  # returns once the thread has released the Lease
    assert a.leader_when_stopped == [False]
    assert lease_spec(store)["holderIdentity"] == ""
    b.step()  # fake time did not move: only the release lets b in
    assert leaders([a, b]) == ["b"]
    assert lease_spec(store)["leaseTransitions"] == 1


def test_stop_without_release_leaves_the_lease_to_expire(
    candidate: CandidateFactory, store: SQLiteStore, timeline: Timeline
) -> None:
    a = candidate("a")
    a.elector.start()
    assert a.elector.wait_for_leadership(WAIT)
    held = lease_spec(store)
    a.elector.stop(release=False)
    assert not a.leads()
    assert a.leader_when_stopped == [False]
    assert lease_spec(store) == held


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
    assert spec["leaseDurationSeconds"] == RELEASED_LEASE_DURATION_SECONDS
    assert spec["renewTime"] == format_micro_time(a.clock.wall())


def test_the_system_clock_is_the_default(db: Path, store: SQLiteStore) -> None:
    """On real time: it leads, writes the system's wall time, releases on stop."""
    own = SQLiteStore(db)
    elector = LeaderElector(own, namespace=NAMESPACE, name=NAME, identity="a")
    try:
        before = datetime.datetime.now(datetime.UTC).timestamp()
        elector.start()
        assert elector.wait_for_leadership(WAIT)
        after = datetime.datetime.now(datetime.UTC).timestamp()
        written = parse_micro_time(lease_spec(store)["acquireTime"])
        assert before - 1e-6 <= written <= after + 1e-6
    finally:
        elector.stop()
        own.close()
    assert lease_spec(store)["holderIdentity"] == ""


# --------------------------------------------------------------------------- callbacks, logs


def test_a_failing_callback_is_logged_and_does_not_stop_the_election(
    db: Path, store: SQLiteStore, timeline: Timeline, caplog: pytest.LogCaptureFixture
) -> None:
    def explode() -> None:
        raise RuntimeError("boom")

    own = SQLiteStore(db)
    elector = LeaderElector(
        own,
        namespace=NAMESPACE,
        name=NAME,
        identity="a",
        lease_duration=LEASE,
        renew_deadline=RENEW,
        retry_period=RETRY,
        clock=timeline.clock(),
        on_started_leading=explode,
    )
    try:
        elector.step()
        assert elector.is_leader
        (failed,) = [r for r in caplog.records if r.getMessage() == "on_started_leading failed"]
        assert failed.exc_info is not None and "boom" in str(failed.exc_info[1])
        first = lease_spec(store)["renewTime"]
        timeline.advance(RETRY)
        elector.step()
        assert lease_spec(store)["renewTime"] != first
        assert elector.is_leader
    finally:
        elector.stop()
        own.close()


def test_transitions_are_logged_with_identity_and_lease(
    candidate: CandidateFactory, timeline: Timeline, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="hybridnet.manager.leader")
    b = candidate("b")
    b.step()
    b.elector.stop(release=False)
    a = candidate("a")
    a.step()
    timeline.advance(LEASE)
    a.step()  # took over b's expired lease
    a.store.broken = True
    timeline.advance(RENEW)
    a.step()  # lost it
    a.store.broken = False
    a.step()
    a.elector.stop()

    ours = [
        r
        for r in caplog.records
        if r.name == "hybridnet.manager.leader" and log_fields(r)["identity"] == "a"
    ]
    assert [r.getMessage() for r in ours] == [
        "took over an expired lease",
        "acquired leadership",
        "lost leadership",
        "acquired leadership",
        "stopped leading",
        "released the lease",
    ]
    for record in ours:
        assert log_fields(record)["lease"] == f"{NAMESPACE}/{NAME}"
    assert log_fields(ours[0])["previous_holder"] == "b"
    assert ours[2].levelno == logging.WARNING


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


def test_a_lease_the_replica_may_not_touch_is_a_warning_once_and_an_outage_is_not(
    candidate: CandidateFactory, caplog: pytest.LogCaptureFixture
) -> None:
    """Forbidden (RBAC) would keep this replica a standby forever: say so, but not on every
    retry; an unreachable API server is routine and stays at debug level."""
    caplog.set_level(logging.DEBUG, logger="hybridnet.manager.leader")
    a = candidate("a")
    a.store.broken = True
    a.store.error = Forbidden
    a.step()
    a.step()
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert [r.getMessage() for r in warnings] == ["could not acquire the lease"]
    assert log_fields(warnings[0])["error"].startswith("Forbidden: ")
    a.store.error = Unavailable
    a.step()
    assert [r for r in caplog.records if r.levelno == logging.WARNING] == warnings
    assert caplog.records[-1].levelno == logging.DEBUG
    assert not a.leads()


# --------------------------------------------------------------------------- annotations


def test_the_holders_annotations_ride_on_its_next_renewal_and_tell_the_next_replica(
    candidate: CandidateFactory, store: SQLiteStore, timeline: Timeline
) -> None:
    """hybridnet's BGP handover: the holder says on the Lease that its routes are out; the
    replica before it reads that as "the successor speaks"."""
    a, b = candidate("a"), candidate("b")
    a.step()
    before = store.get(Lease, NAME, NAMESPACE)
    before.metadata.annotations["someone.else/note"] = "kept"
    store.update(before)
    a_successor = LeaseSuccessor(store, NAMESPACE, NAME, "a")
    assert a_successor() == Successor("", False)  # a holds it itself

    a.elector.annotate(ANNOTATION_BGP_SPEAKER, "a")
    assert ANNOTATION_BGP_SPEAKER not in store.get(Lease, NAME, NAMESPACE).metadata.annotations
    timeline.advance(RETRY)
    a.step()
    lease = store.get(Lease, NAME, NAMESPACE)
    assert lease.metadata.annotations == {"someone.else/note": "kept", ANNOTATION_BGP_SPEAKER: "a"}

    a.elector.stop()
    b.step()
    assert a_successor() == Successor("b", False)  # b holds it; the note names a, not b
    b.elector.annotate(ANNOTATION_BGP_SPEAKER, "b")
    timeline.advance(RETRY)
    b.step()
    assert a_successor() == Successor("b", True)
