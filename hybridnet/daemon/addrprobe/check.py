"""Probe an address before a pod takes it, and announce it once the pod has it.

One probe is one window: ``probes`` probes for the address, spread evenly from its start, and,
until the gateway has answered, a request for the gateway's address with each of them; then
the window closes ``timeout`` seconds after it opened. A conflict ends it at once. Both
questions are asked in probe form (sender ``0.0.0.0`` / ``::``): hosts and routers answer that
form, since it is how they defend their own addresses, and nobody's neighbour table learns the
pod's address from a check that may yet fail.

The defaults (3 probes in 0.2 s) are far shorter than RFC 5227's (3 probes 1-2 s apart, then
2 s more: 4-7 s), because the window is the time a free address costs every ADD. On a
datacenter segment an ARP or NDP answer comes back within a millisecond, so 0.2 s is two
orders of magnitude of margin. What it gives up: a holder slower than the window (a host so
loaded it answers ARP late, a device that rate-limits ARP to the point of dropping all three
probes) is missed, and so is one that is down just then; a longer ``timeout`` narrows that at
the cost of ADD latency.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import logging
import time
from collections.abc import Callable
from typing import TypeVar

from hybridnet.daemon.addrprobe import frames
from hybridnet.daemon.addrprobe.errors import AddressInUse, GatewayUnreachable, IPAddress
from hybridnet.daemon.addrprobe.link import NEIGHBOR_DISCOVERY_FILTER, PacketLink, open_link
from hybridnet.daemon.addrprobe.verdict import (
    Conflict,
    GatewayAnswered,
    Verdict,
    judge_arp,
    judge_neighbor,
)
from hybridnet.logs import fields

log = logging.getLogger(__name__)
A = TypeVar("A", ipaddress.IPv4Address, ipaddress.IPv6Address)

DEFAULT_TIMEOUT = 0.2
DEFAULT_PROBES = 3
DEFAULT_ANNOUNCEMENTS = 2
"""RFC 5227's ANNOUNCE_NUM: a second copy covers one lost frame."""
DEFAULT_ANNOUNCE_INTERVAL = 0.02
"""RFC 5227 spaces them 2 s apart; ADD cannot wait that long, and a gap of a few ms already
moves the copy out of a burst of loss."""
MAX_SECONDS = 10.0
MAX_PACKETS = 10
IFNAMSIZ = 16


@dataclasses.dataclass(frozen=True)
class ProbeResult:
    """A probe that found the address free (and the gateway there, when one was given)."""

    address: IPAddress
    ifname: str
    mac: str
    """The interface's MAC, which the probes came from (and announcements will carry)."""
    gateway: IPAddress | None
    gateway_mac: str | None
    probes_sent: int
    elapsed: float
    """Seconds the probe took: about its timeout, since a free address is one nobody claimed
    until the window closed."""


Judge = Callable[[bytes, str], Verdict]
"""What a received frame means, given the MAC this host sends from."""


def probe_ipv4(
    ifname: str,
    address: ipaddress.IPv4Address | str,
    gateway: ipaddress.IPv4Address | str | None,
    *,
    timeout: float = DEFAULT_TIMEOUT,
    probes: int = DEFAULT_PROBES,
) -> ProbeResult:
    """Check with ARP that ``address`` is free on ``ifname`` and that ``gateway`` answers.

    Raises AddressInUse (naming the MAC that holds or claims it), GatewayUnreachable, or
    ProbeFailed when the check cannot run. ``gateway`` None skips the gateway check.
    """
    target = _parse(ipaddress.IPv4Address, "address", address)
    router = None if gateway is None else _parse(ipaddress.IPv4Address, "gateway", gateway)
    _check_probe(ifname, target, router, timeout, probes)

    def judge(frame: bytes, own_mac: str) -> Verdict:
        packet = frames.parse_arp(frame)
        return None if packet is None else judge_arp(packet, target, router, own_mac)

    with open_link(ifname, frames.ETH_P_ARP) as link:
        return _probe(
            link,
            address=target,
            gateway=router,
            address_probe=frames.arp_probe(link.mac, target),
            gateway_probe=None if router is None else frames.arp_probe(link.mac, router),
            judge=judge,
            timeout=timeout,
            probes=probes,
        )


