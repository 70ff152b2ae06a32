"""The address check's API without a kernel: argument checks, the errors' messages, and the
probe window's schedule, driven through a scripted stand-in for the packet socket (the real
socket is exercised in tests/netns/test_addrprobe.py)."""

from __future__ import annotations

import contextlib
import ipaddress
from collections.abc import Iterator

import pytest
from scapy.layers.inet6 import ICMPv6ND_NA, ICMPv6NDOptDstLLAddr, IPv6
from scapy.layers.l2 import ARP, Ether

from hybridnet.daemon import addrprobe
from hybridnet.daemon.addrprobe import check, frames

OWN, HOLDER, GATEWAY_MAC = "02:00:5e:10:00:01", "02:00:5e:10:00:02", "02:00:5e:10:00:fe"
V4, GW4 = ipaddress.IPv4Address("198.18.0.100"), ipaddress.IPv4Address("198.18.0.1")
V6, GW6 = ipaddress.IPv6Address("2001:db8::100"), ipaddress.IPv6Address("2001:db8::1")


def arp_reply(mac: str, sender: ipaddress.IPv4Address) -> bytes:
    return bytes(
        Ether(src=mac, dst=OWN) / ARP(op=2, hwsrc=mac, psrc=str(sender), hwdst=OWN, pdst="0.0.0.0")  # noqa: S104
    )


def advertisement(mac: str, target: ipaddress.IPv6Address) -> bytes:
    return bytes(
        Ether(src=mac, dst="33:33:00:00:00:01")
        / IPv6(src="fe80::2", dst="ff02::1", hlim=255)
        / ICMPv6ND_NA(R=0, S=0, O=1, tgt=str(target))
        / ICMPv6NDOptDstLLAddr(lladdr=mac)
    )


class ScriptedLink:
    """Stands in for PacketLink: records what is sent and joined, and hands the probe, on its
    n-th wait, the frames scripted for round n (without waiting: the deadlines are recorded)."""

    def __init__(self, rounds: list[list[bytes]]):
        self.ifname, self.mac = "eth0", OWN
        self.rounds = rounds
        self.sent: list[bytes] = []
        self.joined: list[str] = []
        self.deadlines: list[float] = []

    def send(self, frame: bytes) -> None:
        self.sent.append(frame)

    def join(self, multicast_mac: str) -> None:
        self.joined.append(multicast_mac)

    def receive_until(self, deadline: float) -> Iterator[bytes]:
        round_index = len(self.deadlines)
        self.deadlines.append(deadline)
        yield from self.rounds[round_index] if round_index < len(self.rounds) else []


@pytest.fixture
def script(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[ScriptedLink]]:
    """Probes open the ScriptedLink the test appends here instead of a packet socket."""
    links: list[ScriptedLink] = []

    @contextlib.contextmanager
    def open_link(ifname: str, ethertype: int, bpf: bytes | None = None) -> Iterator[ScriptedLink]:
        yield links[0]

    monkeypatch.setattr(check, "open_link", open_link)
    yield links


def test_free_address_the_gateway_is_asked_until_it_answers(script: list[ScriptedLink]) -> None:
    link = ScriptedLink([[arp_reply(GATEWAY_MAC, GW4)], [], []])
    script.append(link)
    result = addrprobe.probe_ipv4("eth0", V4, GW4, timeout=0.3, probes=3)
    assert result == addrprobe.ProbeResult(
        address=V4,
        ifname="eth0",
        mac=OWN,
        gateway=GW4,
        gateway_mac=GATEWAY_MAC,
        probes_sent=3,
        elapsed=result.elapsed,
    )
    probe, ask_gateway = frames.arp_probe(OWN, V4), frames.arp_probe(OWN, GW4)
    assert link.sent == [probe, ask_gateway, probe, probe]
    # The window: one wait per probe, evenly spread, the last ending at the timeout.
    offsets = [deadline - link.deadlines[0] for deadline in link.deadlines]
    assert offsets == pytest.approx([0.0, 0.1, 0.2])


def test_gateway_that_never_answers(script: list[ScriptedLink]) -> None:
    link = ScriptedLink([])
    script.append(link)
    with pytest.raises(addrprobe.GatewayUnreachable) as caught:
        addrprobe.probe_ipv4("eth0", V4, GW4, timeout=0.2, probes=2)
    assert (caught.value.gateway, caught.value.requests, caught.value.ifname) == (GW4, 2, "eth0")
    assert link.sent == [frames.arp_probe(OWN, V4), frames.arp_probe(OWN, GW4)] * 2


def test_conflict_ends_the_window_at_once(script: list[ScriptedLink]) -> None:
    link = ScriptedLink([[arp_reply(GATEWAY_MAC, GW4)], [arp_reply(HOLDER, V4)], []])
    script.append(link)
    with pytest.raises(addrprobe.AddressInUse) as caught:
        addrprobe.probe_ipv4("eth0", V4, GW4)
    assert (caught.value.address, caught.value.mac) == (V4, HOLDER)
    assert len(link.deadlines) == 2
    probe, ask_gateway = frames.arp_probe(OWN, V4), frames.arp_probe(OWN, GW4)
    assert link.sent == [probe, ask_gateway, probe]


