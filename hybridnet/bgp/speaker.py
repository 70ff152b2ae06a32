"""The BGP speaker: hybridnet's one interface to ExaBGP.

The caller (the manager, once leader) says which routes each peer should have; the speaker
runs ExaBGP as a supervised child in the caller's network namespace, keeps it told, and
reports each peer's session state::

    speaker = Speaker(peers, router_id="198.18.0.10")
    speaker.start()
    speaker.set_routes({Route.of("198.19.0.5/32", "198.18.0.11", {NO_EXPORT})})
    speaker.peer_states()["198.18.0.1"].state   # SessionState.ESTABLISHED
    speaker.close()                              # the fabric keeps the routes (graceful restart)

One thread (the driver) owns ExaBGP's state: it starts and restarts the child, writes
commands, reads every answer and event (through the helper threads of child.py and
channel.py, which only hand lines over), and keeps the route book and peer states. Public
methods hand it work through a queue, so none of them waits on ExaBGP.

What it does about ExaBGP:

* restarts it when it exits, however it exits (kill -9 included), after a delay that doubles
  with each quick exit (:class:`Backoff`); a new ExaBGP holds no routes, so the whole desired
  set is announced again;
* when a session comes back up, announces that peer's whole set again and then sends
  End-of-RIB, which ends the peer's graceful-restart wait (ExaBGP's own End-of-RIB is off:
  see render.py);
* reads ExaBGP's answer to every command; an ``error`` is logged with the command and
  counted, and the routes in it are tried again after ``retry_interval``;
* keeps at most ``window`` commands unanswered, so it never writes far ahead of ExaBGP;
* takes an ExaBGP that answers nothing for ``answer_timeout`` while commands wait (or does not
  take its commands off the socket for that long) for broken: logs it, counts it, kills it
  (SIGKILL: a hung or stopped process may not act on SIGTERM) and starts a new one as after
  any exit, so the peers see what they see after a crash (graceful restart, then the whole
  set again and End-of-RIB); a caller waiting on the speaker meanwhile gets
  :class:`~hybridnet.bgp.errors.ExaBGPUnresponsive` instead of waiting on.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import logging
import math
import os
import queue
import shutil
import signal
import sys
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable, Container, Iterable, Mapping, Sequence
from pathlib import Path

from prometheus_client import CollectorRegistry

from hybridnet.bgp import api, commands
from hybridnet.bgp.book import RouteBook, Sent
from hybridnet.bgp.channel import ApiConnection, ApiListener
from hybridnet.bgp.child import ExaBGPChild
from hybridnet.bgp.errors import ExaBGPUnresponsive, RouteError, SpeakerError
from hybridnet.bgp.metrics import SpeakerMetrics
from hybridnet.bgp.model import (
    Family,
    IPAddress,
    IPNetwork,
    Peer,
    PeerStatus,
    Route,
    SessionState,
)
from hybridnet.bgp.peerstate import PeerStates
from hybridnet.bgp.render import (
    EnvironmentSettings,
    render_configuration,
    render_environment,
    scrubbed_environment,
)
from hybridnet.logs import fields
from hybridnet.metrics import new_registry

log = logging.getLogger(__name__)

CONNECT_TIMEOUT = 30.0
"""How long a started ExaBGP has to connect its API relay before it is restarted."""
ANSWER_TIMEOUT = 30.0
"""How long ExaBGP may answer nothing while commands wait (counted from the later of the
oldest unanswered command's write and the last answer, so a long queue does not add up), and
how long a write of commands may wait for it to read. One command carries at most 1,000
prefixes, and ExaBGP answers one in well under a second even on a loaded 2-core machine (the
whole 5,000-route set, five commands, is at the router 1.44 s after a Node turns Ready through
the manager: README, bench/bgp_manager.py), so 30 s is far beyond a slow ExaBGP and only a
hung one reaches it. Not lower: giving up costs a restart, which every peer sees as a
graceful restart and the whole set sent again."""


@dataclasses.dataclass(frozen=True)
class Backoff:
    """Delay before starting ExaBGP again: ``initial`` after an exit, doubling with each
    further exit that follows a run shorter than ``stable_after``, at most ``maximum``."""

    initial: float = 0.5
    maximum: float = 30.0
    stable_after: float = 30.0

    def delay(self, quick_exits: int) -> float:
        return min(self.maximum, self.initial * 2.0 ** max(0, quick_exits - 1))


# --------------------------------------------------------------------------- driver events


@dataclasses.dataclass(frozen=True)
class _ChildExited:
    run: int
    code: int


@dataclasses.dataclass(frozen=True)
class _Connected:
    connection: ApiConnection


@dataclasses.dataclass(frozen=True)
class _Line:
    connection: int
    text: str


@dataclasses.dataclass(frozen=True)
class _Closed:
    connection: int


@dataclasses.dataclass(frozen=True)
class _Desired:
    """The desired routes changed (already in the book): time to plan."""


@dataclasses.dataclass(frozen=True)
class _Stop:
    pass


@dataclasses.dataclass(frozen=True)
class _Teardown:
    """End every session with a NOTIFICATION, after what is queued (see Speaker.teardown)."""


_Event = _ChildExited | _Connected | _Line | _Closed | _Desired | _Stop | _Teardown

_EVENTS_PER_ROUND = 1000
"""Events handled before the driver writes again (answers free the window quickly)."""


@dataclasses.dataclass(frozen=True)
class _InFlight:
    sent: Sent
    at: float


class _Acknowledged(Container[Route]):
    def __init__(self, speaker: Speaker, peer: str):
        self._speaker = speaker
        self._peer = peer

    def __contains__(self, route: object) -> bool:
        if not isinstance(route, Route):
            return False
        with self._speaker._lock:
            return self._speaker._book.holds(self._peer, route)


class Speaker:
    """ExaBGP, supervised and driven. See the module docstring.

    ``peers`` are all the BGP peers of every network this speaker serves (one ExaBGP speaks
    to all of them); ``router_id`` is the BGP identifier (an IPv4 address, usually the
    node's). ``run_prefix`` is put before ExaBGP's command line (``ip netns exec NS`` runs
    it in another network namespace; by default it runs in the caller's). ``workdir`` holds
    the rendered configuration and the API socket (a private temporary directory, removed
    at close, when not given). ``on_change`` is called from the driver thread whenever a
    peer's state or acknowledged routes change; it must return quickly. ``exabgp_command``
    replaces the command that runs ExaBGP (the configuration's path is appended); by default
    it is hybridnet.bgp.launcher under ``python``.
    """

    def __init__(
        self,
        peers: Sequence[Peer],
        router_id: str | IPAddress,
        *,
        workdir: Path | None = None,
        registry: CollectorRegistry | None = None,
        run_prefix: Sequence[str] = (),
        environment: EnvironmentSettings | None = None,
        backoff: Backoff = Backoff(),
        retry_interval: float = 5.0,
        window: int = 64,
        per_command: int = commands.MAX_PREFIXES_PER_COMMAND,
        stop_timeout: float = 10.0,
        answer_timeout: float = ANSWER_TIMEOUT,
        on_change: Callable[[], None] | None = None,
        python: str = sys.executable,
        exabgp_command: Sequence[str] | None = None,
    ):
        if not 0 < answer_timeout < math.inf:
            raise SpeakerError(f"answer_timeout {answer_timeout!r} must be seconds above 0")
        self.peers = {peer.name: peer for peer in peers}
        self.router_id = ipaddress.ip_address(router_id)
        self._environment = environment or EnvironmentSettings()
        self._python = python
        self._given_workdir = workdir
        self._workdir: Path | None = None
        # Rendered now, so that a bad peer is refused by the constructor, not by a child
        # that exits at once and is restarted forever (start() renders it again with the
        # real socket path).
        render_configuration(list(peers), self.router_id, self._relay_command(Path("/")))
        self._launcher = list(exabgp_command or [python, "-I", "-m", "hybridnet.bgp.launcher"])
        self._run_prefix = list(run_prefix)
        self._argv: list[str] = []
        self._env_path = Path()
        """Both set by start()."""
        self._backoff = backoff
        self._retry_interval = retry_interval
        self._window = max(1, window)
        self._stop_timeout = stop_timeout
        self._answer_timeout = answer_timeout
        self._on_change = on_change
        self.metrics = SpeakerMetrics(registry if registry is not None else new_registry())

        self._events: queue.SimpleQueue[_Event] = queue.SimpleQueue()
        self._lock = threading.Lock()
        """Guards the book and the peer states, which callers read."""
        self._rounds = threading.Condition()
        self._round = 0
        """Counts the driver's rounds, for wait_until."""
        self._book = RouteBook(self.peers, per_command)
        self._states = PeerStates(self.peers, time.time())
        self._given_up = 0
        self._given_up_because = ""
        """How many ExaBGPs were found unresponsive, and why the last one was (under the lock,
        for wait_until)."""
        self._thread: threading.Thread | None = None
        self._listener: ApiListener | None = None
        self._closed = False

        # Owned by the driver thread.
        self._child: ExaBGPChild | None = None
        self._run = 0
        self._started_at = 0.0
        self._quick_exits = 0
        self._restart_at: float | None = None
        self._kill_at: float | None = None
        self._connect_by: float | None = None
        self._connection: ApiConnection | None = None
        self._outbox: deque[Sent] = deque()
        self._in_flight: deque[_InFlight] = deque()
        self._last_answer_at = 0.0
        self._end_of_rib: dict[str, set[Family]] = {}
        self._retry_at = time.monotonic() + retry_interval
        for name in self.peers:
            self.metrics.set_state(name, SessionState.STOPPED)
            self.metrics.set_routes(name, 0)

    def _relay_command(self, workdir: Path) -> list[str]:
        return [self._python, "-I", "-m", "hybridnet.bgp.relay", str(workdir / "api.sock")]

    # ------------------------------------------------------------------ public

    @property
    def workdir(self) -> Path:
        """Where the configuration, environment file and API socket are (once started)."""
        if self._workdir is None:
            raise SpeakerError("the speaker has no work directory before start()")
        return self._workdir

    def start(self) -> None:
        """Write the configuration, open the API socket and start ExaBGP. OSError when the
        work directory cannot be written or the socket cannot be bound."""
        if self._thread is not None or self._closed:
            raise SpeakerError("a speaker is started once")
        if self._given_workdir is None:
            workdir = Path(tempfile.mkdtemp(prefix="hybridnet-bgp-"))
        else:
            workdir = self._given_workdir
            workdir.mkdir(mode=0o700, parents=True, exist_ok=True)
            os.chmod(workdir, 0o700)
        self._workdir = workdir
        config = workdir / "exabgp.conf"
        config.write_text(
            render_configuration(
                list(self.peers.values()), self.router_id, self._relay_command(workdir)
            )
        )
        self._env_path = workdir / "exabgp.env"
        self._env_path.write_text(render_environment(self._environment))
        self._argv = [*self._run_prefix, *self._launcher, str(config)]
        self._listener = ApiListener(workdir / "api.sock", self._accepted)
        with self._lock:
            self._launch()
        self._thread = threading.Thread(target=self._drive, name="bgp-speaker", daemon=True)
        self._thread.start()

    def close(self) -> None:
        """Stop ExaBGP (SIGTERM: sessions with graceful restart close without a
        NOTIFICATION, so the fabric keeps the routes for their restart time) and release
        everything. Withdraw first (``set_routes([])`` and wait) to take the routes away."""
        if self._closed:
            return
        self._closed = True
        if self._thread is not None:
            self._events.put(_Stop())
            self._thread.join()
        if self._listener is not None:
            self._listener.close()
        if self._given_workdir is None and self._workdir is not None:
            shutil.rmtree(self._workdir, ignore_errors=True)

    def __enter__(self) -> Speaker:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def set_routes(
        self, routes: Iterable[Route], peers: Iterable[str | IPAddress] | None = None
    ) -> None:
        """Make ``routes`` the whole set each of ``peers`` (all by default) should have;
        a route of a family a peer does not carry is left out for that peer. The other
        peers keep theirs. Returns at once; ExaBGP is told in the background.

        RouteError for a peer that is not configured, two routes for one prefix, or a route
        with ``next-hop self`` (no next hop) of another family than the peer's session."""
        wanted = list(routes)
        targets = self._targets(peers)
        per_peer: dict[str, list[Route]] = {}
        for name in targets:
            peer = self.peers[name]
            chosen = [route for route in wanted if route.family in peer.families]
            for route in chosen:
                self._check_next_hop(route, peer)
            seen: dict[object, Route] = {}
            for route in chosen:
                if seen.setdefault(route.prefix, route) != route:
                    raise RouteError(
                        f"two routes for {route.prefix}: {seen[route.prefix]}, {route}"
                    )
            per_peer[name] = chosen
        # Into the book at once (callers reading converged() or announced() next see their
        # own change); the driver plans and writes it.
        with self._lock:
            for name, chosen in per_peer.items():
                self._book.set_desired(name, chosen)
        self._events.put(_Desired())

    def change_routes(
        self, changes: Mapping[IPNetwork, Route | None], peer: str | IPAddress
    ) -> None:
        """Change only these prefixes of ``peer``'s set: a route announces (or replaces) the
        route of its prefix, None withdraws it; the others stay as they are. For a caller
        that knows what changed: it costs the changes, where set_routes compares the whole
        set (thousands of routes, each time one pod comes or goes). A route of a family the
        peer does not carry is left out, as by set_routes. Returns at once.

        RouteError for a peer that is not configured, a route under another prefix than its
        own, or a route with ``next-hop self`` of another family than the peer's session."""
        (name,) = self._targets([peer])
        session = self.peers[name]
        chosen: dict[IPNetwork, Route | None] = {}
        for prefix, given in changes.items():
            route = given if given is not None and given.family in session.families else None
            if route is not None:
                self._check_next_hop(route, session)
            chosen[prefix] = route
        with self._lock:
            self._book.change_desired(name, chosen)
        self._events.put(_Desired())

    @staticmethod
    def _check_next_hop(route: Route, peer: Peer) -> None:
        if route.next_hop is None and route.prefix.version != peer.address.version:
            raise RouteError(
                f"route {route.prefix} for peer {peer.name}: next-hop self over an "
                f"IPv{peer.address.version} session needs an explicit IPv"
                f"{route.prefix.version} next hop"
            )

    def peer_states(self) -> dict[str, PeerStatus]:
        """Each peer's session state, last error and acknowledged route count."""
        with self._lock:
            return {name: self._states.status(name, self._book.count(name)) for name in self.peers}

    def announced(self, peer: str | IPAddress) -> frozenset[Route]:
        """The routes ExaBGP has acknowledged for ``peer`` (in its Adj-RIB-Out)."""
        (name,) = self._targets([peer])
        with self._lock:
            return self._book.acked(name)

    def acknowledged(self, peer: str | IPAddress) -> Container[Route]:
        """What ExaBGP has acknowledged for ``peer``, for ``route in ...`` questions: a live
        view (each question is answered from the book as it is then), where announced()
        copies the whole set; asking about a few routes of thousands costs a few lookups."""
        (name,) = self._targets([peer])
        return _Acknowledged(self, name)

    def converged(self) -> bool:
        """Every peer's desired routes are acknowledged and nothing is on its way."""
        with self._lock:
            return all(self._book.converged(name) for name in self.peers)

    def teardown(self, timeout: float) -> bool:
        """End every Established session with a NOTIFICATION, after whatever is queued, and
        wait until each has gone down (ExaBGP has sent it and closed): the peers then drop
        this speaker's routes at once, where a plain close() leaves them for their graceful
        restart time. For a speaker whose routes another one now announces (a handover).
        False if some session was still up after ``timeout``; ExaBGPUnresponsive as for
        wait_until."""
        started = time.time()
        with self._lock:
            up = [
                n for n in self.peers if self._states.status(n, 0).state is SessionState.ESTABLISHED
            ]
        self._events.put(_Teardown())

        def down() -> bool:
            states = self.peer_states()
            return all(
                states[name].state is not SessionState.ESTABLISHED or states[name].since > started
                for name in up
            )

        return self.wait_until(down, timeout)

    @property
    def exabgp_pid(self) -> int | None:
        """The running ExaBGP's PID (None between runs)."""
        child = self._child
        return child.pid if child is not None else None

    def wait_until(self, condition: Callable[[], bool], timeout: float) -> bool:
        """Block until ``condition()`` holds, evaluating it again after each round of the
        driver; False if ``timeout`` passes first. For waiting on a state, not a time.

        ExaBGPUnresponsive if, before it holds, the speaker gives up on an ExaBGP that left a
        command unanswered for the answer timeout (a new ExaBGP is on its way and will be
        told everything again: wait again to see it there)."""
        deadline = time.monotonic() + timeout
        with self._lock:
            given_up = self._given_up
        while True:
            with self._rounds:
                seen = self._round
            if condition():
                return True
            with self._lock:
                if self._given_up != given_up:
                    raise ExaBGPUnresponsive(self._given_up_because)
            with self._rounds:
                while self._round == seen:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        return False
                    self._rounds.wait(remaining)

    # ------------------------------------------------------------------ input side

    def _targets(self, peers: Iterable[str | IPAddress] | None) -> list[str]:
        if peers is None:
            return list(self.peers)
        names = []
        for peer in peers:
            try:
                name = str(ipaddress.ip_address(str(peer)))
            except ValueError:
                raise RouteError(f"{peer!r} is not a peer address") from None
            if name not in self.peers:
                raise RouteError(f"{name} is not a configured BGP peer")
            names.append(name)
        return names

    def _accepted(self, connection: ApiConnection) -> None:
        self._events.put(_Connected(connection))

    # ------------------------------------------------------------------ driver

    def _drive(self) -> None:
        while True:
            event = self._next_event()
            events = [] if event is None else [event]
            while event is not None and len(events) < _EVENTS_PER_ROUND:
                try:
                    event = self._events.get_nowait()
                except queue.Empty:
                    break
                events.append(event)
            stop = any(isinstance(each, _Stop) for each in events)
            with self._lock:
                changed = False
                for each in events:
                    changed |= self._handle(each)
                self._timers(time.monotonic())
                if stop:
                    self._shutdown()
                batch = [] if stop else self._due()
            # Written without the lock: a write may wait for ExaBGP to read, and callers
            # reading the state should not wait with it.
            if batch:
                self._send(batch)
            with self._rounds:
                self._round += 1
                self._rounds.notify_all()
            if changed:
                self._call_on_change()
            if stop:
                return

    def _call_on_change(self) -> None:
        if self._on_change is None:
            return
        try:
            self._on_change()
        except Exception:
            log.exception("the speaker's on_change callback failed")

    def _next_event(self) -> _Event | None:
        deadlines = [
            t for t in (self._restart_at, self._kill_at, self._connect_by, self._answer_by()) if t
        ]
        deadlines.append(self._retry_at)
        timeout = max(0.0, min(deadlines) - time.monotonic())
        try:
            return self._events.get(timeout=timeout)
        except queue.Empty:
            return None

    def _handle(self, event: _Event) -> bool:
        if isinstance(event, _Desired):
            return False
        if isinstance(event, _Teardown):
            self._outbox.extend(self._book.plan())  # what is queued goes out first
            self._outbox.extend(self._book.track(commands.teardown(name)) for name in self.peers)
            return False
        if isinstance(event, _Line):
            if self._connection is not None and event.connection == self._connection.id:
                return self._message(api.parse(event.text))
            return False
        if isinstance(event, _Connected):
            self._connect(event.connection)
            return False
        if isinstance(event, _Closed):
            if self._connection is not None and event.connection == self._connection.id:
                if self._child is not None and not self._child.running():
                    self._drop_connection()  # ExaBGP died; its exit is reported next
                else:
                    self._api_lost("ExaBGP's API relay disconnected")
            return False
        if isinstance(event, _ChildExited):
            return self._exited(event)
        return False

    def _timers(self, now: float) -> None:
        if self._restart_at is not None and now >= self._restart_at:
            self._restart_at = None
            self.metrics.restarts.inc()
            self._launch()
        if self._kill_at is not None and now >= self._kill_at and self._child is not None:
            log.warning(
                "ExaBGP did not exit after SIGTERM, killing it",
                extra=fields(exabgp_pid=self._child.pid),
            )
            self._kill_at = None
            self._child.signal(signal.SIGKILL)
        if self._connect_by is not None and now >= self._connect_by and self._child is not None:
            self._connect_by = None
            self._api_lost(f"ExaBGP's API relay did not connect within {CONNECT_TIMEOUT:g}s")
        answer_by = self._answer_by()
        if answer_by is not None and now >= answer_by:
            self._unresponsive(f"ExaBGP answered no command for {self._answer_timeout:g}s")
        if now >= self._retry_at:
            self._retry_at = now + self._retry_interval
            retried = self._book.retry_failed()
            if retried:
                log.info("retrying refused route changes", extra=fields(routes=retried))

    # ------------------------------------------------------------------ ExaBGP lifecycle

    def _launch(self) -> None:
        self._run += 1
        run = self._run
        env = scrubbed_environment(os.environ.items())
        env["EXABGP_ENVFILE"] = str(self._env_path)
        try:
            self._child = ExaBGPChild(
                self._argv,
                env=env,
                cwd=str(self.workdir),
                log_level=self._environment.python_log_level,
                on_exit=lambda code: self._events.put(_ChildExited(run, code)),
            )
        except OSError as exc:
            log.error("cannot start ExaBGP", extra=fields(argv=self._argv, error=str(exc)))
            self._child = None
            self._schedule_restart(time.monotonic())
            return
        self._started_at = time.monotonic()
        self._connect_by = self._started_at + CONNECT_TIMEOUT
        log.info(
            "ExaBGP started",
            extra=fields(exabgp_pid=self._child.pid, run=run, peers=list(self.peers)),
        )

    def _connect(self, connection: ApiConnection) -> None:
        child = self._child
        if child is None or connection.exabgp_pid != child.pid or self._connection is not None:
            log.warning(
                "dropped an API connection from an ExaBGP that is not the current one",
                extra=fields(exabgp_pid=connection.exabgp_pid),
            )
            connection.close()
            return
        self._connection = connection
        self._connect_by = None
        connection.start_reading(
            lambda ident, text: self._events.put(_Line(ident, text)),
            lambda ident: self._events.put(_Closed(ident)),
        )
        self._book.forget_everything()
        log.info("ExaBGP's API connected", extra=fields(exabgp_pid=child.pid))

    def _api_lost(self, why: str) -> None:
        """The API is gone while ExaBGP may still run: end ExaBGP, so that the restart
        begins from a known, empty state."""
        child = self._child
        log.warning(
            why + "; stopping ExaBGP to start it again",
            extra=fields(exabgp_pid=child.pid if child else None),
        )
        self._drop_connection()
        if child is not None:
            child.signal(signal.SIGTERM)
            self._kill_at = time.monotonic() + self._stop_timeout

    def _answer_by(self) -> float | None:
        """When ExaBGP is late answering the oldest command in flight (None: none is)."""
        if self._connection is None or not self._in_flight:
            return None
        return max(self._in_flight[0].at, self._last_answer_at) + self._answer_timeout

    def _unresponsive(self, why: str) -> None:
        """ExaBGP does not answer (or read) its commands: kill it and start a new one
        (_exited, as after a crash). SIGKILL, not SIGTERM: a process that is hung or stopped
        may never act on SIGTERM, and for the peers both end the session without a
        NOTIFICATION (graceful restart keeps the routes)."""
        child = self._child
        oldest = self._in_flight[0].sent.command if self._in_flight else None
        self._given_up += 1
        self._given_up_because = why
        self.metrics.answer_timeouts.inc()
        log.error(
            why + "; killing ExaBGP to start it again",
            extra=fields(
                exabgp_pid=child.pid if child else None,
                answer_timeout=self._answer_timeout,
                unanswered=len(self._in_flight),
                oldest_kind=oldest.kind.value if oldest else None,
                oldest_peer=oldest.peer if oldest else None,
            ),
        )
        self._drop_connection()
        if child is not None:
            child.signal(signal.SIGKILL)

    def _drop_connection(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None
        lost = self._book.forget_everything()
        self._outbox.clear()
        self._in_flight.clear()
        self._end_of_rib.clear()
        if lost:
            log.info(
                "commands unanswered by the ExaBGP that ended", extra=fields(commands=len(lost))
            )
        for name in self.peers:
            self.metrics.set_routes(name, 0)

    def _exited(self, event: _ChildExited) -> bool:
        if event.run != self._run or self._child is None:
            return False
        child, self._child = self._child, None
        self._kill_at = self._connect_by = None
        log.warning(
            "ExaBGP exited",
            extra=fields(exabgp_pid=child.pid, code=event.code, last_output=list(child.tail)),
        )
        self._drop_connection()
        for name in self._states.stopped(time.time()):
            self.metrics.set_state(name, SessionState.STOPPED)
        now = time.monotonic()
        ran = now - self._started_at
        self._quick_exits = 1 if ran >= self._backoff.stable_after else self._quick_exits + 1
        self._schedule_restart(now)
        return True

    def _schedule_restart(self, now: float) -> None:
        delay = self._backoff.delay(max(1, self._quick_exits))
        self._restart_at = now + delay
        log.info("ExaBGP will be started again", extra=fields(delay=delay))

    def _shutdown(self) -> None:
        child, self._child = self._child, None
        self._restart_at = self._kill_at = self._connect_by = None
        if child is not None:
            code = child.stop(self._stop_timeout)
            child.join(self._stop_timeout)
            log.info("ExaBGP stopped", extra=fields(exabgp_pid=child.pid, code=code))
        self._drop_connection()
        for name in self._states.stopped(time.time()):
            self.metrics.set_state(name, SessionState.STOPPED)

    # ------------------------------------------------------------------ the API

    def _message(self, message: api.Message) -> bool:
        if isinstance(message, api.Answer):
            return self._answered(message.ok)
        changed = self._states.apply(message, time.time())
        if isinstance(message, api.StateChange):
            self.metrics.set_state(message.peer, message.state)
            log.info(
                "BGP session state", extra=fields(peer=message.peer, state=message.state.value)
            )
            if message.state is not SessionState.ESTABLISHED:
                self._end_of_rib.pop(message.peer, None)
        elif isinstance(message, api.SessionUp) and message.peer in self.peers:
            # Announce everything again, then End-of-RIB (the peer's graceful-restart helper
            # flushes what it kept and did not hear again).
            self._book.resend(message.peer)
            self._end_of_rib[message.peer] = set(self.peers[message.peer].families)
            log.info("BGP session up", extra=fields(peer=message.peer))
        elif isinstance(message, api.SessionDown):
            self._end_of_rib.pop(message.peer, None)
            log.warning("BGP session down", extra=fields(peer=message.peer, reason=message.reason))
        elif isinstance(message, api.Notification):
            log.warning(
                "BGP notification", extra=fields(peer=message.peer, reason=message.describe())
            )
        elif isinstance(message, api.ShuttingDown):
            log.info("ExaBGP says it is shutting down")
        elif isinstance(message, api.Unrecognised):
            log.debug("ExaBGP API line not used", extra=fields(line=message.line[:500]))
        return changed

    def _answered(self, ok: bool) -> bool:
        if not self._in_flight:
            log.error("ExaBGP answered a command that was not sent", extra=fields(ok=ok))
            return False
        head = self._in_flight.popleft()
        self._last_answer_at = time.monotonic()
        command = self._book.answered(head.sent.sequence, ok)
        self.metrics.announce_latency.labels(kind=command.kind.value).observe(
            time.monotonic() - head.at
        )
        if not ok:
            self.metrics.command_failures.labels(kind=command.kind.value).inc()
            log.error(
                "ExaBGP refused a command",
                extra=fields(
                    peer=command.peer,
                    kind=command.kind.value,
                    command=command.line[:300],
                    routes=len(command.changes),
                ),
            )
        if command.changes:
            self.metrics.set_routes(command.peer, self._book.count(command.peer))
            return True
        return False

    def _due(self) -> list[Sent]:
        """What to write now: planned route changes within the window, then End-of-RIB
        markers, each alone (see Command.exclusive). They count as in flight from here."""
        if self._connection is None:
            return []
        if self._in_flight and self._in_flight[-1].sent.command.exclusive:
            return []
        self._outbox.extend(self._book.plan())
        batch: list[Sent] = []
        while self._outbox and len(self._in_flight) + len(batch) < self._window:
            batch.append(self._outbox.popleft())
        if not batch and not self._in_flight:
            exclusive = self._next_end_of_rib()
            if exclusive is not None:
                batch.append(self._book.track(exclusive))
        now = time.monotonic()
        self._in_flight.extend(_InFlight(sent, now) for sent in batch)
        return batch

    def _send(self, batch: list[Sent]) -> None:
        connection = self._connection
        if connection is None:
            return
        try:
            connection.send((sent.command.line for sent in batch), self._answer_timeout)
        except TimeoutError as exc:
            with self._lock:
                if connection is self._connection:
                    self._unresponsive(str(exc))
        except OSError as exc:
            with self._lock:
                if connection is self._connection:
                    self._api_lost(f"writing to ExaBGP's API failed ({exc})")

    def _next_end_of_rib(self) -> commands.Command | None:
        for name, families in self._end_of_rib.items():
            family = min(families, key=lambda each: each.value)
            families.discard(family)
            if not families:
                del self._end_of_rib[name]
            return commands.end_of_rib(name, family)
        return None
