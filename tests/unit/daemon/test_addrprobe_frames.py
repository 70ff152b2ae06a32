"""The address check's frames, byte by byte against RFC 5227 (ARP probe and announcement) and
RFC 4861/4862 (DAD solicitation, unsolicited advertisement), and the parsers' validity rules.

Expected frames are laid out here with ``struct`` from the RFCs' field tables, not with scapy,
so the check does not grade scapy with scapy.
"""

from __future__ import annotations

import ipaddress
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hybridnet.daemon.addrprobe import frames
from hybridnet.daemon.addrprobe.frames import ArpPacket, NeighborPacket

MAC = "02:00:5e:10:00:01"
OTHER = "02:00:5e:10:00:02"
V4 = ipaddress.IPv4Address("198.18.0.100")
V6 = ipaddress.IPv6Address("2001:db8::1:2:3")
UNSPECIFIED = str(ipaddress.IPv4Address(0))


def mac(text: str) -> bytes:
    return bytes.fromhex(text.replace(":", ""))


def ethernet(destination: str, source: str, ethertype: int) -> bytes:
    return mac(destination) + mac(source) + struct.pack("!H", ethertype)


def arp(op: int, sender_mac: str, sender: str, target_mac: str, target: str) -> bytes:
    """RFC 826's packet for Ethernet and IPv4."""
    return struct.pack("!HHBBH", 1, 0x0800, 6, 4, op) + b"".join(
        [
            mac(sender_mac),
            ipaddress.IPv4Address(sender).packed,
            mac(target_mac),
            ipaddress.IPv4Address(target).packed,
        ]
    )


def ones_complement_sum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total = 0
    for index in range(0, len(data), 2):
        total += int.from_bytes(data[index : index + 2], "big")
        total = (total & 0xFFFF) + (total >> 16)
    return total


def pseudo_header(source: str, destination: str, length: int) -> bytes:
    """RFC 8200 8.1: source, destination, upper-layer length, three zero bytes, next header."""
    return (
        ipaddress.IPv6Address(source).packed
        + ipaddress.IPv6Address(destination).packed
        + length.to_bytes(4, "big")
        + b"\0\0\0\x3a"
    )


def ipv6_icmp(
    source: str, destination: str, message: bytes, *, hop_limit: int = 255, checksum: bool = True
) -> bytes:
    """An IPv6 header and ``message`` (its checksum field zero), the checksum filled in."""
    if checksum:
        value = ~ones_complement_sum(pseudo_header(source, destination, len(message)) + message)
        message = message[:2] + struct.pack("!H", value & 0xFFFF) + message[4:]
    header = struct.pack("!IHBB", 6 << 28, len(message), 58, hop_limit)
    return (
        header
        + ipaddress.IPv6Address(source).packed
        + ipaddress.IPv6Address(destination).packed
        + message
    )


def nd_message(kind: int, flags: int, target: str, options: bytes = b"", code: int = 0) -> bytes:
    """RFC 4861 4.3/4.4: type, code, checksum (zero here), 32 bits of flags/reserved, target."""
    return (
        struct.pack("!BBHI", kind, code, 0, flags << 24)
        + ipaddress.IPv6Address(target).packed
        + options
    )


def link_option(kind: int, address: str) -> bytes:
    """RFC 4861 4.6.1: type 1 (source) or 2 (target), length 1 (8 bytes), the MAC."""
    return bytes([kind, 1]) + mac(address)


# --------------------------------------------------------------------------- what is sent


def test_arp_probe_is_rfc5227s() -> None:
    """RFC 5227 2.1.1: a request, sender IP all zero, target MAC zero, target IP the address."""
    expected = ethernet("ff:ff:ff:ff:ff:ff", MAC, 0x0806) + arp(
        1, MAC, UNSPECIFIED, "00:00:00:00:00:00", str(V4)
    )
    assert frames.arp_probe(MAC, V4) == expected


def test_arp_announcement_is_rfc5227s() -> None:
    """RFC 5227 2.3: like a probe, but sender and target IP both the address, broadcast."""
    expected = ethernet("ff:ff:ff:ff:ff:ff", MAC, 0x0806) + arp(
        1, MAC, str(V4), "00:00:00:00:00:00", str(V4)
    )
    assert frames.arp_announcement(MAC, V4) == expected


