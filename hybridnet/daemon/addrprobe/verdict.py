"""What one received ARP or neighbor discovery packet means for a probe: pure functions.

A probe watches two addresses: its own (``address``, which must turn out free) and the
gateway's (which must answer). Packets from ``own_mac`` are ours (our own probes, looped back
or sent by another probe of this node) and mean nothing.
"""

from __future__ import annotations

import dataclasses
import ipaddress

from hybridnet.daemon.addrprobe.frames import (
    ARP_REPLY,
    UNSPECIFIED_V4,
    UNSPECIFIED_V6,
    ArpPacket,
    NeighborPacket,
)


@dataclasses.dataclass(frozen=True)
class Conflict:
    """Another host holds or claims the probed address."""

    mac: str
    evidence: str
    """What it did, completing "<mac> ...": e.g. "answered an ARP probe for it"."""


@dataclasses.dataclass(frozen=True)
class GatewayAnswered:
    mac: str


Verdict = Conflict | GatewayAnswered | None


def judge_arp(
    packet: ArpPacket,
    address: ipaddress.IPv4Address,
    gateway: ipaddress.IPv4Address | None,
    own_mac: str,
) -> Verdict:
    """RFC 5227 2.1.1: any ARP packet whose sender IP is the address means another host uses
    it; an ARP Probe for it from another MAC means another host is claiming it right now. Any
    ARP packet whose sender IP is the gateway's shows the gateway is there."""
    if packet.sender_mac == own_mac:
        return None
    if packet.sender_ip == address:
        evidence = "answered an ARP probe for it" if packet.op == ARP_REPLY else "sends ARP from it"
        return Conflict(packet.sender_mac, evidence)
    if packet.sender_ip == UNSPECIFIED_V4 and packet.target_ip == address:
        return Conflict(packet.sender_mac, "is probing for it at the same time (ARP probe)")
    if gateway is not None and packet.sender_ip == gateway:
        return GatewayAnswered(packet.sender_mac)
    return None


def judge_neighbor(
    packet: NeighborPacket,
    address: ipaddress.IPv6Address,
    gateway: ipaddress.IPv6Address | None,
    own_mac: str,
) -> Verdict:
    """RFC 4862 5.4.3/5.4.4: an advertisement for the address means another node has it; a
    DAD solicitation (from ``::``) for it from another MAC means another node is claiming it
    now. An advertisement for the gateway's address shows the gateway is there.

    A solicitation for the address from a real source is only someone looking for it (a stale
    cache entry, say): that says nothing about who has it, and is not a conflict.
    """
    mac = packet.link_address or packet.ether_source
    if own_mac in (packet.ether_source, mac):
        return None
    if packet.kind == "advertisement":
        if packet.target == address:
            return Conflict(mac, "advertises it (neighbor advertisement)")
        if gateway is not None and packet.target == gateway:
            return GatewayAnswered(mac)
        return None
    if packet.target == address and packet.source == UNSPECIFIED_V6:
        return Conflict(mac, "is probing for it at the same time (duplicate address detection)")
    return None
