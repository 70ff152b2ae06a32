"""ExaBGP's configuration and environment file, rendered from the peers: pure text, no I/O.

Choices made here, each against something ExaBGP 5.0 does by default:

* one ``process`` (the API relay, ``encoder json``: only the JSON encoder reports FSM state
  changes; the acknowledgements stay the plain words ``done``/``error``) that every neighbour
  reports its changes, FSM states and NOTIFICATIONs (sent and received: why a session was
  refused; its down events only say "closing connection") to;
* ``adj-rib-out true`` (ExaBGP keeps what it was told per neighbour, replays it when a
  session comes back, and does not send a route twice), ``group-updates true`` (routes with
  the same attributes share an UPDATE);
* ``manual-eor true``: after a restart the routes reach ExaBGP a moment after the session is
  up; an End-of-RIB sent at session start would make a graceful-restart helper (the fabric's
  router) flush the routes it kept, and the fabric would lose them until they are announced
  again. The speaker sends End-of-RIB itself once it has announced its whole set.
* environment: privileges are not dropped (ExaBGP would switch to ``nobody`` and then could
  not reach the relay's socket nor restart cleanly), nothing listens on port 179 (the speaker
  connects out; the router does not need to reach it), the CLI pipes are off, a dead relay
  is not respawned (the speaker restarts ExaBGP instead, with a known empty state), logging
  goes to stdout without colour at WARNING, and the reactor naps less between loops (its
  default of 10 ms per loop halves the throughput of a burst of routes).
"""

from __future__ import annotations

import dataclasses
import logging
import os
import pwd
from collections.abc import Iterable, Sequence

from hybridnet.bgp.errors import PeerConfigError
from hybridnet.bgp.model import IPAddress, Peer

PROCESS_NAME = "hybridnet"
"""The name of the API process in ExaBGP's configuration."""

DEFAULT_REACTOR_SPEED = 0.1
"""``exabgp.reactor.speed``: seconds per reactor loop budget; ExaBGP sleeps speed/100 when a
loop had nothing to do. 1.0 (its default) sleeps 10 ms; 0.1 sleeps 1 ms."""


@dataclasses.dataclass(frozen=True)
class EnvironmentSettings:
    """What hybridnet sets in ExaBGP's environment file."""

    user: str = dataclasses.field(default_factory=lambda: pwd.getpwuid(os.getuid()).pw_name)
    """The user ExaBGP stays (it does not drop privileges); the current user by default."""
    reactor_speed: float = DEFAULT_REACTOR_SPEED
    log_level: str = "WARNING"
    """ExaBGP's threshold (CRITICAL, ERROR, WARNING, INFO, DEBUG). ExaBGP's short log lines
    carry no level, so every line it writes is logged by hybridnet at this one."""

    def __post_init__(self) -> None:
        if self.log_level.upper() not in LOG_LEVELS:
            raise PeerConfigError(
                f"ExaBGP log level {self.log_level!r} is not one of {', '.join(LOG_LEVELS)}"
            )
        if not 0 < self.reactor_speed <= 10:
            raise PeerConfigError(f"reactor speed {self.reactor_speed} must be in (0, 10]")

    @property
    def python_log_level(self) -> int:
        return LOG_LEVELS[self.log_level.upper()]


LOG_LEVELS = {
    "CRITICAL": logging.CRITICAL,
    "ERROR": logging.ERROR,
    "WARNING": logging.WARNING,
    "INFO": logging.INFO,
    "DEBUG": logging.DEBUG,
}


def render_configuration(
    peers: Sequence[Peer], router_id: IPAddress, relay_command: Sequence[str]
) -> str:
    """ExaBGP's configuration: the API process running ``relay_command`` and one neighbour
    per peer. PeerConfigError when two peers share an address (ExaBGP keys them by it)."""
    if router_id.version != 4:
        raise PeerConfigError(f"router id {router_id} must be an IPv4 address")
    if not relay_command or not relay_command[0].startswith("/"):
        raise PeerConfigError(f"relay command {list(relay_command)} must start with a path")
    seen: set[IPAddress] = set()
    for peer in peers:
        if peer.address in seen:
            raise PeerConfigError(f"BGP peer {peer.address} is listed twice")
        seen.add(peer.address)
    blocks = [_process_block(relay_command)]
    blocks += [_neighbor_block(peer, router_id) for peer in peers]
    return "\n".join(blocks)