def test_dad_solicitation_is_rfc4862s() -> None:
    """RFC 4862 5.4.2: from ::, to the target's solicited-node group (ff02::1:ff + its low 24
    bits, on MAC 33:33 + the group's low 32 bits), hop limit 255, no source link-layer option
    (RFC 4861 7.1.1), reserved field zero."""
    group = "ff02::1:ff02:3"
    expected = ethernet("33:33:ff:02:00:03", MAC, 0x86DD) + ipv6_icmp(
        "::", group, nd_message(135, 0, str(V6))
    )
    assert frames.dad_solicitation(MAC, V6) == expected


def test_unsolicited_advertisement_is_rfc4861s() -> None:
    """RFC 4861 7.2.6: from the address to all-nodes, hop limit 255, Override set, Solicited and
    Router clear, the target link-layer option carrying the announcer's MAC."""
    address = "2001:db8::5"
    override = 0x20
    expected = ethernet("33:33:00:00:00:01", MAC, 0x86DD) + ipv6_icmp(
        address, "ff02::1", nd_message(136, override, address, link_option(2, MAC))
    )
    assert frames.unsolicited_advertisement(MAC, ipaddress.IPv6Address(address)) == expected


@pytest.mark.parametrize(
    ("address", "group", "multicast_mac"),
    [
        ("2001:db8::1:2:3", "ff02::1:ff02:3", "33:33:ff:02:00:03"),
        ("2001:db8::abcd:ef12:3456", "ff02::1:ff12:3456", "33:33:ff:12:34:56"),
        ("fe80::1", "ff02::1:ff00:1", "33:33:ff:00:00:01"),
    ],
)
def test_solicited_node_group_and_its_mac(address: str, group: str, multicast_mac: str) -> None:
    solicited = frames.solicited_node(ipaddress.IPv6Address(address))
    assert solicited == ipaddress.IPv6Address(group)
    assert frames.multicast_mac(solicited) == multicast_mac


def test_checksum_of_a_message_is_the_value_that_makes_it_sum_to_zero() -> None:
    source, destination = ipaddress.IPv6Address("2001:db8::5"), frames.ALL_NODES
    message = nd_message(136, 0x20, "2001:db8::5", link_option(2, MAC))
    value = frames.icmpv6_checksum(source, destination, message)
    filled = message[:2] + struct.pack("!H", value) + message[4:]
    assert (
        ones_complement_sum(pseudo_header(str(source), "ff02::1", len(filled)) + filled) == 0xFFFF
    )
    assert frames.icmpv6_checksum(source, destination, filled) == 0


# --------------------------------------------------------------------------- what is received


def test_parses_an_arp_reply_to_a_probe() -> None:
    """Linux answers a probe to the prober's MAC with target IP 0.0.0.0."""
    frame = ethernet(MAC, OTHER, 0x0806) + arp(2, OTHER, str(V4), MAC, UNSPECIFIED)
    assert frames.parse_arp(frame + b"\0" * 18) == ArpPacket(  # Ethernet pads to 60 bytes
        op=2, sender_mac=OTHER, sender_ip=V4, target_ip=ipaddress.IPv4Address(0)
    )


@pytest.mark.parametrize(
    "frame",
    [
        pytest.param(ethernet(MAC, OTHER, 0x0800) + b"\x45" + b"\0" * 40, id="IPv4 not ARP"),
        pytest.param(
            ethernet(MAC, OTHER, 0x0806) + struct.pack("!HHBBH", 1, 0x86DD, 6, 16, 1) + b"\0" * 44,
            id="ARP for another protocol",
        ),
        pytest.param(
            ethernet(MAC, OTHER, 0x0806) + arp(3, OTHER, str(V4), MAC, UNSPECIFIED), id="RARP op"
        ),
    ],
)
def test_arp_parser_refuses(frame: bytes) -> None:
    assert frames.parse_arp(frame) is None


