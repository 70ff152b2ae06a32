"""The lines written to ExaBGP's process API: announce, withdraw, End-of-RIB, teardown. Pure.

Routes that share a next hop and communities go out in one ``announce attributes ... nlri P1
P2 ...`` line (ExaBGP parses one line and injects every prefix, and sends them in shared
UPDATEs), at most :data:`MAX_PREFIXES_PER_COMMAND` prefixes per line. Each line names its
neighbour (``neighbor A announce ...``), so a peer gets only the routes meant for it.
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Iterable, Iterator

from hybridnet.bgp.model import Community, Family, IPAddress, IPNetwork, Route

MAX_PREFIXES_PER_COMMAND = 1000
"""Prefixes per API line: ~20 KB for /32s, far under ExaBGP's 1 MiB line limit, and small
enough that one acknowledgement does not wait for thousands of injections."""


class Kind(enum.Enum):
    ANNOUNCE = "announce"
    WITHDRAW = "withdraw"
    END_OF_RIB = "eor"
    TEARDOWN = "teardown"


@dataclasses.dataclass(frozen=True)
class Command:
    """One API line, what it is about, and the route changes it makes once acknowledged
    (``changes``: prefix -> the route now announced, or None for a withdrawal)."""

    line: str
    kind: Kind
    peer: str
    changes: tuple[tuple[IPNetwork, Route | None], ...] = ()

    @property
    def exclusive(self) -> bool:
        """ExaBGP answers an End-of-RIB for a peer that is not established at once, ahead of
        the commands queued before it; answers are matched to commands in order, so such a
        command is only sent alone (nothing in flight, nothing after it until answered)."""
        return self.kind is Kind.END_OF_RIB


def _attributes(next_hop: IPAddress | None, communities: frozenset[Community]) -> str:
    text = f"next-hop {next_hop if next_hop is not None else 'self'}"
    if communities:
        text += f" community [ {' '.join(str(c) for c in sorted(communities))} ]"
    return text


def _chunks(routes: list[Route], size: int) -> Iterator[list[Route]]:
    for start in range(0, len(routes), size):
        yield routes[start : start + size]


def _grouped(routes: Iterable[Route]) -> dict[tuple[object, ...], list[Route]]:
    groups: dict[tuple[object, ...], list[Route]] = {}
    for route in routes:
        key = (route.family.value, str(route.next_hop), tuple(sorted(route.communities)))
        groups.setdefault(key, []).append(route)
    return groups


def announce(
    peer: str, routes: Iterable[Route], per_command: int = MAX_PREFIXES_PER_COMMAND
) -> list[Command]:
    """Commands that announce ``routes`` to ``peer``, batched by shared attributes."""
    return _batched(Kind.ANNOUNCE, peer, routes, per_command)


def withdraw(
    peer: str, routes: Iterable[Route], per_command: int = MAX_PREFIXES_PER_COMMAND
) -> list[Command]:
    """Commands that withdraw ``routes`` (as they were announced) from ``peer``. The
    attributes are repeated because ExaBGP's ``withdraw attributes`` parses a route, and a
    route without its next hop is one it refuses."""
    return _batched(Kind.WITHDRAW, peer, routes, per_command)


def _batched(kind: Kind, peer: str, routes: Iterable[Route], per_command: int) -> list[Command]:
    if per_command < 1:
        raise ValueError(f"per_command {per_command} must be at least 1")
    commands = []
    for group in _grouped(routes).values():
        group.sort(key=lambda route: route.prefix)
        first = group[0]
        attributes = _attributes(first.next_hop, first.communities)
        for chunk in _chunks(group, per_command):
            prefixes = " ".join(str(route.prefix) for route in chunk)
            line = f"neighbor {peer} {kind.value} attributes {attributes} nlri {prefixes}"
            outcome = kind is Kind.ANNOUNCE
            changes = tuple((route.prefix, route if outcome else None) for route in chunk)
            commands.append(Command(line, kind, peer, changes))
    return commands


def end_of_rib(peer: str, family: Family) -> Command:
    """The End-of-RIB marker for one family: tells a graceful-restart helper that the
    speaker has sent everything, so the routes it kept and did not hear again are gone."""
    return Command(f"neighbor {peer} announce eor {family.exabgp}", Kind.END_OF_RIB, peer)


CEASE_ADMINISTRATIVE_SHUTDOWN = 2
"""RFC 4486's Cease subcode for a speaker that ends the session on purpose."""


def teardown(peer: str) -> Command:
    """End the session with a NOTIFICATION (Cease, administrative shutdown): unlike a closed
    connection, which a graceful-restart helper answers by keeping the routes, the peer drops
    every route of the session at once. ExaBGP answers when it has scheduled it."""
    return Command(f"neighbor {peer} teardown {CEASE_ADMINISTRATIVE_SHUTDOWN}", Kind.TEARDOWN, peer)