def _process_block(relay_command: Sequence[str]) -> str:
    run = " ".join(quote(arg) for arg in relay_command)
    return f"process {PROCESS_NAME} {{\n    run {run};\n    encoder json;\n}}\n"


def _neighbor_block(peer: Peer, router_id: IPAddress) -> str:
    lines = [
        f"router-id {router_id};",
        f"local-address {peer.local_address if peer.local_address else 'auto'};",
        f"local-as {peer.local_asn};",
        f"peer-as {peer.asn};",
    ]
    if peer.hold_time is not None:
        lines.append(f"hold-time {peer.hold_time};")
    if peer.password is not None:
        # md5-base64 false: the password is used as given, never decoded as base64 because it
        # happens to look like it.
        lines += [f"md5-password {quote(peer.password)};", "md5-base64 false;"]
    ttl = _outgoing_ttl(peer)
    if ttl is not None:
        lines.append(f"outgoing-ttl {ttl};")
    lines += ["adj-rib-out true;", "group-updates true;", "manual-eor true;"]
    if peer.graceful_restart_seconds:
        lines.append(f"capability {{ graceful-restart {peer.graceful_restart_seconds}; }}")
    ordered = sorted(peer.families, key=lambda family: family.value)
    families = " ".join(f"{family.exabgp};" for family in ordered)
    lines.append(f"family {{ {families} }}")
    notifications = "send { parsed; notification; } receive { parsed; notification; }"
    lines.append(f"api {{ processes [ {PROCESS_NAME} ]; neighbor-changes; fsm; {notifications} }}")
    body = "".join(f"    {line}\n" for line in lines)
    return f"neighbor {peer.address} {{\n{body}}}\n"


def _outgoing_ttl(peer: Peer) -> int | None:
    """eBGP is single-hop unless told otherwise (a router drops an eBGP OPEN that arrives
    with a TTL above 1 when it is not configured for multihop, so TTL 1 is what it expects);
    iBGP keeps the kernel's TTL."""
    if peer.multihop is not None:
        return peer.multihop
    return 1 if peer.ebgp else None


def quote(word: str) -> str:
    """A word for ExaBGP's tokeniser, in double quotes, its backslashes doubled (the tokeniser
    undoes backslash escapes before it splits words). Its quoting has no escape: a quote of
    either kind inside a quoted word starts a new quoted run, so such a word cannot be
    written at all."""
    if any(not (0x20 <= ord(ch) < 0x7F) for ch in word):
        raise PeerConfigError(f"{word!r}: only printable ASCII can be written for ExaBGP")
    if '"' in word or "'" in word:
        raise PeerConfigError(f"{word!r} holds a quote; ExaBGP's configuration cannot carry it")
    return '"' + word.replace("\\", "\\\\") + '"'


def render_environment(settings: EnvironmentSettings) -> str:
    """ExaBGP's environment file (INI), read through ``EXABGP_ENVFILE``."""
    sections: dict[str, dict[str, str]] = {
        "daemon": {
            "user": quote(settings.user),
            "drop": "false",
            "daemonize": "false",
            "pid": "''",
        },
        "log": {
            "destination": "stdout",
            "level": settings.log_level.upper(),
            "short": "true",
        },
        "tcp": {"bind": "''", "attempts": "0"},
        "api": {
            "ack": "true",
            "cli": "false",
            "respawn": "false",
            "terminate": "true",
        },
        "reactor": {"speed": repr(float(settings.reactor_speed))},
    }
    return "".join(_ini_section(f"exabgp.{name}", values) for name, values in sections.items())


def _ini_section(name: str, values: dict[str, str]) -> str:
    return f"[{name}]\n" + "".join(f"{key} = {value}\n" for key, value in values.items()) + "\n"


def scrubbed_environment(environ: Iterable[tuple[str, str]]) -> dict[str, str]:
    """The caller's environment without anything ExaBGP reads as a setting (``exabgp.*``,
    ``exabgp_*``, ``EXABGP_*``), which would otherwise override the rendered file."""
    return {
        key: value
        for key, value in environ
        if not (key.startswith(("exabgp.", "exabgp_")) or key.upper().startswith("EXABGP_"))
    }