def test_parses_a_defending_advertisement() -> None:
    """The holder's answer to DAD: to all-nodes, Solicited clear, Override set, its MAC."""
    frame = ethernet("33:33:00:00:00:01", OTHER, 0x86DD) + ipv6_icmp(
        "fe80::2", "ff02::1", nd_message(136, 0x20, str(V6), link_option(2, OTHER))
    )
    assert frames.parse_neighbor(frame) == NeighborPacket(
        kind="advertisement",
        ether_source=OTHER,
        source=ipaddress.IPv6Address("fe80::2"),
        target=V6,
        link_address=OTHER,
        solicited=False,
        override=True,
    )


def test_parses_a_dad_solicitation_from_another_node() -> None:
    frame = ethernet("33:33:ff:02:00:03", OTHER, 0x86DD) + ipv6_icmp(
        "::", "ff02::1:ff02:3", nd_message(135, 0, str(V6))
    )
    assert frames.parse_neighbor(frame) == NeighborPacket(
        kind="solicitation",
        ether_source=OTHER,
        source=ipaddress.IPv6Address("::"),
        target=V6,
        link_address=None,
        solicited=False,
        override=False,
    )


def defending(
    *,
    hop_limit: int = 255,
    code: int = 0,
    checksum: bool = True,
    target: str = str(V6),
    flags: int = 0x20,
) -> bytes:
    """A defending NA as the holder sends it; each keyword can make it invalid."""
    message = nd_message(136, flags, target, link_option(2, OTHER), code=code)
    return ethernet("33:33:00:00:00:01", OTHER, 0x86DD) + ipv6_icmp(
        "fe80::2", "ff02::1", message, hop_limit=hop_limit, checksum=checksum
    )


@pytest.mark.parametrize(
    "frame",
    [
        pytest.param(defending(hop_limit=64), id="hop limit not 255 (routed from elsewhere)"),
        pytest.param(defending(code=1), id="ICMP code not 0"),
        pytest.param(defending(checksum=False), id="wrong checksum"),
        pytest.param(defending(target="ff02::1"), id="multicast target"),
        pytest.param(defending(flags=0x60), id="Solicited set on a multicast advertisement"),
        pytest.param(defending()[:-9], id="shorter than its payload length"),
        pytest.param(
            ethernet("33:33:ff:02:00:03", OTHER, 0x86DD)
            + ipv6_icmp("::", "ff02::1:ff02:3", nd_message(135, 0, str(V6), link_option(1, OTHER))),
            id="DAD solicitation with a source link-layer option",
        ),
        pytest.param(
            ethernet("33:33:00:00:00:01", OTHER, 0x86DD)
            + ipv6_icmp("::", "ff02::1", nd_message(135, 0, str(V6))),
            id="DAD solicitation not to the solicited-node group",
        ),
        pytest.param(
            ethernet("33:33:00:00:00:01", OTHER, 0x86DD)
            + ipv6_icmp("fe80::2", "ff02::1", struct.pack("!BBHHH", 128, 0, 0, 1, 1)),
            id="echo request, not neighbor discovery",
        ),
    ],
)
def test_neighbor_parser_refuses_what_rfc4861_says_to_discard(frame: bytes) -> None:
    assert frames.parse_neighbor(frame) is None


@given(st.binary(max_size=128))
def test_parsers_never_raise_on_garbage(frame: bytes) -> None:
    """A frame off the wire is whatever another host sent: the parsers answer None or a
    packet, and never raise."""
    arp_packet = frames.parse_arp(frame)
    assert arp_packet is None or isinstance(arp_packet, ArpPacket)
    neighbor_packet = frames.parse_neighbor(frame)
    assert neighbor_packet is None or isinstance(neighbor_packet, NeighborPacket)


@given(st.integers(min_value=0, max_value=len(defending()) - 1))
def test_truncated_frames_are_refused(length: int) -> None:
    assert frames.parse_arp(frames.arp_probe(MAC, V4)[: min(length, 41)]) is None
    assert frames.parse_neighbor(defending()[:length]) is None


ICMP_START = 14 + 40


@given(
    st.integers(min_value=ICMP_START, max_value=len(defending()) - 1),
    st.integers(min_value=1, max_value=255),
)
def test_any_corrupted_byte_of_a_neighbor_message_is_refused(offset: int, flip: int) -> None:
    """The checksum covers the whole message: one byte changed in it never passes."""
    frame = bytearray(defending())
    frame[offset] ^= flip
    assert frames.parse_neighbor(bytes(frame)) is None