def test_ipv6_joins_all_nodes_and_the_solicited_node_group(script: list[ScriptedLink]) -> None:
    link = ScriptedLink([[advertisement(GATEWAY_MAC, GW6)]])
    script.append(link)
    result = addrprobe.probe(link.ifname, V6, GW6)
    assert result.gateway_mac == GATEWAY_MAC
    assert link.joined == ["33:33:00:00:00:01", "33:33:ff:00:01:00"]
    assert link.sent[:2] == [frames.dad_solicitation(OWN, V6), frames.dad_solicitation(OWN, GW6)]
    assert len(link.sent) == 1 + 1 + (addrprobe.DEFAULT_PROBES - 1)


def test_ipv6_conflict_names_the_holder(script: list[ScriptedLink]) -> None:
    script.append(ScriptedLink([[advertisement(HOLDER, V6)]]))
    with pytest.raises(addrprobe.AddressInUse) as caught:
        addrprobe.probe_ipv6("eth0", V6, GW6)
    assert caught.value.mac == HOLDER


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: addrprobe.probe_ipv4("", V4, GW4), "is not an interface name"),
        (lambda: addrprobe.probe_ipv4("a" * 16, V4, GW4), "is not an interface name"),
        (lambda: addrprobe.probe_ipv4("eth0/1", V4, GW4), "is not an interface name"),
        (lambda: addrprobe.probe_ipv4("eth0", "224.0.0.5", GW4), "is not a unicast address"),
        (lambda: addrprobe.probe_ipv4("eth0", "255.255.255.255", None), "not a unicast"),
        (lambda: addrprobe.probe_ipv4("eth0", V4, "0.0.0.0"), "gateway 0.0.0.0 is not a unicast"),  # noqa: S104
        (lambda: addrprobe.probe_ipv6("eth0", "ff02::1", GW6), "is not a unicast address"),
        (lambda: addrprobe.probe_ipv6("eth0", "::1", None), "is not a unicast address"),
        (lambda: addrprobe.probe_ipv4("eth0", V4, V4), "cannot be its own gateway"),
        (lambda: addrprobe.probe_ipv4("eth0", V4, GW4, timeout=0), "timeout 0 s is outside"),
        (lambda: addrprobe.probe_ipv4("eth0", V4, GW4, timeout=11), "timeout 11 s is outside"),
        (lambda: addrprobe.probe_ipv4("eth0", V4, GW4, probes=0), "probes 0 is outside"),
        (lambda: addrprobe.probe_ipv6("eth0", V6, GW6, probes=11), "probes 11 is outside"),
        (
            lambda: addrprobe.probe_ipv4("eth0", "2001:db8::1", None),
            "address 2001:db8::1 is not an IPv4 address",
        ),
        (lambda: addrprobe.probe_ipv6("eth0", V6, "x"), "gateway x is not an IPv6 address"),
        (lambda: addrprobe.probe("eth0", V4, GW6), "gateway 2001:db8::1 is not IPv4"),
        (lambda: addrprobe.probe("eth0", V6, GW4), "gateway 198.18.0.1 is not IPv6"),
        (lambda: addrprobe.announce_ipv4("eth0", V4, count=0), "count 0 is outside"),
        (lambda: addrprobe.announce_ipv6("eth0", V6, interval=-1), "interval -1 s is outside"),
        (lambda: addrprobe.announce("eth0", ipaddress.IPv6Address("ff02::2")), "not a unicast"),
    ],
)
def test_arguments_no_probe_can_mean(call: object, message: str) -> None:
    """A caller's bug, refused before any socket is opened (so this runs without root)."""
    assert callable(call)
    with pytest.raises(ValueError, match=message):
        call()


def test_messages_say_what_was_seen_and_where_to_look() -> None:
    in_use = addrprobe.AddressInUse(V4, HOLDER, "eth0.100", "answered an ARP probe for it")
    assert str(in_use) == (
        f"address 198.18.0.100 is already in use on eth0.100: {HOLDER} answered an ARP probe "
        "for it; find the host with that MAC, or take the address out of the pool"
    )
    assert (in_use.address, in_use.mac, in_use.ifname) == (V4, HOLDER, "eth0.100")
    assert str(addrprobe.GatewayUnreachable(GW6, "eth0", 3, 0.2)) == (
        "gateway 2001:db8::1 does not answer on eth0: no neighbor discovery reply to 3 "
        "request(s) in 0.20 s; check the subnet's gateway address and that eth0 is on the "
        "gateway's VLAN"
    )
    failed = addrprobe.ProbeFailed("eth9", "there is no such interface in this network namespace")
    assert str(failed) == (
        "cannot check addresses on eth9: there is no such interface in this network namespace"
    )
    for error in (in_use, failed, addrprobe.GatewayUnreachable(GW4, "eth0", 3, 0.2)):
        assert isinstance(error, addrprobe.AddressCheckError)
