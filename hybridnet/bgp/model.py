"""What the speaker is told (peers, routes) and what it reports (peer state), as frozen values.

Addresses are ``ipaddress`` objects, so a route's identity does not depend on how a caller
spelled its prefix; everything is hashable, so route sets are plain ``set``/``frozenset``.
"""

from __future__ import annotations

import dataclasses
import enum
import ipaddress

from hybridnet.api.validation import md5_password_problems
from hybridnet.bgp.errors import PeerConfigError, RouteError

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

MAX_ASN = 2**32 - 1
MAX_HOLD_TIME = 65535
MAX_GRACEFUL_RESTART_SECONDS = 4095
"""The capability's restart time is a 12-bit field (RFC 4724)."""
DEFAULT_GRACEFUL_RESTART_SECONDS = 300
"""The reference's default: a manager (leader) change or an ExaBGP restart has five minutes
to come back before the fabric drops the routes it kept."""
MAX_TTL = 255
"""Linux's TCP_MD5SIG key limit (TCP_MD5SIG_MAXKEYLEN)."""


@dataclasses.dataclass(frozen=True, order=True)
class Community:
    """A standard community, ``asn:value`` (RFC 1997)."""

    asn: int
    value: int

    def __post_init__(self) -> None:
        if not (0 <= self.asn <= 0xFFFF and 0 <= self.value <= 0xFFFF):
            raise RouteError(f"community {self.asn}:{self.value}: each half must be 0-65535")

    def __str__(self) -> str:
        return f"{self.asn}:{self.value}"


NO_EXPORT = Community(0xFFFF, 0xFF01)
"""Well-known NO_EXPORT (65535:65281): the fabric keeps a pod's /32 (/128) inside its AS."""


class Family(enum.Enum):
    """An address family the speaker carries (unicast only)."""

    IPV4 = 4
    IPV6 = 6

    @property
    def exabgp(self) -> str:
        """The family's name in ExaBGP's configuration and API."""
        return "ipv4 unicast" if self is Family.IPV4 else "ipv6 unicast"

    @classmethod
    def of(cls, address: IPAddress | IPNetwork) -> Family:
        return cls(address.version)


@dataclasses.dataclass(frozen=True)
class Route:
    """One prefix to announce: ``next_hop`` None means the speaker's own session address
    (``next-hop self``), which only makes sense for a prefix of the session's own family."""

    prefix: IPNetwork
    next_hop: IPAddress | None = None
    communities: frozenset[Community] = frozenset()

    def __post_init__(self) -> None:
        if self.next_hop is not None and self.next_hop.version != self.prefix.version:
            raise RouteError(
                f"route {self.prefix}: next hop {self.next_hop} is not IPv{self.prefix.version}"
            )

    @classmethod
    def of(
        cls,
        prefix: str,
        next_hop: str | None = None,
        communities: frozenset[Community] | set[Community] = frozenset(),
    ) -> Route:
        """A route from text (``198.19.0.5/32``, ``198.18.0.10``); RouteError when malformed."""
        try:
            network = ipaddress.ip_network(prefix)
            hop = ipaddress.ip_address(next_hop) if next_hop is not None else None
        except ValueError as exc:
            raise RouteError(f"route {prefix} via {next_hop}: {exc}") from None
        return cls(network, hop, frozenset(communities))

    @property
    def family(self) -> Family:
        return Family.of(self.prefix)

    def __str__(self) -> str:
        via = self.next_hop if self.next_hop is not None else "self"
        tags = (
            f" [{' '.join(str(c) for c in sorted(self.communities))}]" if self.communities else ""
        )
        return f"{self.prefix} via {via}{tags}"


def pod_route(address: IPAddress, node_address: IPAddress, *, no_export: bool) -> Route:
    """A pod's host route (/32 or /128) through its node. BGP networks tag it NO_EXPORT (the
    fabric's AS keeps it); GlobalBGP networks do not."""
    prefix = ipaddress.ip_network(f"{address}/{address.max_prefixlen}")
    return Route(prefix, node_address, frozenset({NO_EXPORT}) if no_export else frozenset())


