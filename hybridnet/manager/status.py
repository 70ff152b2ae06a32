"""Subnet and Network status counters, written when they change (at most once a second).

The allocator is the source of truth; this copies its counters to the objects so `kubectl get
subnet` shows used/total and the webhook can refuse deleting a subnet in use.
"""

from __future__ import annotations

import contextlib
import dataclasses
import ipaddress
import logging
from collections.abc import Callable

from hybridnet.api.resources import Count, Network, Subnet
from hybridnet.ipamcore.allocator import Allocator
from hybridnet.ipamcore.errors import NoSuchSubnet
from hybridnet.logs import fields
from hybridnet.manager.periodic import Periodic
from hybridnet.store.errors import Conflict, NotFound, StoreError
from hybridnet.store.interface import Store

log = logging.getLogger(__name__)

INT64_MAX = 2**63 - 1
"""JSON integers in the API are int64: an IPv6 /64's total is capped here."""


def _cap(value: int) -> int:
    return min(value, INT64_MAX)


CountsObserver = Callable[[str, int, int, int], None]
"""Told (subnet, total, used, available) at every flush: the metrics gauges."""


class StatusWriter:
    def __init__(
        self,
        store: Store,
        allocator: Allocator,
        interval: float = 1.0,
        on_counts: CountsObserver | None = None,
    ):
        self.store = store
        self.on_counts = on_counts
        self.allocator = allocator
        self._loop = Periodic("status-writer", interval, self._tick, tick_at_start=False)

    def start(self) -> None:
        self._loop.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop, and write the final counters unless the loop is still busy after ``timeout``."""
        if self._loop.stop(timeout):
            self.flush()

    def _tick(self) -> None:
        try:
            self.flush()
        except StoreError as exc:
            log.warning("status write failed", extra=fields(error=str(exc)))

    def flush(self) -> None:
        """Write every subnet's and network's counters that differ from what was written."""
        for subnet in self.store.list(Subnet).items:
            self._write_subnet(subnet)
        for network in self.store.list(Network).items:
            self._write_network(network)

    def _write_subnet(self, subnet: Subnet) -> None:
        try:
            pool = self.allocator.pool(subnet.name)
        except NoSuchSubnet:  # not loaded yet: nothing to report
            return
        last = pool.last_allocated
        wanted = dataclasses.replace(
            subnet.status,
            total=_cap(pool.total),
            used=pool.used_count,
            available=_cap(pool.available),
            last_allocated_ip=str(ipaddress.ip_address(last)) if last is not None else None,
        )
        if self.on_counts is not None:
            self.on_counts(subnet.name, wanted.total, wanted.used, wanted.available)
        if wanted == subnet.status:
            return
        subnet.status = wanted
        self._update(subnet)

    def _write_network(self, network: Network) -> None:
        counts: dict[int, Count] = {4: Count(), 6: Count()}
        names = self.allocator.subnets_of(network.name)
        for name in names:
            pool = self.allocator.pool(name)
            count = counts[pool.version]
            count.total = _cap(count.total + pool.total)
            count.used += pool.used_count
            count.available = _cap(count.available + pool.available)
        status = dataclasses.replace(
            network.status,
            subnet_list=names,
            statistics=counts[4],
            ipv6_statistics=counts[6],
            dual_stack_statistics=Count(
                total=min(counts[4].total, counts[6].total),
                used=min(counts[4].used, counts[6].used),
                available=min(counts[4].available, counts[6].available),
            ),
            last_allocated_subnet=self.allocator.sticky_subnet(network.name, 4),
            last_allocated_ipv6_subnet=self.allocator.sticky_subnet(network.name, 6),
        )
        if status == network.status:
            return
        network.status = status
        self._update(network)

    def _update(self, obj: Subnet | Network) -> None:
        # Changed or gone meanwhile: the next flush reads it again.
        with contextlib.suppress(Conflict, NotFound):
            self.store.update_status(obj)
