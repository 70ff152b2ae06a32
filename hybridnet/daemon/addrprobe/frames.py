"""The frames of the address check, built and parsed with scapy: the one module that imports it.

Every field is given explicitly: scapy fills a missing source address, MAC or route from its
global configuration, which it read once from the network namespace that imported it, and the
daemon's threads may be in another. Given every field, building and parsing only read scapy's
layer tables, which is safe from many threads at once.

What is sent (RFC 5227 for IPv4, RFC 4861/4862 for IPv6):

* ARP Probe: a broadcast ARP request with sender IP 0.0.0.0, target IP the address and target
  MAC zero. It asks "who has it?" without claiming it, so nobody learns anything from it.
* ARP Announcement (gratuitous ARP): a broadcast ARP *request* with sender IP = target IP = the
  address. See :func:`arp_announcement` for why the request form.
* DAD Neighbor Solicitation: from ``::`` to the address's solicited-node group, hop limit 255,
  no source link-layer option (RFC 4861 7.1.1 forbids one from ``::``). The holder of the
  address answers with an advertisement to all-nodes (RFC 4861 7.2.4).
* Unsolicited Neighbor Advertisement: from the address to all-nodes (``ff02::1``), hop limit
  255, Override set, Solicited and Router clear, with the target link-layer option.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import struct
from typing import Literal

from scapy.layers.inet6 import (
    ICMPv6ND_NA,
    ICMPv6ND_NS,
    ICMPv6NDOptDstLLAddr,
    ICMPv6NDOptSrcLLAddr,
    IPv6,
)
from scapy.layers.l2 import ARP, Ether
from scapy.packet import Packet

ETH_P_ARP = 0x0806
ETH_P_IPV6 = 0x86DD
BROADCAST_MAC = "ff:ff:ff:ff:ff:ff"
ZERO_MAC = "00:00:00:00:00:00"
UNSPECIFIED_V4 = ipaddress.IPv4Address("0.0.0.0")  # noqa: S104 - an ARP field, not a bind
UNSPECIFIED_V6 = ipaddress.IPv6Address("::")
ALL_NODES = ipaddress.IPv6Address("ff02::1")
SOLICITED_NODE_PREFIX = int(ipaddress.IPv6Address("ff02::1:ff00:0"))
ND_HOP_LIMIT = 255
"""RFC 4861: neighbor discovery is sent with, and accepted only with, hop limit 255."""
ARP_REQUEST, ARP_REPLY = 1, 2
ICMPV6 = 58
ND_SOLICITATION, ND_ADVERTISEMENT = 135, 136
ETHER_HEADER, IPV6_HEADER, ARP_IPV4 = 14, 40, 28
ND_MESSAGE_LENGTH = 24
"""ICMPv6 type, code, checksum, flags/reserved and the 16-byte target: options come after."""


# --------------------------------------------------------------------------- addresses


def solicited_node(address: ipaddress.IPv6Address) -> ipaddress.IPv6Address:
    """The solicited-node multicast group of ``address`` (RFC 4291 2.7.1)."""
    return ipaddress.IPv6Address(SOLICITED_NODE_PREFIX | (int(address) & 0xFFFFFF))


def multicast_mac(group: ipaddress.IPv6Address) -> str:
    """The Ethernet address an IPv6 multicast group is sent to (RFC 2464 7)."""
    low = group.packed[-4:]
    return "33:33:" + ":".join(f"{byte:02x}" for byte in low)


# --------------------------------------------------------------------------- building


def _arp(mac: str, sender: ipaddress.IPv4Address, target: ipaddress.IPv4Address) -> bytes:
    frame = Ether(src=mac, dst=BROADCAST_MAC, type=ETH_P_ARP) / ARP(
        hwtype=1,
        ptype=0x0800,
        hwlen=6,
        plen=4,
        op=ARP_REQUEST,
        hwsrc=mac,
        psrc=str(sender),
        hwdst=ZERO_MAC,
        pdst=str(target),
    )
    return bytes(frame)


def arp_probe(mac: str, address: ipaddress.IPv4Address) -> bytes:
    """An RFC 5227 ARP Probe for ``address`` from ``mac``."""
    return _arp(mac, UNSPECIFIED_V4, address)


def arp_announcement(mac: str, address: ipaddress.IPv4Address) -> bytes:
    """An RFC 5227 ARP Announcement of ``address`` at ``mac``, in the request form.

    Why a request and not a reply: RFC 5227 (3) defines the announcement as a request, which
    is what the Linux kernel and most hosts send; every ARP implementation processes broadcast
    requests, while a gratuitous *reply* is one that some stacks ignore when unsolicited, and
    Linux counts one as gratuitous only if its target MAC equals its sender's. Routers and
    switches that learn from gratuitous ARP (Linux with an existing entry, or with
    ``arp_accept``; the usual ToR switches) take either form, so one form suffices.
    """
    return _arp(mac, address, address)


def dad_solicitation(mac: str, target: ipaddress.IPv6Address) -> bytes:
    """A duplicate address detection NS for ``target``: from ``::``, no link-layer option."""
    group = solicited_node(target)
    frame = (
        Ether(src=mac, dst=multicast_mac(group), type=ETH_P_IPV6)
        / IPv6(src=str(UNSPECIFIED_V6), dst=str(group), nh=ICMPV6, hlim=ND_HOP_LIMIT)
        / ICMPv6ND_NS(code=0, res=0, tgt=str(target))
    )
    return bytes(frame)


def unsolicited_advertisement(mac: str, address: ipaddress.IPv6Address) -> bytes:
    """An unsolicited NA of ``address`` at ``mac`` to all-nodes, Override set (RFC 4861 7.2.6)."""
    frame = (
        Ether(src=mac, dst=multicast_mac(ALL_NODES), type=ETH_P_IPV6)
        / IPv6(src=str(address), dst=str(ALL_NODES), nh=ICMPV6, hlim=ND_HOP_LIMIT)
        / ICMPv6ND_NA(code=0, R=0, S=0, O=1, res=0, tgt=str(address))
        / ICMPv6NDOptDstLLAddr(lladdr=mac)
    )
    return bytes(frame)


# --------------------------------------------------------------------------- parsing


@dataclasses.dataclass(frozen=True)
class ArpPacket:
    """An Ethernet/IPv4 ARP request or reply as received."""

    op: int
    sender_mac: str
    sender_ip: ipaddress.IPv4Address
    target_ip: ipaddress.IPv4Address


@dataclasses.dataclass(frozen=True)
class NeighborPacket:
    """A valid Neighbor Solicitation or Advertisement as received.

    ``link_address`` is the source (NS) or target (NA) link-layer option, None when absent;
    ``ether_source`` is the frame's Ethernet source.
    """

    kind: Literal["solicitation", "advertisement"]
    ether_source: str
    source: ipaddress.IPv6Address
    target: ipaddress.IPv6Address
    link_address: str | None
    solicited: bool
    override: bool


def parse_arp(frame: bytes) -> ArpPacket | None:
    """The ARP packet in ``frame``, or None if it is not Ethernet/IPv4 ARP."""
    if len(frame) < ETHER_HEADER + ARP_IPV4:
        return None  # scapy raises on a frame shorter than the headers it expects
    packet = Ether(frame)
    if not packet.haslayer(ARP):
        return None
    arp = packet[ARP]
    if (arp.hwtype, arp.ptype, arp.hwlen, arp.plen) != (1, 0x0800, 6, 4):
        return None
    if arp.op not in (ARP_REQUEST, ARP_REPLY):
        return None
    return ArpPacket(
        op=int(arp.op),
        sender_mac=str(arp.hwsrc).lower(),
        sender_ip=ipaddress.IPv4Address(arp.psrc),
        target_ip=ipaddress.IPv4Address(arp.pdst),
    )


def parse_neighbor(frame: bytes) -> NeighborPacket | None:
    """The NS or NA in ``frame`` if it passes RFC 4861's validity checks (7.1.1, 7.1.2), else
    None: hop limit 255, code 0, a correct checksum, a unicast target, and the rules tied to an
    unspecified source (NS) or a multicast destination (NA)."""
    if len(frame) < ETHER_HEADER + IPV6_HEADER + ND_MESSAGE_LENGTH:
        return None  # scapy raises on a frame shorter than the headers it expects
    packet = Ether(frame)
    if not packet.haslayer(IPv6):
        return None
    ip6 = packet[IPv6]
    if ip6.nh != ICMPV6 or ip6.hlim != ND_HOP_LIMIT:
        return None
    message = packet.getlayer(ICMPv6ND_NS) or packet.getlayer(ICMPv6ND_NA)
    if message is None or message.code != 0 or ip6.plen < ND_MESSAGE_LENGTH:
        return None
    source, destination = ipaddress.IPv6Address(ip6.src), ipaddress.IPv6Address(ip6.dst)
    icmp = frame[ETHER_HEADER + IPV6_HEADER : ETHER_HEADER + IPV6_HEADER + ip6.plen]
    if len(icmp) != ip6.plen or icmpv6_checksum(source, destination, icmp) != 0:
        return None
    target = ipaddress.IPv6Address(message.tgt)
    if target.is_multicast:
        return None
    if isinstance(message, ICMPv6ND_NS):
        link_address = _option(message, ICMPv6NDOptSrcLLAddr)
        if source == UNSPECIFIED_V6 and (
            destination != solicited_node(target) or link_address is not None
        ):
            return None
        kind: Literal["solicitation", "advertisement"] = "solicitation"
        solicited = override = False
    else:
        link_address = _option(message, ICMPv6NDOptDstLLAddr)
        solicited, override = bool(message.S), bool(message.O)
        if destination.is_multicast and solicited:
            return None
        kind = "advertisement"
    return NeighborPacket(
        kind=kind,
        ether_source=str(packet[Ether].src).lower(),
        source=source,
        target=target,
        link_address=link_address,
        solicited=solicited,
        override=override,
    )


def icmpv6_checksum(
    source: ipaddress.IPv6Address, destination: ipaddress.IPv6Address, message: bytes
) -> int:
    """RFC 4443 2.3: the one's complement of the one's complement sum over the pseudo-header
    and ``message``. 0 for a message whose checksum field is right; for one whose checksum
    field is zero, the value that field must carry."""
    pseudo = source.packed + destination.packed + struct.pack("!I3xB", len(message), ICMPV6)
    data = pseudo + message + b"\0" * (len(message) % 2)
    total: int = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total > 0xFFFF:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def _option(message: Packet, option: type[Packet]) -> str | None:
    layer = message.getlayer(option)
    return None if layer is None else str(layer.lladdr).lower()
