"""API lines: batched by shared attributes, chunked, each naming its neighbour."""

from __future__ import annotations

import pytest

from hybridnet.bgp import commands
from hybridnet.bgp.commands import Kind
from hybridnet.bgp.model import NO_EXPORT, Community, Family, Route

PEER = "198.18.0.1"


def pods(count: int, next_hop: str = "198.18.0.11", tag: bool = True) -> list[Route]:
    return [
        Route.of(f"198.19.{i // 250}.{i % 250 + 1}/32", next_hop, {NO_EXPORT} if tag else set())
        for i in range(count)
    ]


def test_routes_sharing_attributes_go_in_one_line() -> None:
    (command,) = commands.announce(PEER, pods(3))
    assert command.line == (
        "neighbor 198.18.0.1 announce attributes next-hop 198.18.0.11 community [ 65535:65281 ] "
        "nlri 198.19.0.1/32 198.19.0.2/32 198.19.0.3/32"
    )
    assert command.kind is Kind.ANNOUNCE and command.peer == PEER
    assert dict(command.changes) == {route.prefix: route for route in pods(3)}


def test_different_next_hops_communities_and_families_get_their_own_lines() -> None:
    routes = [
        *pods(2),
        *pods(1, next_hop="198.18.0.12"),
        Route.of("198.19.9.9/32", "198.18.0.11"),
        Route.of("198.19.0.0/24"),
        Route.of("2001:db8:50::/64"),
        Route.of("2001:db8:50::5/128", "2001:db8::b", {Community(65010, 7), NO_EXPORT}),
    ]
    lines = sorted(c.line for c in commands.announce(PEER, routes))
    assert lines == sorted(
        [
            "neighbor 198.18.0.1 announce attributes next-hop 198.18.0.11 community "
            "[ 65535:65281 ] nlri 198.19.0.1/32 198.19.0.2/32",
            "neighbor 198.18.0.1 announce attributes next-hop 198.18.0.12 community "
            "[ 65535:65281 ] nlri 198.19.0.1/32",
            "neighbor 198.18.0.1 announce attributes next-hop 198.18.0.11 nlri 198.19.9.9/32",
            "neighbor 198.18.0.1 announce attributes next-hop self nlri 198.19.0.0/24",
            "neighbor 198.18.0.1 announce attributes next-hop self nlri 2001:db8:50::/64",
            "neighbor 198.18.0.1 announce attributes next-hop 2001:db8::b community "
            "[ 65010:7 65535:65281 ] nlri 2001:db8:50::5/128",
        ]
    )


def test_large_sets_are_chunked_per_command() -> None:
    batch = commands.announce(PEER, pods(2500))
    assert [len(c.changes) for c in batch] == [1000, 1000, 500]
    assert len(commands.announce(PEER, pods(10), per_command=3)) == 4
    with pytest.raises(ValueError, match="per_command 0"):
        commands.announce(PEER, pods(1), per_command=0)


def test_withdrawals_repeat_the_attributes_and_have_no_outcome() -> None:
    (command,) = commands.withdraw(PEER, pods(2))
    assert command.line.startswith(
        "neighbor 198.18.0.1 withdraw attributes next-hop 198.18.0.11 community [ 65535:65281 ]"
    )
    assert command.kind is Kind.WITHDRAW
    assert all(outcome is None for _, outcome in command.changes)
    assert commands.withdraw(PEER, []) == []


def test_end_of_rib_is_per_family_and_sent_alone() -> None:
    v4, v6 = commands.end_of_rib(PEER, Family.IPV4), commands.end_of_rib(PEER, Family.IPV6)
    assert v4.line == "neighbor 198.18.0.1 announce eor ipv4 unicast"
    assert v6.line == "neighbor 198.18.0.1 announce eor ipv6 unicast"
    assert v4.exclusive and not commands.announce(PEER, pods(1))[0].exclusive
