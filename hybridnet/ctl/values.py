"""Parsers of flag values (argparse ``type=`` functions): each refuses a malformed value with
a message naming what it expected, which argparse prints as the command's one error line.
What a value means for the object (a CIDR's canonical form, a gateway inside it) is checked
later by the same rules as the webhook."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from hybridnet.api.resources import BGPPeer

_PEER_KEYS = {
    "address": "address",
    "asn": "asn",
    "password": "password",
    "hold-time": "hold_time",
    "graceful-restart-seconds": "graceful_restart_seconds",
}


def key_value(text: str) -> tuple[str, str]:
    """``key=value`` (a node label)."""
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise argparse.ArgumentTypeError(f"{text!r} is not key=value")
    return key.strip(), value.strip()


def seconds(text: str) -> float:
    """A duration in seconds, zero or more (``--settle``)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not 0 <= value <= 3600:  # also refuses nan and inf
        raise argparse.ArgumentTypeError(f"{text!r} is not between 0 and 3600 seconds")
    return value


def _integer(text: str, what: str) -> int:
    try:
        return int(text, 10)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{what} {text!r} is not a whole number") from None


def bgp_peer(text: str) -> BGPPeer:
    """``address=A,asn=N[,password=P][,hold-time=S][,graceful-restart-seconds=S]``."""
    found: dict[str, str] = {}
    for part in (p for p in text.split(",") if p.strip()):
        key, sep, value = part.partition("=")
        key = key.strip()
        if not sep or key not in _PEER_KEYS:
            raise argparse.ArgumentTypeError(
                f"{part!r} in {text!r}: expected key=value with key one of {', '.join(_PEER_KEYS)}"
            )
        found[key] = value.strip()
    missing = [k for k in ("address", "asn") if not found.get(k)]
    if missing:
        raise argparse.ArgumentTypeError(f"{text!r} lacks {' and '.join(missing)}=")
    return BGPPeer(
        address=found["address"],
        asn=_integer(found["asn"], "asn"),
        password=found.get("password") or None,
        hold_time=_integer(found["hold-time"], "hold-time") if "hold-time" in found else None,
        graceful_restart_seconds=(
            _integer(found["graceful-restart-seconds"], "graceful-restart-seconds")
            if "graceful-restart-seconds" in found
            else None
        ),
    )


class one_of:
    """A choice, matched without regard to case and given back as spelled in ``choices``
    (which shell completion offers)."""

    def __init__(self, choices: Sequence[str]):
        self.choices = tuple(choices)
        self.__name__ = "choice"  # argparse names the type in its messages

    def __call__(self, text: str) -> str:
        for choice in self.choices:
            if text.lower() == choice.lower():
                return choice
        raise argparse.ArgumentTypeError(f"{text!r} is not one of {', '.join(self.choices)}")


def flatten(values: Sequence[str] | None) -> list[str]:
    """Repeated flags and comma-separated lists alike: ``--reserved a,b --reserved c``."""
    return [v.strip() for value in values or () for v in value.split(",") if v.strip()]
