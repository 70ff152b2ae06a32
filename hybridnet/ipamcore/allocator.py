"""Networks of subnets, and the decisions a pod's allocation needs: which subnet, which address,
which MAC, both families or neither.

Subnet choice follows the reference: a network stays on one subnet per family until it is full
(``lastAllocatedSubnet``), then moves to the next by name; private subnets are used only when a
pod names them. Fixed addresses (``ip-pool``) may come from reserved addresses. A dual-stack
request gets both families or nothing. MACs are locally administered unicast, unique among all
allocations this allocator knows.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import random
import threading
from typing import Literal

from hybridnet.ipamcore.errors import (
    AddressUnavailable,
    InvalidRequest,
    NoSuchNetwork,
    NoSuchSubnet,
    SubnetExhausted,
)
from hybridnet.ipamcore.pool import RangeSpec, SubnetPool

Family = Literal["IPv4", "IPv6", "DualStack"]
FAMILY_VERSIONS: dict[str, tuple[int, ...]] = {"IPv4": (4,), "IPv6": (6,), "DualStack": (4, 6)}


@dataclasses.dataclass(frozen=True)
class SubnetConfig:
    """What the allocator needs of a Subnet object."""

    name: str
    network: str
    range: RangeSpec
    net_id: int | None = None
    private: bool = False


@dataclasses.dataclass(frozen=True)
class Allocation:
    """One address handed to one owner; the manager stores it as an IPInstance."""

    network: str
    subnet: str
    version: int
    address: str
    prefix_length: int
    gateway: str | None
    net_id: int | None
    mac: str
    owner: str

    @property
    def cidr(self) -> str:
        """The address with its subnet's prefix length, as IPInstance ``spec.address.ip``."""
        return f"{self.address}/{self.prefix_length}"


@dataclasses.dataclass(frozen=True)
class SubnetUsage:
    """One subnet's counters at one moment, read under the allocator's lock."""

    subnet: str
    network: str
    version: int
    total: int
    used: int
    available: int
    """Addresses a pod without a fixed address can still get."""
    last_allocated: str | None
    """The address next-fit continues after (``lastAllocatedIP``)."""


@dataclasses.dataclass(frozen=True)
class Request:
    """What a pod asks for; ``owner`` identifies it (``namespace/name``)."""

    owner: str
    network: str
    family: Family = "IPv4"
    subnets: dict[int, str] = dataclasses.field(default_factory=dict)
    """Named subnet per IP version (``specified-subnet``)."""
    fixed: dict[int, str] = dataclasses.field(default_factory=dict)
    """Fixed address per IP version (``ip-pool``)."""
    mac: str | None = None


@dataclasses.dataclass
class _Network:
    net_id: int | None
    known: bool = False
    """False while only subnets have named it: nothing is allocated from a network not seen."""
    subnets: set[str] = dataclasses.field(default_factory=set)
    sticky: dict[int, str] = dataclasses.field(default_factory=dict)
    """The subnet a family allocates from until it is full (lastAllocatedSubnet)."""


