"""One subnet's addresses: which may be allocated, which are, and the next-fit cursor.

Addresses are plain integers here (``ipaddress`` objects are built only for results), the range
is two integers, and only exceptions to "free" are stored: allocated, reserved and excluded
addresses. Next-fit starts after the last allocated address and wraps, so an address released
now is handed out again as late as possible (old ARP/NDP caches and conntrack entries age out).
"""

from __future__ import annotations

import dataclasses
import ipaddress

from hybridnet.ipamcore.errors import AddressUnavailable, SubnetExhausted

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclasses.dataclass(frozen=True)
class RangeSpec:
    """What a Subnet's ``spec.range`` says, validated (see hybridnet.api.validation)."""

    cidr: str
    gateway: str | None = None
    start: str | None = None
    end: str | None = None
    reserved: frozenset[str] = frozenset()
    excluded: frozenset[str] = frozenset()


def default_bounds(network: IPNetwork) -> tuple[int, int]:
    """First and last allocatable address when start/end are not given.

    IPv4 skips the network and broadcast addresses (except in /31 and /32, RFC 3021); IPv6
    skips the subnet-router anycast address (the network address) and keeps the last one.
    """
    low, high = int(network.network_address), int(network.broadcast_address)
    if network.version == 4:
        return (low + 1, high - 1) if network.prefixlen <= 30 else (low, high)
    return (low + 1, high) if network.prefixlen < 128 else (low, high)


class SubnetPool:
    """Allocation state of one subnet. Not thread-safe: the allocator serialises calls."""

    def __init__(self, name: str, spec: RangeSpec):
        self.name = name
        self.network: IPNetwork = ipaddress.ip_network(spec.cidr)
        self.version = self.network.version
        self.used: dict[int, str] = {}
        """Allocated address -> owner key."""
        self.last_allocated: int | None = None
        self._general_used = 0
        """Allocated addresses that count against ``available`` (allocatable, not reserved)."""
        self.configure(spec)

    # ----------------------------------------------------------------- configuration

    def configure(self, spec: RangeSpec) -> None:
        """Apply a (possibly changed) range; existing allocations are kept as they are."""
        if ipaddress.ip_network(spec.cidr) != self.network:
            raise ValueError(f"subnet {self.name}: the CIDR of a pool cannot change")
        first, last = default_bounds(self.network)
        self.first = int(ipaddress.ip_address(spec.start)) if spec.start else first
        self.last = int(ipaddress.ip_address(spec.end)) if spec.end else last
        self.gateway = int(ipaddress.ip_address(spec.gateway)) if spec.gateway else None
        blocked = {int(ipaddress.ip_address(a)) for a in spec.excluded}
        if self.gateway is not None:
            blocked.add(self.gateway)
        self.blocked = frozenset(blocked)
        self.reserved = frozenset(
            a for a in (int(ipaddress.ip_address(r)) for r in spec.reserved) if a not in blocked
        )
        self.total = (self.last - self.first + 1) - sum(
            1 for a in self.blocked if self.first <= a <= self.last
        )
        self._reserved_in_range = sum(1 for a in self.reserved if self.first <= a <= self.last)
        self._general_used = sum(1 for a in self.used if self._counts_as_general(a))

    def _counts_as_general(self, address: int) -> bool:
        return (
            self.first <= address <= self.last
            and address not in self.blocked
            and address not in self.reserved
        )

    # ----------------------------------------------------------------- counters

    @property
    def used_count(self) -> int:
        return len(self.used)

    @property
    def available(self) -> int:
        """Addresses a pod without a fixed address can still get."""
        return self.total - self._reserved_in_range - self._general_used

    def contains(self, address: int) -> bool:
        return int(self.network.network_address) <= address <= int(self.network.broadcast_address)

    # ----------------------------------------------------------------- allocation

    def allocate(self, owner: str) -> int:
        """The next free address after the last allocated one (wrapping); SubnetExhausted
        when none is left. Visits at most one address more than the stored exceptions."""
        if self.available <= 0:
            raise SubnetExhausted(f"subnet {self.name} has no free address")
        candidate = self.first if self.last_allocated is None else self.last_allocated + 1
        span = self.last - self.first + 1
        for _ in range(len(self.used) + len(self.blocked) + len(self.reserved) + 1):
            if candidate > self.last or candidate < self.first:
                candidate = self.first + (candidate - self.first) % span
            if (
                candidate not in self.used
                and candidate not in self.blocked
                and candidate not in self.reserved
            ):
                self._take(candidate, owner)
                return candidate
            candidate += 1
        raise SubnetExhausted(f"subnet {self.name} has no free address")

    def claim(self, address: int, owner: str, *, fixed: bool) -> None:
        """Take a specific address: a fixed request (may be reserved) or a stored allocation
        being rebuilt. The same owner claiming again is a no-op."""
        if not self.contains(address):
            raise AddressUnavailable(f"{self._text(address)} is outside subnet {self.name}")
        holder = self.used.get(address)
        if holder == owner:
            return
        if holder is not None:
            raise AddressUnavailable(f"{self._text(address)} is already used by {holder}")
        if fixed and address in self.blocked:
            what = "the gateway" if address == self.gateway else "excluded"
            raise AddressUnavailable(f"{self._text(address)} is {what} in subnet {self.name}")
        edges = (int(self.network.network_address), int(self.network.broadcast_address))
        if fixed and self.version == 4 and self.network.prefixlen <= 30 and address in edges:
            raise AddressUnavailable(
                f"{self._text(address)} is the network or broadcast address of {self.name}"
            )
        self._take(address, owner, move_cursor=False)

    def _take(self, address: int, owner: str, move_cursor: bool = True) -> None:
        self.used[address] = owner
        if self._counts_as_general(address):
            self._general_used += 1
        if move_cursor:
            self.last_allocated = address

    def set_cursor(self, address: int | None) -> None:
        """Resume next-fit after ``address`` (the subnet's stored lastAllocatedIP)."""
        self.last_allocated = address if address is None or self.contains(address) else None

    def release(self, address: int) -> str | None:
        """Free an address; returns its former owner, None if it was not allocated."""
        owner = self.used.pop(address, None)
        if owner is not None and self._counts_as_general(address):
            self._general_used -= 1
        return owner

    def _text(self, address: int) -> str:
        return str(ipaddress.ip_address(address))
