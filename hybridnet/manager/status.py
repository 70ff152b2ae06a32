"""Subnet and Network status counters (and a BGP network's peer states), written when they
change.

The allocator is the source of truth; this copies its counters to the objects so `kubectl get
subnet` shows used/total and the webhook can refuse deleting a subnet in use. Driven by
changes, never by a timer that lists: an allocation or release marks its subnet and network,
an event of a Subnet or Network marks that object, and a marked object whose status differs
from the informer's cached one is written (with the cached resourceVersion; on Conflict the
newer version's event marks it again).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator

from hybridnet.api.resources import BGPPeerStatus, Count, Network, Subnet
from hybridnet.ipamstore.service import IPAMUsage
from hybridnet.manager.batches import BatchLoop, OwnWrites
from hybridnet.manager.caches import ClusterCache
from hybridnet.store.errors import Conflict, NotFound
from hybridnet.store.interface import Store, WatchEvent

INT64_MAX = 2**63 - 1
"""JSON integers in the API are int64: an IPv6 /64's total is capped here."""

RESYNC_SECONDS = 300.0
"""Every object is compared again this often (from the caches, so it costs no request)."""


def _cap(value: int) -> int:
    return min(value, INT64_MAX)


CountsObserver = Callable[[str, int, int, int], None]
"""Told (subnet, total, used, available) whenever a subnet's counters are computed: the
metrics gauges."""

PeerStatuses = Callable[[str], list[BGPPeerStatus] | None]
"""A BGP network's peer entries (hybridnet.manager.bgp); None leaves them as they are."""

SUBNET, NETWORK = "subnet", "network"


class StatusWriter:
    def __init__(
        self,
        store: Store,
        cache: ClusterCache,
        usage: IPAMUsage,
        *,
        interval: float = 1.0,
        resync: float = RESYNC_SECONDS,
        on_counts: CountsObserver | None = None,
        bgp_peers: PeerStatuses | None = None,
    ):
        self.store = store
        self.on_counts = on_counts
        self.bgp_peers = bgp_peers
        self._subnets = cache.subnets
        self._networks = cache.networks
        self._usage = usage
        self._own = OwnWrites()
        self._loop = BatchLoop(
            "status-writer", self._sync, self._every_key, interval=interval, resync=resync
        )
        usage.subscribe(self._usage_changed)
        cache.subnets.subscribe(self._subnet_event)
        cache.networks.subscribe(self._network_event)

    def start(self) -> None:
        self._loop.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Write what is still marked (the final counters), then stop."""
        self._loop.stop(timeout)

    # ----------------------------------------------------------------- what changed

    def network_changed(self, network: str) -> None:
        """Something ``bgp_peers`` reports for ``network`` changed."""
        self._loop.mark(f"{NETWORK}/{network}")

    def _usage_changed(self, network: str, subnet: str | None) -> None:
        if subnet is not None:
            self._loop.mark(f"{SUBNET}/{subnet}")
        self._loop.mark(f"{NETWORK}/{network}")

    def _subnet_event(self, event: WatchEvent[Subnet]) -> None:
        if event.type != "DELETED":
            self._loop.mark(f"{SUBNET}/{event.object.name}")
        self._loop.mark(f"{NETWORK}/{event.object.spec.network}")  # its subnet list

    def _network_event(self, event: WatchEvent[Network]) -> None:
        if event.type != "DELETED":
            self._loop.mark(f"{NETWORK}/{event.object.name}")

    def _every_key(self) -> Iterator[str]:
        for subnet in self._subnets.items():
            yield f"{SUBNET}/{subnet.name}"
        for network in self._networks.items():
            yield f"{NETWORK}/{network.name}"

    # ----------------------------------------------------------------- writing

    def _sync(self, key: str) -> None:
        kind, name = key.split("/", 1)
        if kind == SUBNET:
            self._sync_subnet(key, name)
        else:
            self._sync_network(key, name)

    def _sync_subnet(self, key: str, name: str) -> None:
        subnet = self._subnets.get(name)
        usage = self._usage.subnet(name)
        if subnet is None or usage is None:  # gone, or not loaded yet: nothing to report
            return
        wanted = dataclasses.replace(
            subnet.status,
            total=_cap(usage.total),
            used=usage.used,
            available=_cap(usage.available),
            last_allocated_ip=usage.last_allocated,
        )
        if self.on_counts is not None:
            self.on_counts(name, wanted.total, wanted.used, wanted.available)
        if wanted != subnet.status:
            self._write(key, subnet, dataclasses.replace(subnet, status=wanted))

    def _sync_network(self, key: str, name: str) -> None:
        network = self._networks.get(name)
        if network is None:
            return
        counts: dict[int, Count] = {4: Count(), 6: Count()}
        subnets = self._usage.subnets_of(name)
        for usage in subnets:
            count = counts[usage.version]
            count.total = _cap(count.total + usage.total)
            count.used += usage.used
            count.available = _cap(count.available + usage.available)
        wanted = dataclasses.replace(
            network.status,
            subnet_list=[usage.subnet for usage in subnets],
            statistics=counts[4],
            ipv6_statistics=counts[6],
            dual_stack_statistics=Count(
                total=min(counts[4].total, counts[6].total),
                used=min(counts[4].used, counts[6].used),
                available=min(counts[4].available, counts[6].available),
            ),
            last_allocated_subnet=self._usage.sticky_subnet(name, 4),
            last_allocated_ipv6_subnet=self._usage.sticky_subnet(name, 6),
        )
        peers = self.bgp_peers(name) if self.bgp_peers is not None else None
        if peers is not None:
            wanted.bgp_peers = peers
        if wanted != network.status:
            self._write(key, network, dataclasses.replace(network, status=wanted))

    def _write(self, key: str, cached: Subnet | Network, wanted: Subnet | Network) -> None:
        version = cached.metadata.resource_version
        if self._own.cache_is_behind(key, version):
            return
        try:
            self.store.update_status(wanted)
        except (Conflict, NotFound):
            # Conflict: the cache is behind someone else's write, whose event marks the object
            # again. NotFound: deleted meanwhile, nothing to write.
            self._own.failed(key)
            return
        except BaseException:
            self._own.failed(key)
            raise
        self._own.wrote(key, version)
