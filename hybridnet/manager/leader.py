"""Leader election over a ``coordination.k8s.io/v1`` Lease, through the project's Store.

Several manager replicas run; one of them, the leader, does the work. The leader is whoever
holds the Lease: a candidate takes it by creating it, or by updating it (optimistic concurrency
on ``resourceVersion``) once it is free or expired; the leader keeps it by updating
``spec.renewTime`` every ``retry_period``. The semantics follow client-go's leaderelection
package, so a Go and a Python candidate could even share one Lease:

* **Expiry is judged by local observation, not by the timestamps in the Lease.** A candidate
  notes, on its own monotonic clock, when it last saw the record (the Lease's ``spec``) change;
  the holder is considered gone once the record has stayed unchanged for the record's own
  ``leaseDurationSeconds``. Candidates never compare their clock with the leader's, so clock
  *offsets* between machines do not matter; only clock *rates* must roughly agree.
* **The leader stops before anyone can start.** It acts as leader only until
  ``renew_deadline`` after the start of its last successful renewal (:attr:`is_leader` turns
  False on its own at that moment, even while a store call hangs). A candidate can take over
  no earlier than ``lease_duration`` after it saw that renewal, which is later, because
  ``renew_deadline < lease_duration``. The difference is the safety margin.
* A leader that sees the Lease held by someone else, or deleted, steps down at once.
* :meth:`annotate` lets the holder tell the other replicas something on the Lease (written with
  its next renewal; hybridnet says there which replica's BGP routes are out).
* :meth:`stop` releases the Lease (holder cleared, like client-go's ``ReleaseOnCancel``) so that
  another candidate takes over at its next attempt instead of waiting for expiry.

All time comes from a :class:`Clock`: timestamps written to the Lease (``acquireTime``,
``renewTime``) from its wall time (as the API's MicroTime: ``2026-11-25T19:46:02.123456Z``),
intervals (expiry, renew deadline) from its monotonic time, which a wall-clock step cannot move,
and the pause between attempts from its ``wait``. The default is the system's; tests pass a clock
they move by hand and drive the election one attempt at a time with :meth:`LeaderElector.step`.

Callbacks run on the elector's thread and must return quickly (start long-running work in a
thread of your own): while a callback runs, the Lease is not renewed. ``on_stopped_leading`` is
called after :attr:`is_leader` has turned False, and when stopping, before the Lease is
released, so the component has finished its leader work when another replica may start.
"""

from __future__ import annotations

import copy
import dataclasses
import datetime
import logging
import math
import random
import threading
import time
from collections.abc import Callable
from typing import Any, Protocol

from hybridnet.api.builtin import Lease
from hybridnet.api.meta import ObjectMeta
from hybridnet.logs import fields
from hybridnet.store.errors import AlreadyExists, Conflict, NotFound, StoreError, Unavailable
from hybridnet.store.interface import Store

log = logging.getLogger(__name__)

JITTER_FACTOR = 1.2
"""Candidates wait ``retry_period`` times a random factor in [1, 1 + JITTER_FACTOR] between
attempts (as client-go does), so that candidates started together do not stay in lock step."""

RELEASED_LEASE_DURATION_SECONDS = 1
"""``leaseDurationSeconds`` written when releasing, as client-go does: even a candidate that
looked only at durations would see the released Lease expire at once."""


class Clock(Protocol):
    """The elector's sense of time. Monotonic time judges expiry and the renew deadline; wall
    time only fills the Lease's timestamps; ``wait`` paces the loop and must return early (True)
    once ``event`` is set."""

    def monotonic(self) -> float: ...

    def wall(self) -> float: ...

    def wait(self, event: threading.Event, seconds: float) -> bool: ...


class SystemClock:
    """The real clocks: :func:`time.monotonic`, :func:`time.time` and ``Event.wait``."""

    def monotonic(self) -> float:
        return time.monotonic()

    def wall(self) -> float:
        return time.time()

    def wait(self, event: threading.Event, seconds: float) -> bool:
        return event.wait(seconds)


SYSTEM_CLOCK = SystemClock()


