"""The lab's reading of BIRD (hybridnet/lab/bird.py), on output BIRD 2.0.12 printed here."""

from __future__ import annotations

from pathlib import Path

from hybridnet.lab.bird import Bird, BirdNeighbor, parse_protocol, parse_routes
from hybridnet.lab.netns import Namespace

ROUTES = """\
Table master4:
198.19.0.5/32        unicast [hn 12:41:03.125] * (100) [AS65010i]
\tvia 198.18.0.11 on eth0
\tType: BGP univ
\tBGP.origin: IGP
\tBGP.as_path: 65010
\tBGP.next_hop: 198.18.0.11
\tBGP.local_pref: 100
\tBGP.community: (65535,65281) (65010,7)
                     unicast [hn2 12:41:04.000] (100) [AS65010i]
\tvia 198.18.0.12 on eth0
\tBGP.next_hop: 198.18.0.12
198.19.0.0/24        unicast [hn 12:41:03.125] * (100) [AS65010i]
\tBGP.next_hop: 198.18.0.10

Table master6:
2001:db8:50::5/128   unicast [hn6 12:41:03.167 from 2001:db8::a] * (100) [AS65010i]
\tvia 2001:db8::b on eth0
\tBGP.next_hop: 2001:db8::b fe80::1
"""

PROTOCOL = """\
Name       Proto      Table      State  Since         Info
hn         BGP        ---        start  12:41:24.231  Active        Socket: Connection refused
  BGP state:          Active
    Neighbor address: 198.18.0.10
    Neighbor graceful restart active
    Restart timer:    293.000/-
    Last error:       Socket: Connection refused
"""


def test_routes_by_prefix_with_next_hops_and_communities() -> None:
    routes = parse_routes(ROUTES)
    assert sorted(routes) == ["198.19.0.0/24", "198.19.0.5/32", "2001:db8:50::5/128"]
    first, second = routes["198.19.0.5/32"]
    assert (first.protocol, first.next_hop) == ("hn", "198.18.0.11")
    assert first.communities == {(65535, 65281), (65010, 7)}
    assert (second.protocol, second.next_hop, second.communities) == (
        "hn2",
        "198.18.0.12",
        frozenset(),
    )
    (v6,) = routes["2001:db8:50::5/128"]
    assert (v6.protocol, v6.next_hop) == ("hn6", "2001:db8::b")


def test_protocol_state() -> None:
    protocol = parse_protocol("hn", PROTOCOL)
    assert protocol.state == "Active"
    assert protocol.graceful_restart_active
    assert protocol.last_error == "Socket: Connection refused"


def test_configuration(tmp_path: Path) -> None:
    bird = Bird(
        Namespace("hnt000000-gw"),
        tmp_path,
        router_id="198.18.0.1",
        asn=65000,
        neighbors=[BirdNeighbor("hn", "198.18.0.10", 65010, password="pw", multihop=True)],  # noqa: S106
        kernel_table=100,
    )
    text = bird.render()
    assert "router id 198.18.0.1;" in text
    assert "protocol bgp hn {\n  local as 65000;\n  neighbor 198.18.0.10 as 65010;\n" in text
    assert '  password "pw";\n  multihop;\n' in text
    assert "graceful restart on;" in text
    assert "kernel table 100;" in text


def test_a_neighbor_may_name_birds_own_address_for_its_session(tmp_path: Path) -> None:
    bird = Bird(
        Namespace("hnt000000-gw"),
        tmp_path,
        router_id="198.18.0.1",
        asn=65000,
        neighbors=[
            BirdNeighbor("v4", "198.18.0.10", 65010),
            BirdNeighbor("v6", "2001:db8::a", 65010, local_address="2001:db8::1"),
        ],
        local_address="198.18.0.1",
    )
    text = bird.render()
    assert "protocol bgp v4 {\n  local 198.18.0.1 as 65000;\n" in text
    assert "protocol bgp v6 {\n  local 2001:db8::1 as 65000;\n" in text
