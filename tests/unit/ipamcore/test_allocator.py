"""Allocator decisions: subnet choice, families, fixed addresses, MACs, restore and release."""

from __future__ import annotations

import random
import re
import tracemalloc

import pytest

from hybridnet.ipamcore.allocator import Allocator, Request, SubnetConfig
from hybridnet.ipamcore.errors import (
    AddressUnavailable,
    InvalidRequest,
    NoSuchNetwork,
    NoSuchSubnet,
    SubnetExhausted,
)
from hybridnet.ipamcore.pool import RangeSpec


def subnet(
    name: str,
    cidr: str,
    network: str = "net",
    *,
    gateway: str | None = None,
    reserved: tuple[str, ...] = (),
    excluded: tuple[str, ...] = (),
    private: bool = False,
) -> SubnetConfig:
    spec = RangeSpec(
        cidr=cidr, gateway=gateway, reserved=frozenset(reserved), excluded=frozenset(excluded)
    )
    return SubnetConfig(name=name, network=network, range=spec, private=private)


@pytest.fixture
def allocator() -> Allocator:
    alloc = Allocator(random.Random(7))
    alloc.set_network("net", net_id=100)
    alloc.set_subnet(subnet("a", "198.19.0.0/30", gateway="198.19.0.1"))  # one free: .2
    alloc.set_subnet(subnet("b", "198.19.1.0/29", gateway="198.19.1.1"))
    alloc.set_subnet(subnet("p", "198.19.2.0/24", private=True))
    alloc.set_subnet(subnet("v6", "2001:db8:1::/64", gateway="2001:db8:1::1"))
    return alloc


def test_a_network_stays_on_one_subnet_until_it_is_full(allocator: Allocator) -> None:
    first = allocator.allocate(Request("ns/p1", "net"))[0]
    assert (first.subnet, first.address) == ("a", "198.19.0.2")
    assert first.cidr == "198.19.0.2/30" and first.gateway == "198.19.0.1"
    assert first.net_id == 100
    second = allocator.allocate(Request("ns/p2", "net"))[0]
    assert second.subnet == "b"
    allocator.release("a", "198.19.0.2")
    third = allocator.allocate(Request("ns/p3", "net"))[0]
    assert third.subnet == "b", "sticky: b is not full, so the freed address in a waits"
    assert allocator.sticky_subnet("net", 4) == "b"


def test_private_subnets_only_when_named(allocator: Allocator) -> None:
    for index in range(6):
        assert allocator.allocate(Request(f"ns/p{index}", "net"))[0].subnet in {"a", "b"}
    with pytest.raises(SubnetExhausted, match="every IPv4 subnet of network net is full"):
        allocator.allocate(Request("ns/full", "net"))
    named = allocator.allocate(Request("ns/named", "net", subnets={4: "p"}))[0]
    assert named.subnet == "p"


def test_named_subnet_errors(allocator: Allocator) -> None:
    allocator.set_network("other")
    allocator.set_subnet(subnet("o", "198.19.9.0/24", network="other"))
    with pytest.raises(NoSuchSubnet):
        allocator.allocate(Request("ns/x", "net", subnets={4: "nope"}))
    with pytest.raises(InvalidRequest, match="belongs to network other"):
        allocator.allocate(Request("ns/x", "net", subnets={4: "o"}))
    with pytest.raises(InvalidRequest, match="is IPv6, not IPv4"):
        allocator.allocate(Request("ns/x", "net", subnets={4: "v6"}))
    with pytest.raises(NoSuchNetwork):
        allocator.allocate(Request("ns/x", "ghost"))


def test_dual_stack_gets_both_families_with_one_mac(allocator: Allocator) -> None:
    v4, v6 = allocator.allocate(Request("ns/ds", "net", family="DualStack"))
    assert (v4.version, v6.version) == (4, 6)
    assert v6.address == "2001:db8:1::2"
    assert v4.mac == v6.mac


def test_dual_stack_is_all_or_nothing(allocator: Allocator) -> None:
    allocator.set_network("v4only")
    allocator.set_subnet(subnet("only4", "198.19.5.0/24", network="v4only"))
    with pytest.raises(NoSuchSubnet, match="no public IPv6 subnet"):
        allocator.allocate(Request("ns/ds", "v4only", family="DualStack"))
    assert allocator.pool("only4").used_count == 0
    assert allocator.pool("only4").last_allocated is None


