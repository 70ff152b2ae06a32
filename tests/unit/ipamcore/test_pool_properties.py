"""Property tests of one subnet pool, checked against a brute-force model of the same subnet.

Small subnets (/26 to /30, and IPv6 /122 to /126) let the model enumerate every address; the pool
itself never does.
"""

from __future__ import annotations

import ipaddress
from typing import Literal

from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from hybridnet.ipamcore.errors import AddressUnavailable, SubnetExhausted
from hybridnet.ipamcore.pool import RangeSpec, SubnetPool, default_bounds

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


@st.composite
def subnet_specs(draw: st.DrawFn) -> RangeSpec:
    version: Literal[4, 6] = draw(st.sampled_from([4, 6]))
    prefix = draw(st.integers(26, 30)) if version == 4 else draw(st.integers(122, 126))
    base = draw(st.ip_addresses(v=version))
    network: IPNetwork = ipaddress.ip_network(f"{base}/{prefix}", strict=False)
    first, last = default_bounds(network)
    hosts = list(range(first, last + 1))
    start, end = sorted(draw(st.lists(st.sampled_from(hosts), min_size=2, max_size=2)))
    use_bounds: bool = draw(st.booleans())
    chosen = draw(st.lists(st.sampled_from(hosts), unique=True, max_size=6))
    with_gateway: bool = draw(st.booleans())
    gateway = chosen[0] if chosen and with_gateway else None
    rest = chosen[1:] if gateway is not None else chosen
    split = draw(st.integers(0, len(rest)))

    def text(values: list[int]) -> frozenset[str]:
        return frozenset(str(ipaddress.ip_address(v)) for v in values)

    return RangeSpec(
        cidr=str(network),
        gateway=str(ipaddress.ip_address(gateway)) if gateway is not None else None,
        start=str(ipaddress.ip_address(start)) if use_bounds else None,
        end=str(ipaddress.ip_address(end)) if use_bounds else None,
        reserved=text(rest[:split]),
        excluded=text(rest[split:]),
    )


def allocatable(spec: RangeSpec) -> set[int]:
    """Brute force: every address a pod without a fixed request may receive."""
    network = ipaddress.ip_network(spec.cidr)
    first, last = default_bounds(network)
    if spec.start:
        first = int(ipaddress.ip_address(spec.start))
    if spec.end:
        last = int(ipaddress.ip_address(spec.end))
    never = {int(ipaddress.ip_address(a)) for a in spec.excluded}
    if spec.gateway:
        never.add(int(ipaddress.ip_address(spec.gateway)))
    reserved = {int(ipaddress.ip_address(a)) for a in spec.reserved}
    return {a for a in range(first, last + 1) if a not in never and a not in reserved}


@given(subnet_specs())
def test_allocating_until_exhausted_hands_out_exactly_the_allocatable_addresses(
    spec: RangeSpec,
) -> None:
    pool = SubnetPool("s", spec)
    expected = allocatable(spec)
    got: list[int] = []
    while True:
        try:
            got.append(pool.allocate(f"pod{len(got)}"))
        except SubnetExhausted:
            break
    assert len(got) == len(set(got)), "duplicate address"
    assert set(got) == expected
    assert pool.available == 0
    assert pool.used_count == len(expected)


@given(subnet_specs(), st.data())
def test_release_then_allocate_gets_the_freed_address_back_when_it_is_the_last_one(
    spec: RangeSpec, data: st.DataObject
) -> None:
    pool = SubnetPool("s", spec)
    taken = []
    while pool.available > 0:
        taken.append(pool.allocate("p"))
    if not taken:
        return
    victim = data.draw(st.sampled_from(taken))
    assert pool.release(victim) == "p"
    assert pool.available == 1
    assert pool.allocate("q") == victim


class PoolMachine(RuleBasedStateMachine):
    """Random allocate / claim / release sequences; invariants checked after every step."""

    def __init__(self) -> None:
        super().__init__()
        self.spec: RangeSpec | None = None
        self.pool: SubnetPool | None = None
        self.owners: dict[int, str] = {}
        self.counter = 0

    @precondition(lambda self: self.pool is None)
    @rule(spec=subnet_specs())
    def create(self, spec: RangeSpec) -> None:
        self.spec = spec
        self.pool = SubnetPool("s", spec)

    @precondition(lambda self: self.pool is not None)
    @rule()
    def allocate(self) -> None:
        assert self.pool is not None and self.spec is not None
        self.counter += 1
        owner = f"pod{self.counter}"
        free = allocatable(self.spec) - self.owners.keys()
        try:
            address = self.pool.allocate(owner)
        except SubnetExhausted:
            assert not free
            return
        assert address in free
        self.owners[address] = owner

    @precondition(lambda self: self.pool is not None)
    @rule(data=st.data())
    def claim_fixed(self, data: st.DataObject) -> None:
        assert self.pool is not None and self.spec is not None
        network = self.pool.network
        offset = data.draw(st.integers(0, network.num_addresses - 1))
        address = int(network.network_address) + offset
        self.counter += 1
        owner = f"fixed{self.counter}"
        forbidden = {int(ipaddress.ip_address(a)) for a in self.spec.excluded}
        if self.spec.gateway:
            forbidden.add(int(ipaddress.ip_address(self.spec.gateway)))
        if network.version == 4:
            forbidden |= {int(network.network_address), int(network.broadcast_address)}
        try:
            self.pool.claim(address, owner, fixed=True)
        except AddressUnavailable:
            assert address in forbidden or address in self.owners
            return
        assert address not in forbidden and address not in self.owners
        self.owners[address] = owner

    @precondition(lambda self: self.pool is not None and self.owners)
    @rule(data=st.data())
    def release(self, data: st.DataObject) -> None:
        assert self.pool is not None
        address = data.draw(st.sampled_from(sorted(self.owners)))
        assert self.pool.release(address) == self.owners.pop(address)

    @invariant()
    def counters_are_exact(self) -> None:
        if self.pool is None or self.spec is None:
            return
        assert self.pool.used == self.owners
        general = allocatable(self.spec)
        reserved_in_range = {
            int(ipaddress.ip_address(a)) for a in self.spec.reserved
        } & self._range_without_blocked()
        assert self.pool.total == len(general) + len(reserved_in_range)
        assert self.pool.available == len(general - self.owners.keys())

    def _range_without_blocked(self) -> set[int]:
        assert self.pool is not None
        return {a for a in range(self.pool.first, self.pool.last + 1) if a not in self.pool.blocked}


TestPoolMachine = PoolMachine.TestCase
TestPoolMachine.settings = settings(max_examples=150, stateful_step_count=40, deadline=None)
