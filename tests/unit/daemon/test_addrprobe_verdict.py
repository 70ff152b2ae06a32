"""What a received packet means for a probe (RFC 5227 2.1.1, RFC 4862 5.4.3-5.4.4): who holds
or claims the address, whether the gateway answered, and what is only noise."""

from __future__ import annotations

import ipaddress
from typing import Literal

import pytest

from hybridnet.daemon.addrprobe.frames import ArpPacket, NeighborPacket
from hybridnet.daemon.addrprobe.verdict import (
    Conflict,
    GatewayAnswered,
    Verdict,
    judge_arp,
    judge_neighbor,
)

OWN, OTHER, GATEWAY_MAC = "02:00:5e:10:00:01", "02:00:5e:10:00:02", "02:00:5e:10:00:fe"
V4, GW4 = ipaddress.IPv4Address("198.18.0.100"), ipaddress.IPv4Address("198.18.0.1")
ZERO4 = ipaddress.IPv4Address(0)
V6, GW6 = ipaddress.IPv6Address("2001:db8::100"), ipaddress.IPv6Address("2001:db8::1")
ZERO6 = ipaddress.IPv6Address("::")


def arp(
    op: int, sender_mac: str, sender: ipaddress.IPv4Address, target: ipaddress.IPv4Address
) -> ArpPacket:
    return ArpPacket(op=op, sender_mac=sender_mac, sender_ip=sender, target_ip=target)


@pytest.mark.parametrize(
    ("packet", "verdict"),
    [
        pytest.param(
            arp(2, OTHER, V4, ZERO4),
            Conflict(OTHER, "answered an ARP probe for it"),
            id="a reply from the address",
        ),
        pytest.param(
            arp(1, OTHER, V4, GW4),
            Conflict(OTHER, "sends ARP from it"),
            id="a request from the address (its holder resolving someone)",
        ),
        pytest.param(
            arp(1, OTHER, ZERO4, V4),
            Conflict(OTHER, "is probing for it at the same time (ARP probe)"),
            id="another host's probe for it",
        ),
        pytest.param(arp(1, OWN, ZERO4, V4), None, id="our own probe"),
        pytest.param(arp(1, OWN, V4, V4), None, id="our own announcement"),
        pytest.param(
            arp(1, OTHER, ipaddress.IPv4Address("198.18.0.7"), V4),
            None,
            id="someone resolving the address (not its holder)",
        ),
        pytest.param(
            arp(2, GATEWAY_MAC, GW4, ZERO4), GatewayAnswered(GATEWAY_MAC), id="the gateway"
        ),
        pytest.param(
            arp(1, GATEWAY_MAC, GW4, ipaddress.IPv4Address("198.18.0.7")),
            GatewayAnswered(GATEWAY_MAC),
            id="the gateway resolving another host",
        ),
        pytest.param(
            arp(2, OTHER, ipaddress.IPv4Address("198.18.0.7"), ZERO4), None, id="unrelated"
        ),
    ],
)
def test_arp(packet: ArpPacket, verdict: Verdict) -> None:
    assert judge_arp(packet, V4, GW4, OWN) == verdict


def test_arp_without_a_gateway_to_check() -> None:
    assert judge_arp(arp(2, GATEWAY_MAC, GW4, ZERO4), V4, None, OWN) is None


def nd(
    kind: Literal["solicitation", "advertisement"],
    source: ipaddress.IPv6Address,
    target: ipaddress.IPv6Address,
    ether_source: str = OTHER,
    link_address: str | None = None,
) -> NeighborPacket:
    return NeighborPacket(
        kind=kind,
        ether_source=ether_source,
        source=source,
        target=target,
        link_address=link_address,
        solicited=False,
        override=kind == "advertisement",
    )


FE80 = ipaddress.IPv6Address("fe80::2")


@pytest.mark.parametrize(
    ("packet", "verdict"),
    [
        pytest.param(
            nd("advertisement", FE80, V6, link_address=OTHER),
            Conflict(OTHER, "advertises it (neighbor advertisement)"),
            id="an advertisement of the address",
        ),
        pytest.param(
            nd("advertisement", FE80, V6, ether_source=GATEWAY_MAC, link_address=OTHER),
            Conflict(OTHER, "advertises it (neighbor advertisement)"),
            id="the link-layer option names the holder, not the frame's sender (a proxy)",
        ),
        pytest.param(
            nd("advertisement", FE80, V6),
            Conflict(OTHER, "advertises it (neighbor advertisement)"),
            id="without a link-layer option: the frame's sender",
        ),
        pytest.param(
            nd("solicitation", ZERO6, V6),
            Conflict(OTHER, "is probing for it at the same time (duplicate address detection)"),
            id="another node's DAD for it",
        ),
        pytest.param(nd("solicitation", ZERO6, V6, ether_source=OWN), None, id="our own DAD"),
        pytest.param(
            nd("advertisement", V6, V6, ether_source=OWN, link_address=OWN),
            None,
            id="our own announcement",
        ),
        pytest.param(
            nd("solicitation", GW6, V6, link_address=OTHER),
            None,
            id="someone resolving the address (not its holder)",
        ),
        pytest.param(
            nd("advertisement", FE80, GW6, ether_source=GATEWAY_MAC, link_address=GATEWAY_MAC),
            GatewayAnswered(GATEWAY_MAC),
            id="the gateway",
        ),
        pytest.param(
            nd("solicitation", ZERO6, GW6), None, id="a DAD for the gateway is not its answer"
        ),
        pytest.param(
            nd("advertisement", FE80, ipaddress.IPv6Address("2001:db8::7")), None, id="unrelated"
        ),
    ],
)
def test_neighbor(packet: NeighborPacket, verdict: Verdict) -> None:
    assert judge_neighbor(packet, V6, GW6, OWN) == verdict