def probe_ipv6(
    ifname: str,
    address: ipaddress.IPv6Address | str,
    gateway: ipaddress.IPv6Address | str | None,
    *,
    timeout: float = DEFAULT_TIMEOUT,
    probes: int = DEFAULT_PROBES,
) -> ProbeResult:
    """Check with duplicate address detection that ``address`` is free on ``ifname`` and that
    ``gateway`` answers a solicitation; raises like :func:`probe_ipv4`."""
    target = _parse(ipaddress.IPv6Address, "address", address)
    router = None if gateway is None else _parse(ipaddress.IPv6Address, "gateway", gateway)
    _check_probe(ifname, target, router, timeout, probes)

    def judge(frame: bytes, own_mac: str) -> Verdict:
        packet = frames.parse_neighbor(frame)
        return None if packet is None else judge_neighbor(packet, target, router, own_mac)

    with open_link(ifname, frames.ETH_P_IPV6, NEIGHBOR_DISCOVERY_FILTER) as link:
        # Answers to DAD go to all-nodes; another node's DAD for the address goes to its
        # solicited-node group, which this host has not joined (the address is not its own).
        link.join(frames.multicast_mac(frames.ALL_NODES))
        link.join(frames.multicast_mac(frames.solicited_node(target)))
        return _probe(
            link,
            address=target,
            gateway=router,
            address_probe=frames.dad_solicitation(link.mac, target),
            gateway_probe=None if router is None else frames.dad_solicitation(link.mac, router),
            judge=judge,
            timeout=timeout,
            probes=probes,
        )


def announce_ipv4(
    ifname: str,
    address: ipaddress.IPv4Address | str,
    *,
    count: int = DEFAULT_ANNOUNCEMENTS,
    interval: float = DEFAULT_ANNOUNCE_INTERVAL,
) -> str:
    """Send ``count`` gratuitous ARP requests (ARP Announcements) for ``address`` at the MAC of
    ``ifname``, so neighbours that cached another MAC for it move to this one. Returns that MAC.
    Call it once the pod's address answers through this interface."""
    target = _parse(ipaddress.IPv4Address, "address", address)
    _check_announcement(ifname, target, count, interval)
    return _announce(
        ifname, target, lambda mac: frames.arp_announcement(mac, target), count, interval
    )


def announce_ipv6(
    ifname: str,
    address: ipaddress.IPv6Address | str,
    *,
    count: int = DEFAULT_ANNOUNCEMENTS,
    interval: float = DEFAULT_ANNOUNCE_INTERVAL,
) -> str:
    """Send ``count`` unsolicited Neighbor Advertisements (Override set) of ``address`` at the
    MAC of ``ifname`` to all-nodes; like :func:`announce_ipv4`."""
    target = _parse(ipaddress.IPv6Address, "address", address)
    _check_announcement(ifname, target, count, interval)
    return _announce(
        ifname,
        target,
        lambda mac: frames.unsolicited_advertisement(mac, target),
        count,
        interval,
    )


def probe(
    ifname: str,
    address: IPAddress,
    gateway: IPAddress | None,
    *,
    timeout: float = DEFAULT_TIMEOUT,
    probes: int = DEFAULT_PROBES,
) -> ProbeResult:
    """:func:`probe_ipv4` or :func:`probe_ipv6`, by the address's family."""
    if isinstance(address, ipaddress.IPv4Address):
        if isinstance(gateway, ipaddress.IPv6Address):
            raise ValueError(f"gateway {gateway} is not IPv4 like {address}")
        return probe_ipv4(ifname, address, gateway, timeout=timeout, probes=probes)
    if isinstance(gateway, ipaddress.IPv4Address):
        raise ValueError(f"gateway {gateway} is not IPv6 like {address}")
    return probe_ipv6(ifname, address, gateway, timeout=timeout, probes=probes)


def announce(
    ifname: str,
    address: IPAddress,
    *,
    count: int = DEFAULT_ANNOUNCEMENTS,
    interval: float = DEFAULT_ANNOUNCE_INTERVAL,
) -> str:
    """:func:`announce_ipv4` or :func:`announce_ipv6`, by the address's family."""
    if isinstance(address, ipaddress.IPv4Address):
        return announce_ipv4(ifname, address, count=count, interval=interval)
    return announce_ipv6(ifname, address, count=count, interval=interval)