@dataclasses.dataclass(frozen=True)
class Peer:
    """A BGP neighbour (the fabric's router) and how to talk to it.

    ``local_asn`` is the AS this side speaks as (a BGP Network's ``netID``). ``multihop``
    is the number of hops to an eBGP peer that is not on a directly connected segment (L3
    fabrics, a loopback peer address): it becomes the sessions' IP TTL; left out, an eBGP
    session is single-hop (TTL 1, as routers expect) and an iBGP one uses the kernel's TTL.
    ``local_address`` pins the session's source address (also what ``next-hop self``
    resolves to); left out, the kernel picks it from its routes. ``hold_time`` None keeps
    ExaBGP's default (180 s).
    """

    address: IPAddress
    asn: int
    local_asn: int
    password: str | None = None
    hold_time: int | None = None
    graceful_restart_seconds: int = DEFAULT_GRACEFUL_RESTART_SECONDS
    multihop: int | None = None
    local_address: IPAddress | None = None
    families: frozenset[Family] = frozenset({Family.IPV4, Family.IPV6})

    def __post_init__(self) -> None:
        problems = list(self._problems())
        if problems:
            raise PeerConfigError(f"BGP peer {self.address}: " + "; ".join(problems))

    def _problems(self) -> list[str]:
        found = []
        for name, asn in (("asn", self.asn), ("local_asn", self.local_asn)):
            if not 1 <= asn <= MAX_ASN:
                found.append(f"{name} {asn} is not an AS number (1-{MAX_ASN})")
        if self.hold_time is not None and not (
            self.hold_time == 0 or 3 <= self.hold_time <= MAX_HOLD_TIME
        ):
            found.append(f"hold_time {self.hold_time} must be 0 or 3-{MAX_HOLD_TIME} seconds")
        if not 0 <= self.graceful_restart_seconds <= MAX_GRACEFUL_RESTART_SECONDS:
            found.append(
                f"graceful_restart_seconds {self.graceful_restart_seconds} must be "
                f"0-{MAX_GRACEFUL_RESTART_SECONDS}"
            )
        if self.multihop is not None and not 1 <= self.multihop <= MAX_TTL:
            found.append(f"multihop {self.multihop} must be 1-{MAX_TTL} hops")
        if self.local_address is not None and self.local_address.version != self.address.version:
            found.append(f"local_address {self.local_address} is not IPv{self.address.version}")
        if not self.families:
            found.append("families is empty")
        if self.password is not None:
            found.extend(md5_password_problems(self.password))
        return found

    @property
    def ebgp(self) -> bool:
        return self.asn != self.local_asn

    @property
    def name(self) -> str:
        """The peer's key everywhere (logs, metrics labels, ExaBGP's neighbor selector)."""
        return str(self.address)


class SessionState(enum.Enum):
    """A peer's BGP finite-state machine state (RFC 4271), as ExaBGP reports it, plus
    ``STOPPED``: no ExaBGP is running to hold a session at all (starting, restarting)."""

    STOPPED = "Stopped"
    IDLE = "Idle"
    CONNECT = "Connect"
    ACTIVE = "Active"
    OPEN_SENT = "OpenSent"
    OPEN_CONFIRM = "OpenConfirm"
    ESTABLISHED = "Established"

    @classmethod
    def from_exabgp(cls, name: str) -> SessionState | None:
        """ExaBGP's FSM name (``OPENSENT``); None for a name it did not use before."""
        return _FROM_EXABGP.get(name.upper())


_FROM_EXABGP = {
    "IDLE": SessionState.IDLE,
    "CONNECT": SessionState.CONNECT,
    "ACTIVE": SessionState.ACTIVE,
    "OPENSENT": SessionState.OPEN_SENT,
    "OPENCONFIRM": SessionState.OPEN_CONFIRM,
    "ESTABLISHED": SessionState.ESTABLISHED,
}


@dataclasses.dataclass(frozen=True)
class PeerStatus:
    """What the manager writes on a Network's status for one peer.

    ``last_error`` is the latest reason ExaBGP gave for a session going down (a notification
    such as a bad peer AS, a refused connection, a hold timer expiry), kept after the session
    comes back so an operator sees what happened; ``routes`` counts the routes ExaBGP has
    acknowledged for this peer (held in its Adj-RIB-Out and sent whenever the session is up).
    """

    peer: str
    state: SessionState
    since: float
    """Wall-clock time (``time.time()``) the state was entered."""
    last_error: str | None
    routes: int