def format_micro_time(timestamp: float) -> str:
    """A Unix time as the API's MicroTime: RFC 3339, UTC, always six fractional digits."""
    moment = datetime.datetime.fromtimestamp(timestamp, datetime.UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class LeaderElector:
    """Elect one leader among the candidates that share the Lease ``namespace``/``name``.

    ``identity`` must be unique per candidate (the pod name, say). The defaults are those of
    kube-controller-manager and kube-scheduler (``--leader-elect-lease-duration=15s``,
    ``--leader-elect-renew-deadline=10s``, ``--leader-elect-retry-period=2s``), for these
    reasons:

    ``lease_duration`` = 15 s
        How long a candidate waits, after it last saw the record change, before it takes the
        Lease from a silent holder. It bounds the failover time after a leader dies without
        releasing (kill -9, node loss): about 15 s plus one retry. Written to the Lease as
        ``leaseDurationSeconds`` (whole seconds, rounded up; other candidates judge by that).
    ``renew_deadline`` = 10 s
        How long the leader goes on acting without a successful renewal. Long enough to ride
        out an API-server restart or an etcd leader change (several retries fit in it); the
        5 s by which it is shorter than ``lease_duration`` is the margin that keeps two leaders
        from overlapping despite scheduling delays and slightly different clock rates.
    ``retry_period`` = 2 s
        How often the leader renews and candidates try to acquire. Small enough that about
        five renewals fit into ``renew_deadline`` (one failed request costs nothing), large
        enough that each candidate costs the API server only about one request per second
        (a GET and, for the leader, a PUT every 2 s).

    ``clock`` gives the time (see :class:`Clock`); its wall time is written into
    ``acquireTime`` and ``renewTime`` and never used to judge expiry (see the module
    docstring), so candidates with skewed clocks agree.
    """

    def __init__(
        self,
        store: Store,
        *,
        namespace: str,
        name: str,
        identity: str,
        lease_duration: float = 15.0,
        renew_deadline: float = 10.0,
        retry_period: float = 2.0,
        clock: Clock = SYSTEM_CLOCK,
        on_started_leading: Callable[[], None] | None = None,
        on_stopped_leading: Callable[[], None] | None = None,
    ) -> None:
        if not namespace or not name:
            raise ValueError("the Lease needs a namespace and a name")
        if not identity:
            raise ValueError("identity must not be empty")
        if retry_period <= 0:
            raise ValueError(f"retry_period must be positive, not {retry_period}")
        if renew_deadline <= JITTER_FACTOR * retry_period:
            raise ValueError(
                f"renew_deadline ({renew_deadline}) must be longer than "
                f"{JITTER_FACTOR} x retry_period ({retry_period}): renewals must fit in it"
            )
        if lease_duration <= renew_deadline:
            raise ValueError(
                f"lease_duration ({lease_duration}) must be longer than renew_deadline "
                f"({renew_deadline}): the leader must stop before others may start"
            )
        self._store = store
        self.namespace = namespace
        self.name = name
        self.identity = identity
        self.lease_duration = lease_duration
        self.renew_deadline = renew_deadline
        self.retry_period = retry_period
        self._clock = clock
        self._on_started_leading = on_started_leading
        self._on_stopped_leading = on_stopped_leading
        self._lease_duration_seconds = max(1, math.ceil(lease_duration))

        self._cond = threading.Condition(threading.Lock())
        # Guarded by _cond:
        self._leading = False
        self._valid_until = 0.0  # monotonic time until which the leader may act
        self._running = False
        self._stop_event: threading.Event | None = None
        self._release_on_stop = True
        self._thread: threading.Thread | None = None
        self._runner: threading.Thread | None = None  # the thread inside run()
        # Used only by the caller of step() (run() or a test driving the election):
        self._observed_record: dict[str, Any] | None = None
        self._observed_time = 0.0  # monotonic time the record was last seen to change
        self._observed_lease: Lease | None = None
        self._last_warning = ""  # the last store error logged as a warning (see _log_store_error)
        self._annotations: dict[str, str] = {}  # guarded by _cond; see annotate()

    # ----------------------------------------------------------------- public

    @property
    def lease_name(self) -> str:
        return f"{self.namespace}/{self.name}"

    @property
    def is_leader(self) -> bool:
        """Whether this candidate may act as leader now (thread-safe). Turns False by itself
        once ``renew_deadline`` has passed since the last successful renewal began, even if
        the elector's thread is stuck in a store call."""
        with self._cond:
            return self._leading_now()

    def annotate(self, key: str, value: str) -> None:
        """Have ``key: value`` among the Lease's annotations from the next acquisition or
        renewal on (within ``retry_period`` while leading). Other annotations are kept."""
        with self._cond:
            self._annotations[key] = value

    def _annotated(self, metadata: ObjectMeta) -> ObjectMeta:
        with self._cond:
            mine = dict(self._annotations)
        if all(metadata.annotations.get(key) == value for key, value in mine.items()):
            return metadata
        return dataclasses.replace(metadata, annotations={**metadata.annotations, **mine})

    def wait_for_leadership(self, timeout: float | None = None) -> bool:
        """Block until this candidate leads (True) or ``timeout`` real seconds pass (False)."""
        with self._cond:
            return self._cond.wait_for(self._leading_now, timeout)

    def start(self) -> LeaderElector:
        """Run the election in a daemon thread; returns self."""
        event = threading.Event()
        thread = threading.Thread(
            target=self.run, args=(event,), name=f"leader-elector-{self.name}", daemon=True
        )
        with self._cond:
            if self._running or (self._thread is not None and self._thread.is_alive()):
                raise RuntimeError(f"leader elector {self.identity} is already running")
            self._thread = thread
            self._stop_event = event
        thread.start()
        return self

    def stop(self, *, release: bool = True) -> None:
        """End the loop; if leading, step down (``on_stopped_leading``) and, with ``release``,
        release the Lease so another candidate can take it at once.

        ``release=False`` leaves the Lease as it is, held by this identity until it expires,
        as if the process had been killed (kill -9); it still calls ``on_stopped_leading``.
        After :meth:`start`, returns once the thread has finished; when the caller runs
        :meth:`run` in a thread of its own, this only signals it (join that thread to wait).
        When nothing runs (the election was driven by :meth:`step`), it steps down here.
        """
        with self._cond:
            event = self._stop_event
            thread = self._thread
            if event is not None:
                self._release_on_stop = release
        if event is None:
            self._finish(release)
            return
        event.set()
        if thread is not None and thread is not threading.current_thread():
            thread.join()

    def run(self, stop: threading.Event) -> None:
        """Acquire, renew and re-acquire until ``stop`` is set; then step down and release
        (unless :meth:`stop` said ``release=False``)."""
        with self._cond:
            if self._running:
                raise RuntimeError(f"leader elector {self.identity} is already running")
            self._running = True
            self._runner = threading.current_thread()
            self._stop_event = stop
        try:
            while not stop.is_set():
                self._clock.wait(stop, self.step())
        finally:
            with self._cond:
                release = self._release_on_stop
            try:
                self._finish(release)
            finally:
                with self._cond:
                    self._running = False
                    self._runner = None
                    self._stop_event = None
                    self._release_on_stop = True

    def step(self) -> float:
        """One attempt: renew the Lease while leading, otherwise try to acquire it. Returns
        how many seconds to wait before the next attempt.

        :meth:`run` calls it in a loop; a caller may drive the election itself instead (with
        a clock it moves, a test decides exactly when each attempt happens), but not while
        :meth:`run` is running in another thread.
        """
        with self._cond:
            if self._running and self._runner is not threading.current_thread():
                raise RuntimeError(
                    f"leader elector {self.identity} runs in its own thread: do not step it"
                )
        return self._lead_once() if self._leading_flag() else self._acquire_once()

    # ----------------------------------------------------------------- state

    def _leading_now(self) -> bool:
        """Call with ``_cond`` held."""
        return self._leading and self._clock.monotonic() < self._valid_until

    def _leading_flag(self) -> bool:
        with self._cond:
            return self._leading

    def _log_fields(self, **extra: Any) -> dict[str, Any]:
        return fields(identity=self.identity, lease=self.lease_name, **extra)

    def _transitions(self) -> int:
        record = self._observed_record or {}
        return int(record.get("leaseTransitions") or 0)

    def _become_leader(self, attempt_started: float) -> None:
        with self._cond:
            self._leading = True
            self._valid_until = attempt_started + self.renew_deadline
            self._cond.notify_all()
        log.info(
            "acquired leadership",
            extra=self._log_fields(transitions=self._transitions()),
        )
        self._call(self._on_started_leading, "on_started_leading")

    def _step_down(self, reason: str) -> bool:
        """Stop leading (is_leader False first, then the callback); True if it was leading."""
        with self._cond:
            was_leading = self._leading
            self._leading = False
            self._valid_until = 0.0
            self._cond.notify_all()
        if not was_leading:
            return False
        if reason == "stopped":
            log.info("stopped leading", extra=self._log_fields(reason=reason))
        else:
            log.warning("lost leadership", extra=self._log_fields(reason=reason))
        self._call(self._on_stopped_leading, "on_stopped_leading")
        return True

    def _finish(self, release: bool) -> None:
        """The end of the election: step down and, if asked and it was leading, release."""
        if self._step_down("stopped") and release:
            self._release()

    def _call(self, callback: Callable[[], None] | None, what: str) -> None:
        if callback is None:
            return
        try:
            callback()
        except Exception:
            log.exception(f"{what} failed", extra=self._log_fields(callback=what))

    # ----------------------------------------------------------------- the loop

    def _log_store_error(self, message: str, exc: StoreError) -> None:
        """Races and outages are routine (debug); anything else (Forbidden: RBAC; NotFound: no
        coordination.k8s.io API) keeps a replica from ever leading, so it is a warning, logged
        again only when the error changes so a standby does not repeat it every retry."""
        error = f"{type(exc).__name__}: {exc}"
        if isinstance(exc, Unavailable | Conflict | AlreadyExists):
            log.debug(message, extra=self._log_fields(error=error))
        elif error != self._last_warning:
            log.warning(message, extra=self._log_fields(error=error))
        self._last_warning = error

    def _acquire_once(self) -> float:
        """One attempt to take the Lease; returns how long to wait before the next step."""
        started = self._clock.monotonic()
        try:
            acquired = self._try_acquire()
        except StoreError as exc:
            self._log_store_error("could not acquire the lease", exc)
            acquired = False
        if acquired and self._clock.monotonic() < started + self.renew_deadline:
            self._become_leader(started)
            return self.retry_period
        # (Acquired too slowly to act on it: the next attempt re-takes the Lease, still ours.)
        return self.retry_period * (1 + random.uniform(0, JITTER_FACTOR))  # noqa: S311 (jitter)

    def _lead_once(self) -> float:
        """One renewal while leading; returns how long to wait before the next step."""
        started = self._clock.monotonic()
        with self._cond:
            valid_until = self._valid_until
        if started >= valid_until:
            self._step_down(f"not renewed within renew_deadline ({self.renew_deadline} s)")
            return 0.0
        try:
            lost = self._try_renew()
        except StoreError as exc:
            self._log_store_error("could not renew the lease", exc)
            # Try again, but wake up no later than the deadline to step down on time.
            return max(0.0, min(self.retry_period, valid_until - self._clock.monotonic()))
        if lost is not None:
            self._step_down(lost)
            return 0.0
        with self._cond:
            if self._leading_now():
                self._valid_until = started + self.renew_deadline
                return self.retry_period
        # The deadline passed while the renewal was under way: is_leader has already turned
        # False, and leadership that ended is never resumed without the callbacks.
        self._step_down(f"renewed later than renew_deadline ({self.renew_deadline} s)")
        return 0.0

    # ----------------------------------------------------------------- the Lease

    def _observe(self, lease: Lease) -> None:
        """Note the Lease; restart the expiry clock when its record changed."""
        record = lease.body.get("spec") or {}
        if record != self._observed_record:
            self._observed_record = copy.deepcopy(record)
            self._observed_time = self._clock.monotonic()
        self._observed_lease = lease

    def _observed_expired(self) -> bool:
        record = self._observed_record or {}
        try:
            duration = float(record.get("leaseDurationSeconds") or self.lease_duration)
        except (TypeError, ValueError):
            duration = self.lease_duration
        return self._clock.monotonic() >= self._observed_time + duration

    def _try_acquire(self) -> bool:
        """Create the Lease, or take it when free, expired or already ours."""
        now = format_micro_time(self._clock.wall())
        try:
            lease = self._store.get(Lease, self.name, self.namespace)
        except NotFound:
            spec = {
                "holderIdentity": self.identity,
                "leaseDurationSeconds": self._lease_duration_seconds,
                "acquireTime": now,
                "renewTime": now,
                "leaseTransitions": 0,
            }
            meta = self._annotated(ObjectMeta(name=self.name, namespace=self.namespace))
            new = Lease(meta, {"spec": spec})
            try:
                self._observe(self._store.create(new))
            except AlreadyExists:
                return False  # another candidate created it first
            return True
        self._observe(lease)
        spec = dict(lease.body.get("spec") or {})
        holder = spec.get("holderIdentity") or ""
        if holder and holder != self.identity and not self._observed_expired():
            return False
        if holder == self.identity:
            acquire_time = spec.get("acquireTime") or now
            transitions = self._transitions()
        else:
            acquire_time = now
            transitions = self._transitions() + 1
        lease.body = {
            **lease.body,
            "spec": {
                **spec,
                "holderIdentity": self.identity,
                "leaseDurationSeconds": self._lease_duration_seconds,
                "acquireTime": acquire_time,
                "renewTime": now,
                "leaseTransitions": transitions,
            },
        }
        lease.metadata = self._annotated(lease.metadata)
        try:
            self._observe(self._store.update(lease))
        except Conflict:
            return False  # someone else wrote it between our read and our write
        if holder and holder != self.identity:
            log.info(
                "took over an expired lease",
                extra=self._log_fields(previous_holder=holder),
            )
        return True

    def _try_renew(self) -> str | None:
        """Renew the Lease; None when renewed, the reason when it is no longer ours.

        Store errors (Unavailable, a Conflict with a concurrent writer, ...) propagate: the
        caller retries until the renew deadline.
        """
        try:
            lease = self._store.get(Lease, self.name, self.namespace)
        except NotFound:
            return "the lease was deleted"
        self._observe(lease)
        spec = dict(lease.body.get("spec") or {})
        holder = spec.get("holderIdentity") or ""
        if holder != self.identity:
            return f"the lease is held by {holder!r}" if holder else "the lease was released"
        lease.body = {
            **lease.body,
            "spec": {
                **spec,
                "leaseDurationSeconds": self._lease_duration_seconds,
                "renewTime": format_micro_time(self._clock.wall()),
            },
        }
        lease.metadata = self._annotated(lease.metadata)
        self._observe(self._store.update(lease))
        return None

    def _release(self) -> None:
        """Clear the holder of the Lease as last written by us, so others take it at once.

        The update names the version we wrote last: if anyone changed the Lease since, the
        store refuses (Conflict) and the Lease is left alone.
        """
        lease = self._observed_lease
        spec = dict((lease.body.get("spec") or {}) if lease is not None else {})
        if lease is None or spec.get("holderIdentity") != self.identity:
            return
        now = format_micro_time(self._clock.wall())
        lease.body = {
            **lease.body,
            "spec": {
                **spec,
                "holderIdentity": "",
                "leaseDurationSeconds": RELEASED_LEASE_DURATION_SECONDS,
                "acquireTime": now,
                "renewTime": now,
            },
        }
        try:
            self._observe(self._store.update(lease))
        except StoreError as exc:
            log.warning(
                "could not release the lease; others take it when it expires",
                extra=self._log_fields(error=f"{type(exc).__name__}: {exc}"),
            )
            return
        log.info("released the lease", extra=self._log_fields(transitions=self._transitions()))
