"""Route bookkeeping per peer: what should be announced, what ExaBGP has acknowledged, what is
on its way, and the commands that close the gap. Pure: no I/O, no clock, no threads.

Per peer and prefix the book knows the desired route (or none), the route ExaBGP has
acknowledged (its Adj-RIB-Out holds it), and the last command in flight for the prefix. The
plan compares the desired route with what the prefix will be once the commands in flight are
answered, so a change is sent once, however often the plan is asked for, and a prefix can be
changed again while an earlier command for it is still unanswered (ExaBGP answers in order).

Two ways to start over:

* :meth:`RouteBook.forget_everything`: a new ExaBGP process holds nothing; every desired
  route is announced again and nothing needs withdrawing;
* :meth:`RouteBook.resend` (a session came back): ExaBGP still holds what it acknowledged,
  but the whole desired set is announced again anyway (ExaBGP does not send a route twice, so
  this costs API lines, not UPDATEs); withdrawals still go out for what is no longer desired.

A command answered ``error`` leaves its routes as they were and parks them: they are not
planned again until :meth:`retry_failed` (a caller's timer), so a route ExaBGP refuses is
not resent in a tight loop.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping

from hybridnet.bgp import commands
from hybridnet.bgp.commands import Command
from hybridnet.bgp.errors import RouteError
from hybridnet.bgp.model import IPNetwork, Route


@dataclasses.dataclass
class _PeerBook:
    desired: dict[IPNetwork, Route] = dataclasses.field(default_factory=dict)
    acked: dict[IPNetwork, Route] = dataclasses.field(default_factory=dict)
    resend: set[IPNetwork] = dataclasses.field(default_factory=set)
    """Desired prefixes to announce again even though ``acked`` already has them."""
    in_flight: dict[IPNetwork, tuple[int, Route | None]] = dataclasses.field(default_factory=dict)
    """Prefix -> (sequence number, outcome) of the last command sent for it."""
    failed: dict[IPNetwork, Route | None] = dataclasses.field(default_factory=dict)
    """Prefix -> the outcome a refused command was asking for."""
    dirty: set[IPNetwork] = dataclasses.field(default_factory=set)
    """Prefixes whose desired or expected route changed since the last plan (the plan
    looks at these only, so a large, settled set costs nothing to plan again)."""

    def expected(self, prefix: IPNetwork) -> Route | None:
        """What the prefix will be once every command in flight is answered ``done``."""
        if prefix in self.in_flight:
            return self.in_flight[prefix][1]
        return self.acked.get(prefix)


@dataclasses.dataclass(frozen=True)
class Sent:
    """A planned command with the sequence number the book knows it by."""

    sequence: int
    command: Command


class RouteBook:
    def __init__(self, peers: Iterable[str], per_command: int = commands.MAX_PREFIXES_PER_COMMAND):
        self._peers = {peer: _PeerBook() for peer in peers}
        self._per_command = per_command
        self._sequence = 0
        self._outstanding: dict[int, Command] = {}

    @property
    def peers(self) -> list[str]:
        return list(self._peers)

    def set_desired(self, peer: str, routes: Iterable[Route]) -> None:
        """Replace the routes ``peer`` should have. RouteError when two routes share a prefix
        (a peer holds one route per prefix)."""
        book = self._book(peer)
        desired: dict[IPNetwork, Route] = {}
        for route in routes:
            other = desired.setdefault(route.prefix, route)
            if other != route:
                raise RouteError(f"peer {peer}: two routes for {route.prefix}: {other}, {route}")
        old = book.desired
        book.dirty |= {p for p in old.keys() | desired.keys() if old.get(p) != desired.get(p)}
        book.desired = desired
        book.resend &= desired.keys()

    def change_desired(self, peer: str, changes: Mapping[IPNetwork, Route | None]) -> None:
        """Change only these prefixes of what ``peer`` should have (None: nothing); the rest
        stays. Costs the changes, where set_desired compares the whole set."""
        book = self._book(peer)
        for prefix, route in changes.items():
            if route is not None and route.prefix != prefix:
                raise RouteError(f"peer {peer}: route {route} given for prefix {prefix}")
        for prefix, route in changes.items():
            if book.desired.get(prefix) == route:
                continue
            book.dirty.add(prefix)
            if route is None:
                del book.desired[prefix]
                book.resend.discard(prefix)
            else:
                book.desired[prefix] = route

    def desired(self, peer: str) -> frozenset[Route]:
        return frozenset(self._book(peer).desired.values())

    def acked(self, peer: str) -> frozenset[Route]:
        """The routes ExaBGP has acknowledged for ``peer``."""
        return frozenset(self._book(peer).acked.values())

    def holds(self, peer: str, route: Route) -> bool:
        """Whether ExaBGP has acknowledged ``route`` for ``peer`` (one lookup, where acked()
        copies the whole set)."""
        return self._book(peer).acked.get(route.prefix) == route

    def converged(self, peer: str) -> bool:
        """Everything desired is acknowledged, nothing else is, nothing is in flight."""
        book = self._book(peer)
        return not book.in_flight and not book.resend and book.acked == book.desired

    def plan(self) -> list[Sent]:
        """The commands that bring every peer from what ExaBGP will hold to what is desired;
        each is in flight from now on, until :meth:`answered` or a reset."""
        planned = []
        for peer, book in self._peers.items():
            announce: list[Route] = []
            withdraw: list[Route] = []
            for prefix in book.dirty:
                target = book.desired.get(prefix)
                current = book.expected(prefix)
                if target == current and not (target is not None and prefix in book.resend):
                    continue
                if prefix in book.failed and book.failed[prefix] == target:
                    continue
                if target is not None:
                    announce.append(target)
                elif current is not None:
                    withdraw.append(current)
            book.resend.clear()
            book.dirty.clear()
            planned += [
                self._send(book, command)
                for command in commands.withdraw(peer, withdraw, self._per_command)
                + commands.announce(peer, announce, self._per_command)
            ]
        return planned

    def _send(self, book: _PeerBook, command: Command) -> Sent:
        self._sequence += 1
        for prefix, outcome in command.changes:
            book.in_flight[prefix] = (self._sequence, outcome)
            book.failed.pop(prefix, None)
        self._outstanding[self._sequence] = command
        return Sent(self._sequence, command)

    def track(self, command: Command) -> Sent:
        """A command made outside the plan (End-of-RIB), numbered like the planned ones."""
        return self._send(self._book(command.peer), command)

    def answered(self, sequence: int, ok: bool) -> Command:
        """ExaBGP's answer to command ``sequence``: ``done`` makes its changes the
        acknowledged state, ``error`` parks them as failed. Returns the command."""
        command = self._outstanding.pop(sequence)
        book = self._peers[command.peer]
        for prefix, outcome in command.changes:
            if ok:
                if outcome is None:
                    book.acked.pop(prefix, None)
                else:
                    book.acked[prefix] = outcome
            else:
                book.failed[prefix] = outcome
                book.dirty.add(prefix)
            last = book.in_flight.get(prefix)
            if last is not None and last[0] == sequence:
                del book.in_flight[prefix]
        return command

    def retry_failed(self) -> int:
        """Make refused changes plannable again; returns how many there were."""
        count = 0
        for book in self._peers.values():
            count += len(book.failed)
            book.dirty |= book.failed.keys()
            book.failed.clear()
        return count

    def resend(self, peer: str) -> None:
        """Plan the whole desired set of ``peer`` again (its session was reset)."""
        book = self._book(peer)
        book.resend = set(book.desired)
        book.dirty |= book.resend

    def forget_everything(self) -> list[Command]:
        """ExaBGP was replaced: it holds nothing and will answer nothing that was in flight.
        Returns the commands that were (they will never be answered)."""
        lost = list(self._outstanding.values())
        self._outstanding.clear()
        for book in self._peers.values():
            book.acked.clear()
            book.in_flight.clear()
            book.failed.clear()
            book.resend.clear()
            book.dirty = set(book.desired)
        return lost

    def count(self, peer: str) -> int:
        """Acknowledged routes of ``peer``."""
        return len(self._book(peer).acked)

    def _book(self, peer: str) -> _PeerBook:
        try:
            return self._peers[peer]
        except KeyError:
            raise RouteError(f"{peer} is not a configured BGP peer") from None
