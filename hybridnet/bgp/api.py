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
class Notification:
    """A NOTIFICATION ExaBGP sent to or received from a peer: why a session ended or was
    refused (2/2: bad peer AS)."""

    peer: str
    direction: str
    """``send`` or ``receive``."""
    code: int
    subcode: int

    def describe(self) -> str:
        what = NOTIFICATION_NAMES.get((self.code, self.subcode)) or NOTIFICATION_NAMES.get(
            (self.code, 0), "unknown error"
        )
        verb = "sent" if self.direction == "send" else "received"
        return f"notification {verb}: {what} ({self.code}/{self.subcode})"


NOTIFICATION_NAMES = {
    (1, 0): "message header error",
    (2, 0): "OPEN message error",
    (2, 1): "OPEN message error: unsupported version number",
    (2, 2): "OPEN message error: bad peer AS",
    (2, 3): "OPEN message error: bad BGP identifier",
    (2, 4): "OPEN message error: unsupported optional parameter",
    (2, 6): "OPEN message error: unacceptable hold time",
    (2, 7): "OPEN message error: unsupported capability",
    (3, 0): "UPDATE message error",
    (4, 0): "hold timer expired",
    (5, 0): "finite state machine error",
    (6, 0): "cease",
    (6, 1): "cease: maximum number of prefixes reached",
    (6, 2): "cease: administrative shutdown",
    (6, 3): "cease: peer de-configured",
    (6, 4): "cease: administrative reset",
    (6, 5): "cease: connection rejected",
    (6, 6): "cease: other configuration change",
    (6, 7): "cease: connection collision resolution",
    (6, 8): "cease: out of resources",
}
"""RFC 4271 section 4.5 codes and RFC 4486 cease subcodes, for peer status messages."""


@dataclasses.dataclass(frozen=True)
class ShuttingDown:
    """ExaBGP is exiting (its goodbye to the API process)."""


@dataclasses.dataclass(frozen=True)
class Unrecognised:
    """A line this module does not interpret (kept for the log)."""

    line: str


Message = (
    Answer | StateChange | SessionUp | SessionDown | Notification | ShuttingDown | Unrecognised
)


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
    notification = neighbor.get("notification")
    if kind == "notification" and isinstance(notification, dict):
        code, subcode = notification.get("code"), notification.get("subcode")
        if isinstance(code, int) and isinstance(subcode, int):
            return Notification(peer, str(neighbor.get("direction", "")), code, subcode)
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
