"""What ExaBGP writes to its API process, parsed into typed messages. Pure.

With ``encoder json`` ExaBGP writes one JSON object per line for the events a neighbour's
``api`` block asks for (here ``fsm`` and ``neighbor-changes``), and answers each command with
the plain word ``done`` or ``error`` (its JSON answers are a separate switch, off).
"""

from __future__ import annotations

import dataclasses
import ipaddress
import json
from typing import Any

from hybridnet.bgp.model import SessionState


@dataclasses.dataclass(frozen=True)
class Answer:
    """ExaBGP's answer to the oldest command it has not answered yet."""

    ok: bool


@dataclasses.dataclass(frozen=True)
class StateChange:
    """A peer's FSM moved (``type: fsm``)."""

    peer: str
    state: SessionState


@dataclasses.dataclass(frozen=True)
class SessionUp:
    """A session came up (``type: state``, ``up``): ExaBGP replays its Adj-RIB-Out to it."""

    peer: str


@dataclasses.dataclass(frozen=True)
class SessionDown:
    """A session went down or could not be set up, with ExaBGP's reason (``notification
    received (2,2)`` for a peer refusing our AS, ``connection refused`` ...)."""

    peer: str
    reason: str


@dataclasses.dataclass(frozen=True)
class ShuttingDown:
    """ExaBGP is exiting (its goodbye to the API process)."""


@dataclasses.dataclass(frozen=True)
class Unrecognised:
    """A line this module does not interpret (kept for the log)."""

    line: str


Message = Answer | StateChange | SessionUp | SessionDown | ShuttingDown | Unrecognised


def parse(line: str) -> Message:
    text = line.strip()
    if text == "done":
        return Answer(ok=True)
    if text == "error":
        return Answer(ok=False)
    if text == "shutdown":
        return ShuttingDown()
    if not text.startswith("{"):
        return Unrecognised(text)
    try:
        event = json.loads(text)
    except json.JSONDecodeError:
        return Unrecognised(text)
    if not isinstance(event, dict):
        return Unrecognised(text)
    return _event(event, text)


def _event(event: dict[str, Any], text: str) -> Message:
    kind = event.get("type")
    if kind == "notification" and event.get("notification") == "shutdown":
        return ShuttingDown()
    peer = _peer(event)
    neighbor = event.get("neighbor")
    if peer is None or not isinstance(neighbor, dict):
        return Unrecognised(text)
    state = neighbor.get("state")
    if kind == "fsm" and isinstance(state, str):
        fsm = SessionState.from_exabgp(state)
        return StateChange(peer, fsm) if fsm is not None else Unrecognised(text)
    if kind == "state" and state == "up":
        return SessionUp(peer)
    if kind == "state" and state == "down":
        return SessionDown(peer, str(neighbor.get("reason") or "no reason given"))
    return Unrecognised(text)


def _peer(event: dict[str, Any]) -> str | None:
    """The peer's address in canonical form (the speaker's key for it)."""
    neighbor = event.get("neighbor")
    address = neighbor.get("address") if isinstance(neighbor, dict) else None
    peer = address.get("peer") if isinstance(address, dict) else None
    if not isinstance(peer, str):
        return None
    try:
        return str(ipaddress.ip_address(peer))
    except ValueError:
        return None