# --------------------------------------------------------------------------- the loops


def _probe(
    link: PacketLink,
    *,
    address: IPAddress,
    gateway: IPAddress | None,
    address_probe: bytes,
    gateway_probe: bytes | None,
    judge: Judge,
    timeout: float,
    probes: int,
) -> ProbeResult:
    started = time.monotonic()
    gateway_mac: str | None = None
    for index in range(probes):
        link.send(address_probe)
        if gateway_probe is not None and gateway_mac is None:
            link.send(gateway_probe)
        for frame in link.receive_until(started + (index + 1) * timeout / probes):
            verdict = judge(frame, link.mac)
            if isinstance(verdict, Conflict):
                log.warning(
                    "address in use on the segment",
                    extra=fields(
                        address=str(address),
                        ifname=link.ifname,
                        holder=verdict.mac,
                        evidence=verdict.evidence,
                    ),
                )
                raise AddressInUse(address, verdict.mac, link.ifname, verdict.evidence)
            if isinstance(verdict, GatewayAnswered) and gateway_mac is None:
                gateway_mac = verdict.mac
    elapsed = time.monotonic() - started
    if gateway is not None and gateway_mac is None:
        log.warning(
            "gateway does not answer",
            extra=fields(gateway=str(gateway), ifname=link.ifname, requests=probes, waited=elapsed),
        )
        raise GatewayUnreachable(gateway, link.ifname, probes, elapsed)
    log.debug(
        "address is free",
        extra=fields(
            address=str(address),
            ifname=link.ifname,
            gateway=str(gateway),
            gateway_mac=gateway_mac,
            elapsed=round(elapsed, 4),
        ),
    )
    return ProbeResult(address, link.ifname, link.mac, gateway, gateway_mac, probes, elapsed)


def _announce(
    ifname: str,
    address: IPAddress,
    build: Callable[[str], bytes],
    count: int,
    interval: float,
) -> str:
    with open_link(ifname, 0) as link:
        frame = build(link.mac)
        for index in range(count):
            if index:
                time.sleep(interval)
            link.send(frame)
        log.debug(
            "address announced",
            extra=fields(address=str(address), ifname=ifname, mac=link.mac, count=count),
        )
        return link.mac


def _parse(family: type[A], what: str, value: A | str) -> A:
    try:
        return family(value)
    except ValueError as exc:
        raise ValueError(f"{what} {value} is not an IPv{family(0).version} address") from exc


def _check_probe(
    ifname: str, address: IPAddress, gateway: IPAddress | None, timeout: float, probes: int
) -> None:
    """Refuse arguments no probe can mean (a caller's bug: ValueError, not a probe error)."""
    _check_target(ifname, address)
    if gateway is not None:
        _check_unicast("gateway", gateway)
        if gateway == address:
            raise ValueError(f"the address {address} cannot be its own gateway")
    if not 0 < timeout <= MAX_SECONDS:
        raise ValueError(f"timeout {timeout} s is outside (0, {MAX_SECONDS}]")
    _check_count("probes", probes)


def _check_announcement(ifname: str, address: IPAddress, count: int, interval: float) -> None:
    _check_target(ifname, address)
    _check_count("count", count)
    if not 0 <= interval <= MAX_SECONDS:
        raise ValueError(f"interval {interval} s is outside [0, {MAX_SECONDS}]")


def _check_target(ifname: str, address: IPAddress) -> None:
    if not ifname or len(ifname) >= IFNAMSIZ or "/" in ifname or any(c.isspace() for c in ifname):
        raise ValueError(f"{ifname!r} is not an interface name")
    _check_unicast("address", address)


def _check_unicast(what: str, value: IPAddress) -> None:
    limited_broadcast = value.version == 4 and value == ipaddress.IPv4Address("255.255.255.255")
    if value.is_multicast or value.is_unspecified or value.is_loopback or limited_broadcast:
        raise ValueError(f"{what} {value} is not a unicast address")


def _check_count(what: str, count: int) -> None:
    if not 1 <= count <= MAX_PACKETS:
        raise ValueError(f"{what} {count} is outside [1, {MAX_PACKETS}]")
