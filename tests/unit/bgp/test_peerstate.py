"""Peer states from ExaBGP's events, and the reason a session was refused."""

from __future__ import annotations

from hybridnet.bgp.api import Notification, SessionDown, SessionUp, StateChange
from hybridnet.bgp.model import SessionState
from hybridnet.bgp.peerstate import PeerStates

A = "198.18.0.1"


def test_states_follow_fsm_events_with_their_time() -> None:
    states = PeerStates([A], now=1.0)
    assert states.status(A, 0).state is SessionState.STOPPED
    assert states.apply(StateChange(A, SessionState.CONNECT), now=2.0)
    assert not states.apply(StateChange(A, SessionState.CONNECT), now=3.0), "no change"
    assert states.apply(StateChange(A, SessionState.ESTABLISHED), now=4.0)
    status = states.status(A, routes=7)
    assert (status.state, status.since, status.routes) == (SessionState.ESTABLISHED, 4.0, 7)
    assert not states.apply(SessionUp(A), now=5.0)


def test_a_notification_is_the_last_error_and_not_hidden_by_the_down_after_it() -> None:
    states = PeerStates([A], now=0.0)
    assert states.apply(Notification(A, "receive", 2, 2), now=1.0)
    assert not states.apply(SessionDown(A, "closing connection"), now=1.0)
    assert states.status(A, 0).last_error == (
        "notification received: OPEN message error: bad peer AS (2/2)"
    )
    assert states.apply(SessionDown(A, "connection refused"), now=2.0)
    assert states.status(A, 0).last_error == "connection refused"
    assert states.apply(StateChange(A, SessionState.ESTABLISHED), now=3.0)
    assert states.status(A, 0).last_error == "connection refused", "kept after recovery"


def test_stopped_reports_who_changed_and_unknown_peers_are_ignored() -> None:
    states = PeerStates([A, "198.18.0.2"], now=0.0)
    states.apply(StateChange(A, SessionState.ACTIVE), now=1.0)
    assert states.stopped(now=2.0) == [A]
    assert states.status(A, 0).state is SessionState.STOPPED
    assert not states.apply(StateChange("198.18.0.9", SessionState.ACTIVE), now=3.0)
