"""Address usage computed from the real allocations (the IPInstances), with the allocator's
own pool arithmetic, so the numbers are right on the embedded store too, where no manager
writes status counters; and which nodes a network attaches."""

from __future__ import annotations

import dataclasses
import ipaddress
from collections.abc import Iterable, Sequence

from hybridnet.api import constants as c
from hybridnet.api.builtin import Node
from hybridnet.api.resources import IPInstance, Network, Subnet
from hybridnet.ctl.output import Record, percent
from hybridnet.ipamcore.errors import AddressUnavailable
from hybridnet.ipamcore.pool import SubnetPool
from hybridnet.ipamstore import ipinstances
from hybridnet.ipamstore.service import subnet_config


@dataclasses.dataclass(frozen=True)
class Usage:
    used: int
    available: int
    total: int

    @property
    def percent(self) -> float:
        return percent(self.used, self.total)

    def record(self) -> Record:
        return {
            "used": self.used,
            "available": self.available,
            "total": self.total,
            "percent": self.percent,
        }

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            self.used + other.used, self.available + other.available, self.total + other.total
        )


def pool_of(subnet: Subnet, instances: Iterable[IPInstance]) -> SubnetPool:
    """The subnet's pool as the allocator would rebuild it from ``instances`` (those of other
    subnets, outside the CIDR or of an address already taken are left out)."""
    pool = SubnetPool(subnet.name, subnet_config(subnet).range)
    for instance in instances:
        if instance.spec.subnet != subnet.name:
            continue
        try:
            address = int(ipaddress.ip_address(ipinstances.address_of(instance)))
            pool.claim(address, ipinstances.owner_of(instance) or instance.name, fixed=False)
        except (ValueError, AddressUnavailable):
            continue
    return pool


def subnet_usage(subnet: Subnet, instances: Iterable[IPInstance]) -> Usage:
    pool = pool_of(subnet, instances)
    return Usage(pool.used_count, pool.available, pool.total)


def subnet_version(subnet: Subnet) -> int:
    return 6 if subnet.spec.range.version == c.IPV6 else 4


def network_usage(
    network: Network, subnets: Sequence[Subnet], usages: dict[str, Usage]
) -> dict[int, Usage]:
    """The network's usage per IP version, summed over its subnets."""
    found: dict[int, Usage] = {}
    for subnet in subnets:
        if subnet.spec.network != network.name or subnet.name not in usages:
            continue
        version = subnet_version(subnet)
        found[version] = found.get(version, Usage(0, 0, 0)) + usages[subnet.name]
    return found


def nodes_of(network: Network, nodes: Iterable[Node]) -> list[str]:
    """The nodes ``network`` attaches: an Underlay network those its selector matches, any
    other type every node."""
    if network.spec.type != c.TYPE_UNDERLAY:
        return sorted(n.name for n in nodes)
    selector = network.spec.node_selector
    return sorted(
        n.name
        for n in nodes
        if selector and all(n.metadata.labels.get(k) == v for k, v in selector.items())
    )