class Allocator:
    """Thread-safe allocation over many networks and subnets, kept in memory."""

    def __init__(self, rng: random.Random | None = None):
        self._rng = rng or random.SystemRandom()
        self._lock = threading.RLock()
        self._networks: dict[str, _Network] = {}
        self._subnets: dict[str, tuple[SubnetConfig, SubnetPool]] = {}
        self._macs: dict[str, set[tuple[str, int]]] = {}
        self._mac_of: dict[tuple[str, int], str] = {}
        self._by_owner: dict[str, dict[tuple[str, int], Allocation]] = {}
        self._retired: set[str] = set()
        """Subnets deleted while addresses were in use: no new allocations from them."""

    # ----------------------------------------------------------------- configuration

    def set_network(self, name: str, net_id: int | None = None) -> None:
        with self._lock:
            network = self._networks.setdefault(name, _Network(net_id))
            network.net_id = net_id
            network.known = True

    def remove_network(self, name: str) -> None:
        with self._lock:
            network = self._networks.pop(name, None)
            if network and network.subnets:
                self._networks[name] = network  # subnets still refer to it
                raise InvalidRequest(f"network {name} still has subnets {sorted(network.subnets)}")

    def set_subnet(self, config: SubnetConfig) -> None:
        """Add a subnet or apply changes to its range (allocations are kept)."""
        with self._lock:
            current = self._subnets.get(config.name)
            if current is None:
                pool = SubnetPool(config.name, config.range)
            else:
                pool = current[1]
                pool.configure(config.range)
                if current[0].network != config.network:
                    self._networks[current[0].network].subnets.discard(config.name)
            self._subnets[config.name] = (config, pool)
            self._networks.setdefault(config.network, _Network(None)).subnets.add(config.name)

    def remove_subnet(self, name: str) -> None:
        with self._lock:
            entry = self._subnets.get(name)
            if entry is None:
                return
            config, pool = entry
            if pool.used:
                # Deleted while in use: hand out nothing more from it, and let it go once its
                # last address is released.
                self._retired.add(name)
                raise InvalidRequest(f"subnet {name} still has {len(pool.used)} addresses in use")
            self._retired.discard(name)
            del self._subnets[name]
            network = self._networks.get(config.network)
            if network:
                network.subnets.discard(name)
                network.sticky = {v: s for v, s in network.sticky.items() if s != name}

    def set_sticky_subnet(self, network: str, version: int, subnet: str | None) -> None:
        """Restore ``lastAllocatedSubnet`` from the Network's status after a restart."""
        with self._lock:
            state = self._networks.setdefault(network, _Network(None))
            if subnet:
                state.sticky[version] = subnet

    def set_cursor(self, subnet: str, address: str | None) -> None:
        """Restore next-fit's position (``lastAllocatedIP``) after a restart."""
        with self._lock:
            self._pool(subnet).set_cursor(int(ipaddress.ip_address(address)) if address else None)

    # ----------------------------------------------------------------- queries

    def pool(self, subnet: str) -> SubnetPool:
        with self._lock:
            return self._pool(subnet)

    def usage(self, subnet: str) -> SubnetUsage | None:
        """The subnet's counters (None for a subnet not known, or no longer)."""
        with self._lock:
            entry = self._subnets.get(subnet)
            if entry is None:
                return None
            config, pool = entry
            last = pool.last_allocated
            return SubnetUsage(
                subnet=subnet,
                network=config.network,
                version=pool.version,
                total=pool.total,
                used=pool.used_count,
                available=pool.available,
                last_allocated=str(ipaddress.ip_address(last)) if last is not None else None,
            )

    def subnets_of(self, network: str) -> list[str]:
        with self._lock:
            state = self._networks.get(network)
            return sorted(state.subnets) if state else []

    def sticky_subnet(self, network: str, version: int) -> str | None:
        with self._lock:
            state = self._networks.get(network)
            return state.sticky.get(version) if state else None

    def allocations_of(self, owner: str) -> list[Allocation]:
        """What ``owner`` holds now: the allocator is the authority, ahead of any cache."""
        with self._lock:
            return sorted(self._by_owner.get(owner, {}).values(), key=lambda a: a.version)

    def owners(self) -> list[str]:
        with self._lock:
            return list(self._by_owner)

    # ----------------------------------------------------------------- allocation

    def allocate(self, request: Request) -> list[Allocation]:
        """Addresses for every family of the request, or none at all (the error says why)."""
        versions = FAMILY_VERSIONS.get(request.family)
        if versions is None:
            raise InvalidRequest(f"unknown IP family {request.family!r}")
        with self._lock:
            network = self._networks.get(request.network)
            if network is None or not network.known:
                raise NoSuchNetwork(f"network {request.network} does not exist")
            mac = self._choose_mac(request.owner, request.mac)
            done: list[tuple[SubnetPool, int, int | None]] = []
            try:
                results = []
                for version in versions:
                    pool = self._choose_pool(request, network, version)
                    cursor = pool.last_allocated
                    fixed = request.fixed.get(version)
                    if fixed is not None:
                        address = self._parse(fixed, version)
                        pool.claim(address, request.owner, fixed=True)
                    else:
                        address = pool.allocate(request.owner)
                        network.sticky[version] = pool.name
                    done.append((pool, address, cursor))
                    results.append(self._record(pool, address, mac, request.owner))
                return results
            except BaseException:
                for pool, address, cursor in done:
                    self._forget(pool, address)
                    pool.last_allocated = cursor
                raise

    def restore(self, subnet: str, address: str, mac: str, owner: str) -> Allocation:
        """Re-enter an allocation read from storage (rebuild after restart, or an address
        another manager claimed first)."""
        with self._lock:
            pool = self._pool(subnet)
            number = int(ipaddress.ip_address(address))
            pool.claim(number, owner, fixed=False)
            return self._record(pool, number, mac.lower(), owner)

    def release(self, subnet: str, address: str, owner: str | None = None) -> str | None:
        """Free an address (only if ``owner`` holds it, when given); returns its former owner
        (None if it was free, unknown, or someone else's)."""
        with self._lock:
            entry = self._subnets.get(subnet)
            if entry is None:
                return None
            pool = entry[1]
            number = int(ipaddress.ip_address(address))
            if owner is not None and pool.used.get(number) != owner:
                return None
            return self._forget(pool, number)

    # ----------------------------------------------------------------- internals

    def _pool(self, subnet: str) -> SubnetPool:
        entry = self._subnets.get(subnet)
        if entry is None:
            raise NoSuchSubnet(f"subnet {subnet} does not exist")
        return entry[1]

    @staticmethod
    def _parse(address: str, version: int) -> int:
        try:
            parsed = ipaddress.ip_address(address)
        except ValueError as exc:
            raise InvalidRequest(f"{address!r} is not an IP address") from exc
        if parsed.version != version:
            raise InvalidRequest(f"{address} is not an IPv{version} address")
        return int(parsed)

    def _choose_pool(self, request: Request, network: _Network, version: int) -> SubnetPool:
        named = request.subnets.get(version)
        if named is not None:
            return self._named_pool(request.network, named, version, request.fixed.get(version))
        fixed = request.fixed.get(version)
        if fixed is not None:
            number = self._parse(fixed, version)
            for name in sorted(network.subnets):
                pool = self._subnets[name][1]
                if pool.version == version and pool.contains(number):
                    return pool
            raise AddressUnavailable(
                f"{fixed} is outside every subnet of network {request.network}"
            )
        candidates = [
            self._subnets[name]
            for name in sorted(network.subnets)
            if self._subnets[name][1].version == version
            and not self._subnets[name][0].private
            and name not in self._retired
        ]
        if not candidates:
            raise NoSuchSubnet(f"network {request.network} has no public IPv{version} subnet")
        sticky = network.sticky.get(version)
        for config, pool in candidates:
            if config.name == sticky and pool.available > 0:
                return pool
        for _, pool in candidates:
            if pool.available > 0:
                return pool
        raise SubnetExhausted(
            f"every IPv{version} subnet of network {request.network} is full "
            f"({', '.join(c.name for c, _ in candidates)})"
        )

    def _named_pool(self, network: str, name: str, version: int, fixed: str | None) -> SubnetPool:
        entry = self._subnets.get(name)
        if entry is None or name in self._retired:
            raise NoSuchSubnet(f"subnet {name} does not exist")
        config, pool = entry
        if config.network != network:
            raise InvalidRequest(
                f"subnet {name} belongs to network {config.network}, not {network}"
            )
        if pool.version != version:
            raise InvalidRequest(f"subnet {name} is IPv{pool.version}, not IPv{version}")
        if fixed is None and pool.available <= 0:
            raise SubnetExhausted(f"subnet {name} has no free address")
        return pool

    def _choose_mac(self, owner: str, wanted: str | None) -> str:
        if wanted is not None:
            mac = wanted.lower()
            holders = {self._subnets[s][1].used.get(a) for s, a in self._macs.get(mac, set())}
            others = sorted(h for h in holders if h is not None and h != owner)
            if others:
                raise AddressUnavailable(f"MAC {mac} is already used by {others[0]}")
            return mac
        while True:
            # 0x02: locally administered, unicast (never a vendor's, never multicast).
            mac = "02:" + ":".join(f"{b:02x}" for b in self._rng.getrandbits(40).to_bytes(5))
            if mac not in self._macs:
                return mac

    def _record(self, pool: SubnetPool, address: int, mac: str, owner: str) -> Allocation:
        self._macs.setdefault(mac, set()).add((pool.name, address))
        self._mac_of[(pool.name, address)] = mac
        config = self._subnets[pool.name][0]
        network = self._networks.get(config.network)
        allocation = Allocation(
            network=config.network,
            subnet=pool.name,
            version=pool.version,
            address=str(ipaddress.ip_address(address)),
            prefix_length=pool.network.prefixlen,
            gateway=config.range.gateway,
            net_id=config.net_id
            if config.net_id is not None
            else network.net_id
            if network
            else None,
            mac=mac,
            owner=owner,
        )
        self._by_owner.setdefault(owner, {})[(pool.name, address)] = allocation
        return allocation

    def _forget(self, pool: SubnetPool, address: int) -> str | None:
        owner = pool.release(address)
        if pool.name in self._retired and not pool.used:
            self.remove_subnet(pool.name)
        if owner is not None:
            held = self._by_owner.get(owner, {})
            held.pop((pool.name, address), None)
            if not held:
                self._by_owner.pop(owner, None)
        mac = self._mac_of.pop((pool.name, address), None)
        if mac is not None:
            users = self._macs.get(mac, set())
            users.discard((pool.name, address))
            if not users:
                self._macs.pop(mac, None)
        return owner
