"""The allocator joined to the store: rebuild from stored IPInstances, allocate and persist,
release and delete; and, read-only, the usage counters the status writer and node labeler report.

Storage is the final judge of who holds an address: IPInstances are named after their address
and created with create-only semantics, so if another manager got there first the create fails,
this allocator learns the address is taken, and allocation is retried with the next address.
Persisting is all or nothing too: if the second family's IPInstance cannot be written, the first
is deleted again.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import threading
from collections.abc import Callable

from hybridnet.api import constants as c
from hybridnet.api.annotations import PodNetworkRequest
from hybridnet.api.resources import IPInstance, Network, Subnet
from hybridnet.ipamcore.allocator import (
    Allocation,
    Allocator,
    Request,
    SubnetConfig,
    SubnetUsage,
)
from hybridnet.ipamcore.errors import IPAMError, NoSuchNetwork
from hybridnet.ipamcore.pool import RangeSpec
from hybridnet.ipamstore import ipinstances
from hybridnet.logs import fields
from hybridnet.store.errors import AlreadyExists, NotFound
from hybridnet.store.interface import Store

log = logging.getLogger(__name__)

CLAIM_RETRIES = 16
"""How many addresses to try when other managers keep winning the race for the next one."""


@dataclasses.dataclass(frozen=True)
class PodRef:
    namespace: str
    name: str
    uid: str | None
    node: str
    ordinal: int | None = None

    @property
    def owner(self) -> str:
        return ipinstances.owner_key(self.namespace, self.name)


UsageListener = Callable[[str, str | None], None]
"""Told ``(network, subnet)`` after the addresses or the configuration of that subnet changed
(``subnet`` None: the network's own configuration changed). Called on the thread that made the
change, so it must be quick: mark something to do, do it elsewhere."""


class IPAMUsage:
    """What the allocator holds, read-only, for those who report it (Subnet and Network status,
    node quota labels), and who to tell when it changes."""

    def __init__(self, allocator: Allocator):
        self._allocator = allocator
        self._listeners: list[UsageListener] = []

    def subscribe(self, listener: UsageListener) -> None:
        self._listeners.append(listener)

    def subnet(self, name: str) -> SubnetUsage | None:
        return self._allocator.usage(name)

    def subnets_of(self, network: str) -> list[SubnetUsage]:
        """Usage of every subnet of ``network``, by subnet name."""
        found = (self._allocator.usage(name) for name in self._allocator.subnets_of(network))
        return [usage for usage in found if usage is not None]

    def sticky_subnet(self, network: str, version: int) -> str | None:
        """The subnet the network allocates ``version`` addresses from until it is full."""
        return self._allocator.sticky_subnet(network, version)

    def changed(self, network: str, subnet: str | None) -> None:
        for listener in self._listeners:
            listener(network, subnet)


def subnet_config(subnet: Subnet) -> SubnetConfig:
    spec = subnet.spec
    return SubnetConfig(
        name=subnet.metadata.name,
        network=spec.network,
        range=RangeSpec(
            cidr=spec.range.cidr,
            gateway=spec.range.gateway,
            start=spec.range.start,
            end=spec.range.end,
            reserved=frozenset(spec.range.reserved_ips),
            excluded=frozenset(spec.range.exclude_ips),
        ),
        net_id=spec.net_id,
        private=bool(spec.config and spec.config.private),
    )


class IPAMService:
    """Allocation for pods, persisted as IPInstances in ``ipam_namespace``.

    The allocator it is given becomes its own: every change of it goes through here, so
    :attr:`usage` can tell its listeners what changed."""

    def __init__(self, store: Store, allocator: Allocator, ipam_namespace: str):
        self.store = store
        self._allocator = allocator
        self.ipam_namespace = ipam_namespace
        self.usage = IPAMUsage(allocator)
        self._owner_locks: dict[str, threading.Lock] = {}
        self._locks_guard = threading.Lock()

    # ----------------------------------------------------------------- networks and subnets

    def apply_network(self, network: Network) -> None:
        name = network.metadata.name
        self._allocator.set_network(name, network.spec.net_id)
        status = network.status
        self._allocator.set_sticky_subnet(name, 4, status.last_allocated_subnet)
        self._allocator.set_sticky_subnet(name, 6, status.last_allocated_ipv6_subnet)
        self.usage.changed(name, None)

    def apply_subnet(self, subnet: Subnet) -> None:
        config = subnet_config(subnet)
        before = self._allocator.usage(config.name)
        self._allocator.set_subnet(config)
        if before is not None and before.network != config.network:
            self.usage.changed(before.network, None)  # it lost a subnet
        self.usage.changed(config.network, config.name)

    def remove_network(self, name: str) -> None:
        """Stop allocating from a deleted network; InvalidRequest while subnets still refer
        to it."""
        self._allocator.remove_network(name)
        self.usage.changed(name, None)

    def remove_subnet(self, name: str) -> None:
        """Stop allocating from a deleted subnet. InvalidRequest while addresses are in use:
        then nothing more is allocated from it, and it goes once the last is released."""
        before = self._allocator.usage(name)
        try:
            self._allocator.remove_subnet(name)
        finally:
            if before is not None:
                self.usage.changed(before.network, name)

    def rebuild(self) -> int:
        """Load networks, subnets and every stored allocation, before serving anything.
        Returns how many allocations were restored."""
        for network in self.store.list(Network).items:
            self.apply_network(network)
        for subnet in self.store.list(Subnet).items:
            self.apply_subnet(subnet)
            self._allocator.set_cursor(subnet.metadata.name, subnet.status.last_allocated_ip)
        restored = 0
        for instance in self.store.list(IPInstance, self.ipam_namespace).items:
            if self.on_stored(instance):
                restored += 1
        log.info("ipam state rebuilt", extra=fields(allocations=restored))
        return restored

    # ----------------------------------------------------------------- what storage holds

    def on_stored(self, instance: IPInstance) -> bool:
        """An IPInstance exists in storage: its owner holds its address here too (idempotent).
        False when it cannot be accounted for (no pod binding, unknown subnet, an address this
        allocator gave someone else)."""
        owner = ipinstances.owner_of(instance)
        if owner is None:
            log.warning("ipinstance without a pod binding", extra=fields(name=instance.name))
            return False
        try:
            allocation = self._allocator.restore(
                instance.spec.subnet,
                ipinstances.address_of(instance),
                instance.spec.address.mac,
                owner,
            )
        except IPAMError as exc:
            log.error(
                "stored ipinstance conflicts with ipam state",
                extra=fields(name=instance.name, owner=owner, reason=str(exc)),
            )
            return False
        self.usage.changed(allocation.network, allocation.subnet)
        return True

    def on_deleted(self, instance: IPInstance) -> None:
        """An IPInstance was deleted (by us or anyone): free its address here too, unless the
        address already serves someone else (a late event for an old owner)."""
        owner = ipinstances.owner_of(instance)
        if owner is not None:
            self._free(instance.spec.subnet, ipinstances.address_of(instance), owner)

    def held_by(self, owner: str) -> list[Allocation]:
        """What ``owner`` (``namespace/name``) holds: the allocator is the authority, ahead of
        any cache."""
        return self._allocator.allocations_of(owner)

    def _free(self, subnet: str, address: str, owner: str) -> None:
        """Free ``address`` if ``owner`` holds it: the one way addresses go back."""
        before = self._allocator.usage(subnet)
        if self._allocator.release(subnet, address, owner) is not None and before is not None:
            self.usage.changed(before.network, subnet)

    # ----------------------------------------------------------------- allocation

    def _lock_for(self, owner: str) -> threading.Lock:
        with self._locks_guard:
            return self._owner_locks.setdefault(owner, threading.Lock())

    def ensure_allocated(
        self, pod: PodRef, request: PodNetworkRequest, network: str
    ) -> list[Allocation]:
        """The pod's allocations, allocating and persisting them if it has none yet."""
        with self._lock_for(pod.owner):
            held = self._allocator.allocations_of(pod.owner)
            have = {a.version for a in held}
            missing = [v for v in request.versions if v not in have]
            if not missing:
                return held
            # Part of a dual-stack pair can be missing when a manager died between the two
            # writes: complete it, with the MAC the pod already has.
            family = request.family if len(missing) > 1 else {4: "IPv4", 6: "IPv6"}[missing[0]]
            wanted = Request(
                owner=pod.owner,
                network=network,
                family=family,  # type: ignore[arg-type]
                subnets={v: s for v, s in request.subnets.items() if v in missing},
                fixed={v: a for v, a in request.fixed_ips.items() if v in missing},
                mac=request.mac or (held[0].mac if held else None),
            )
            for _ in range(CLAIM_RETRIES):
                allocations = self._allocator.allocate(wanted)
                for allocation in allocations:
                    self.usage.changed(allocation.network, allocation.subnet)
                if self._persist(pod, allocations):
                    return held + allocations
                learned = self._allocator.allocations_of(pod.owner)
                if len(learned) > len(held):
                    return learned  # another manager served this very pod meanwhile
            raise IPAMError(f"gave up after {CLAIM_RETRIES} addresses were claimed elsewhere")

    def _persist(self, pod: PodRef, allocations: list[Allocation]) -> bool:
        """Create one IPInstance per allocation. False (and nothing left behind) when an
        address turned out to be claimed already in storage."""
        created: list[IPInstance] = []
        for allocation in allocations:
            instance = ipinstances.build(
                allocation,
                ipam_namespace=self.ipam_namespace,
                pod_namespace=pod.namespace,
                pod_name=pod.name,
                pod_uid=pod.uid,
                node_name=pod.node,
                ordinal=pod.ordinal,
                families=[a.version for a in allocations],
            )
            try:
                created.append(self.store.create(instance))
            except AlreadyExists:
                self._learn_claim(allocation)
                self._undo(created, allocations)
                return False
            except BaseException:
                self._undo(created, allocations)
                raise
        return True

    def _learn_claim(self, allocation: Allocation) -> None:
        """Someone else stored this address: record their claim so it is not offered again."""
        self._free(allocation.subnet, allocation.address, allocation.owner)
        try:
            existing = self.store.get(
                IPInstance, ipinstances.instance_name(allocation.address), self.ipam_namespace
            )
        except NotFound:
            return  # deleted meanwhile: the address is free again
        self.on_stored(existing)
        log.warning(
            "address already claimed in storage",
            extra=fields(address=allocation.address, holder=ipinstances.owner_of(existing)),
        )

    def _undo(self, created: list[IPInstance], allocations: list[Allocation]) -> None:
        for instance in created:
            with contextlib.suppress(NotFound):
                self.store.delete(IPInstance, instance.name, self.ipam_namespace)
        for allocation in allocations:
            self._free(allocation.subnet, allocation.address, allocation.owner)

    def delete_instance(self, instance: IPInstance) -> None:
        """Delete one IPInstance and free its address for its owner."""
        with contextlib.suppress(NotFound):
            self.store.delete(IPInstance, instance.name, self.ipam_namespace)
        self.on_deleted(instance)

    def release(self, owner: str) -> int:
        """Delete the owner's IPInstances and free their addresses; returns how many."""
        with self._lock_for(owner):
            held = self._allocator.allocations_of(owner)
            for allocation in held:
                with contextlib.suppress(NotFound):
                    self.store.delete(
                        IPInstance,
                        ipinstances.instance_name(allocation.address),
                        self.ipam_namespace,
                    )
                self._free(allocation.subnet, allocation.address, owner)
            return len(held)

    # ----------------------------------------------------------------- network choice

    @staticmethod
    def network_for(
        request: PodNetworkRequest, node_labels: dict[str, str], networks: list[Network]
    ) -> str:
        """The network a pod allocates from: the one it names, the single Overlay network, or
        the Underlay network its node is attached to (``networks``: all of them, from a cache)."""
        if request.network:
            return request.network
        if request.network_type == c.TYPE_OVERLAY:
            overlays = [n.name for n in networks if n.spec.type == c.TYPE_OVERLAY]
            if not overlays:
                raise NoSuchNetwork("no Overlay network exists")
            return sorted(overlays)[0]
        attached = [
            n.name
            for n in networks
            if n.spec.type == c.TYPE_UNDERLAY
            and n.spec.node_selector
            and all(node_labels.get(k) == v for k, v in n.spec.node_selector.items())
        ]
        if not attached:
            raise NoSuchNetwork("the pod's node is attached to no Underlay network")
        return sorted(attached)[0]