def test_fixed_addresses_may_be_reserved_but_never_excluded_or_the_gateway() -> None:
    alloc = Allocator(random.Random(1))
    alloc.set_network("net")
    alloc.set_subnet(subnet("s", "198.19.0.0/24", gateway="198.19.0.1",
                            reserved=("198.19.0.50",), excluded=("198.19.0.60",)))  # fmt: skip
    got = alloc.allocate(Request("ns/sts-0", "net", fixed={4: "198.19.0.50"}))[0]
    assert got.address == "198.19.0.50"
    # The same owner asking again is idempotent; another owner is refused.
    assert (
        alloc.allocate(Request("ns/sts-0", "net", fixed={4: "198.19.0.50"}))[0].address
        == got.address
    )
    with pytest.raises(AddressUnavailable, match="already used by ns/sts-0"):
        alloc.allocate(Request("ns/other", "net", fixed={4: "198.19.0.50"}))
    with pytest.raises(AddressUnavailable, match="excluded"):
        alloc.allocate(Request("ns/x", "net", fixed={4: "198.19.0.60"}))
    with pytest.raises(AddressUnavailable, match="gateway"):
        alloc.allocate(Request("ns/x", "net", fixed={4: "198.19.0.1"}))
    with pytest.raises(AddressUnavailable, match="outside every subnet of network net"):
        alloc.allocate(Request("ns/x", "net", fixed={4: "198.20.0.5"}))
    with pytest.raises(InvalidRequest, match="not an IP address"):
        alloc.allocate(Request("ns/x", "net", fixed={4: "banana"}))
    # A general allocation never lands on the reserved address even after release.
    alloc.release("s", "198.19.0.50")
    seen = {alloc.allocate(Request(f"ns/p{i}", "net"))[0].address for i in range(251)}
    assert "198.19.0.50" not in seen and "198.19.0.60" not in seen and "198.19.0.1" not in seen


def test_macs_are_locally_administered_unicast_and_unique(allocator: Allocator) -> None:
    allocator.set_subnet(subnet("big", "198.19.128.0/17", private=True))
    macs = {
        allocator.allocate(Request(f"ns/p{i}", "net", subnets={4: "big"}))[0].mac
        for i in range(2000)
    }
    assert len(macs) == 2000
    for mac in macs:
        assert re.fullmatch(r"02(:[0-9a-f]{2}){5}", mac)


def test_a_requested_mac_must_be_free(allocator: Allocator) -> None:
    allocator.allocate(Request("ns/a", "net", mac="02:AA:00:00:00:01"))
    with pytest.raises(AddressUnavailable, match="MAC 02:aa:00:00:00:01 is already used"):
        allocator.allocate(Request("ns/b", "net", mac="02:aa:00:00:00:01"))


def test_restore_rebuilds_state_and_release_frees_it(allocator: Allocator) -> None:
    restored = allocator.restore("b", "198.19.1.3", "02:00:00:00:00:09", "ns/old")
    assert restored.cidr == "198.19.1.3/29"
    allocator.set_cursor("b", "198.19.1.3")
    allocator.allocate(Request("ns/fill", "net"))  # takes a's only address
    nxt = allocator.allocate(Request("ns/new", "net"))[0]
    assert nxt.address == "198.19.1.4", "next-fit resumes after the restored cursor"
    with pytest.raises(AddressUnavailable):
        allocator.restore("b", "198.19.1.3", "02:00:00:00:00:10", "ns/intruder")
    assert allocator.release("b", "198.19.1.3") == "ns/old"
    assert allocator.release("b", "198.19.1.3") is None


def test_a_subnet_in_use_cannot_be_removed(allocator: Allocator) -> None:
    allocator.allocate(Request("ns/a", "net"))
    with pytest.raises(InvalidRequest, match="still has 1 addresses in use"):
        allocator.remove_subnet("a")
    allocator.release("a", "198.19.0.2")
    allocator.remove_subnet("a")
    assert "a" not in allocator.subnets_of("net")


def test_memory_follows_allocations_not_subnet_size() -> None:
    """A /64 and a /15 cost next to nothing to create: neither is enumerated."""
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        alloc = Allocator()
        alloc.set_network("net")
        alloc.set_subnet(subnet("huge6", "2001:db8::/64"))
        alloc.set_subnet(subnet("huge4", "198.18.0.0/15"))
        grown = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert grown < 64 * 1024
    assert alloc.pool("huge6").available == 2**64 - 1


def test_a_subnet_deleted_while_in_use_serves_no_one_and_goes_when_empty(
    allocator: Allocator,
) -> None:
    held = allocator.allocate(Request("ns/a", "net"))[0]
    assert held.subnet == "a"
    with pytest.raises(InvalidRequest):
        allocator.remove_subnet("a")
    with pytest.raises(NoSuchSubnet):
        allocator.allocate(Request("ns/x", "net", subnets={4: "a"}))
    assert allocator.allocate(Request("ns/b", "net"))[0].subnet == "b"
    allocator.release("a", held.address)
    assert "a" not in allocator.subnets_of("net")
