"""Each peer's session state, kept from ExaBGP's FSM and neighbour-change events. Pure: the
caller passes the time."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable

from hybridnet.bgp.api import Message, Notification, SessionDown, StateChange
from hybridnet.bgp.model import PeerStatus, SessionState


@dataclasses.dataclass
class _Peer:
    state: SessionState
    since: float
    last_error: str | None = None
    notified: bool = False
    """The last error came from a NOTIFICATION and the session's down event is still due."""


class PeerStates:
    def __init__(self, peers: Iterable[str], now: float):
        self._peers = {peer: _Peer(SessionState.STOPPED, now) for peer in peers}

    def stopped(self, now: float) -> list[str]:
        """No ExaBGP runs: every peer is STOPPED. Returns the peers whose state changed."""
        changed = [p for p, entry in self._peers.items() if entry.state is not SessionState.STOPPED]
        for peer in changed:
            self._peers[peer].state, self._peers[peer].since = SessionState.STOPPED, now
        return changed

    def apply(self, message: Message, now: float) -> bool:
        """Take an event in; True when a peer's state or last error changed. Events about a
        peer that is not configured are ignored (False)."""
        if isinstance(message, StateChange) and message.peer in self._peers:
            entry = self._peers[message.peer]
            if entry.state is message.state:
                return False
            entry.state, entry.since = message.state, now
            return True
        if isinstance(message, SessionDown | Notification) and message.peer in self._peers:
            entry = self._peers[message.peer]
            reason = message.describe() if isinstance(message, Notification) else message.reason
            if isinstance(message, SessionDown) and entry.notified:
                # The notification just before says more than ExaBGP's "closing connection".
                entry.notified = False
                return False
            entry.notified = isinstance(message, Notification)
            changed = entry.last_error != reason
            entry.last_error = reason
            return changed
        return False

    def state(self, peer: str) -> SessionState:
        return self._peers[peer].state

    def status(self, peer: str, routes: int) -> PeerStatus:
        entry = self._peers[peer]
        return PeerStatus(peer, entry.state, entry.since, entry.last_error, routes)
