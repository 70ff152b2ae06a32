"""Peers, routes and communities refuse what ExaBGP or the kernel could not take, naming it."""

from __future__ import annotations

import ipaddress
import re

import pytest

from hybridnet.api.validation import md5_password_problems
from hybridnet.bgp.errors import PeerConfigError, RouteError
from hybridnet.bgp.model import (
    NO_EXPORT,
    Community,
    Family,
    Peer,
    Route,
    SessionState,
    pod_route,
)

ROUTER = ipaddress.ip_address("198.18.0.1")


def test_a_peer_defaults_to_graceful_restart_300_and_both_families() -> None:
    peer = Peer(ROUTER, 65000, 65010)
    assert peer.graceful_restart_seconds == 300
    assert peer.families == {Family.IPV4, Family.IPV6}
    assert peer.ebgp and peer.name == "198.18.0.1"
    assert not Peer(ROUTER, 65010, 65010).ebgp


@pytest.mark.parametrize(
    ("options", "named"),
    [
        ({"asn": 0}, "asn 0 is not an AS number"),
        ({"asn": 2**32}, "asn 4294967296 is not an AS number"),
        ({"local_asn": 0}, "local_asn 0"),
        ({"hold_time": 2}, "hold_time 2 must be 0 or 3-65535"),
        ({"hold_time": 65536}, "hold_time 65536"),
        ({"graceful_restart_seconds": 4096}, "graceful_restart_seconds 4096 must be 0-4095"),
        ({"graceful_restart_seconds": -1}, "graceful_restart_seconds -1"),
        ({"multihop": 0}, "multihop 0 must be 1-255"),
        ({"multihop": 256}, "multihop 256"),
        (
            {"local_address": ipaddress.ip_address("2001:db8::a")},
            "local_address 2001:db8::a is not IPv4",
        ),
        ({"families": frozenset()}, "families is empty"),
        ({"password": ""}, "password is empty"),
        ({"password": "x" * 81}, "longer than 80 bytes"),
        ({"password": "tab\there"}, "printable ASCII"),
        ({"password": "caf\u00e9"}, "printable ASCII"),
        ({"password": 'say "hi"'}, "cannot hold a quote"),
        ({"password": "it's"}, "cannot hold a quote"),
    ],
)
def test_a_bad_peer_is_refused_naming_the_field(options: dict[str, object], named: str) -> None:
    fields: dict[str, object] = {"address": ROUTER, "asn": 65000, "local_asn": 65010}
    fields.update(options)
    with pytest.raises(PeerConfigError, match=r"BGP peer 198\.18\.0\.1: .*" + re.escape(named)):
        Peer(**fields)  # type: ignore[arg-type]


def test_every_problem_of_a_peer_is_named_at_once() -> None:
    with pytest.raises(PeerConfigError) as raised:
        Peer(ROUTER, 0, 65010, hold_time=1, multihop=0)
    assert str(raised.value).count(";") == 2


def test_a_password_with_spaces_and_punctuation_is_fine() -> None:
    assert md5_password_problems("a s3cret, with #;{ and \\") == []


def test_a_route_refuses_a_next_hop_of_another_family() -> None:
    with pytest.raises(RouteError, match=re.escape("next hop 198.18.0.10 is not IPv6")):
        Route.of("2001:db8::/64", "198.18.0.10")


def test_a_route_from_text_refuses_malformed_input() -> None:
    with pytest.raises(RouteError, match=re.escape("198.19.0.5/33")):
        Route.of("198.19.0.5/33", "198.18.0.10")
    with pytest.raises(RouteError, match="not-an-ip"):
        Route.of("198.19.0.0/24", "not-an-ip")
    with pytest.raises(RouteError):
        Route.of("198.19.0.1/24")  # host bits set: not a prefix


def test_routes_are_values_whatever_the_spelling() -> None:
    assert Route.of("2001:DB8::/64", "2001:db8::0a") == Route.of("2001:db8::/64", "2001:db8::a")
    assert len({Route.of("198.19.0.0/24"), Route.of("198.19.0.0/24")}) == 1
    assert str(Route.of("198.19.0.5/32", "198.18.0.11", {NO_EXPORT})) == (
        "198.19.0.5/32 via 198.18.0.11 [65535:65281]"
    )
    assert str(Route.of("198.19.0.0/24")) == "198.19.0.0/24 via self"


def test_pod_routes_are_host_routes_tagged_no_export_for_bgp_networks_only() -> None:
    node = ipaddress.ip_address("198.18.0.11")
    bgp = pod_route(ipaddress.ip_address("198.19.0.5"), node, no_export=True)
    assert str(bgp.prefix) == "198.19.0.5/32" and bgp.communities == {NO_EXPORT}
    assert pod_route(ipaddress.ip_address("198.19.0.5"), node, no_export=False).communities == set()
    v6 = pod_route(
        ipaddress.ip_address("2001:db8:50::5"), ipaddress.ip_address("2001:db8::b"), no_export=True
    )
    assert str(v6.prefix) == "2001:db8:50::5/128" and v6.family is Family.IPV6


def test_communities_are_two_16_bit_halves() -> None:
    assert str(NO_EXPORT) == "65535:65281"
    with pytest.raises(RouteError, match="65536:1"):
        Community(65536, 1)


def test_exabgp_fsm_names_map_to_rfc_4271_states() -> None:
    assert SessionState.from_exabgp("OPENSENT") is SessionState.OPEN_SENT
    assert SessionState.from_exabgp("ESTABLISHED") is SessionState.ESTABLISHED
    assert SessionState.from_exabgp("idle") is SessionState.IDLE
    assert SessionState.from_exabgp("SOMETHING NEW") is None
