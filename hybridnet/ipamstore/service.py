"""The allocator joined to the store: rebuild from stored IPInstances, allocate and persist,
release and delete; and, read-only, the usage counters the status writer and node labeler report.

Storage is the final judge of who holds an address: IPInstances are named after their address
and created with create-only semantics, so if another manager got there first the create fails,
this manager reads back what storage gives the pod (the other manager may have served this very
pod) and otherwise tries the next address. Each family's IPInstance is written on its own, and
one that was written is never deleted again because the other could not be: under split brain
the other manager may already have kept it as the pod's address of that family.

Besides this manager's own writes and deletes, the allocator learns what storage holds in two
ways only: storage events, applied in the order the watch delivers them (``on_stored``,
``on_deleted``), and a read-back of one pod's IPInstances from storage (``read_back``), dropped
if an event for that pod was applied while the read was in flight. An object learned any other
way (a cached copy, a ``get``) could be applied after the event of its deletion, and its address
would stay in the allocator for good.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import threading
from collections.abc import Callable

from hybridnet.api import constants as c
from hybridnet.api.annotations import PodNetworkRequest
from hybridnet.api.ordering import oldest_first
from hybridnet.api.resources import IPInstance, Network, Subnet
from hybridnet.ipamcore.allocator import (
    Allocation,
    Allocator,
    Request,
    SubnetConfig,
    SubnetUsage,
)
from hybridnet.ipamcore.errors import AddressUnavailable, IPAMError, NoSuchNetwork
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
        self._view_lock = threading.Lock()
        """Held while the allocator's record of stored addresses changes."""
        self._reading: dict[str, int] = {}
        """Owner -> storage events applied for it since its read-back began (only during one)."""
        self.rebuilt_owners: frozenset[str] = frozenset()
        """The pods that held addresses when :meth:`rebuild` read storage."""

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
        owners = set()
        for instance in self.store.list(IPInstance, self.ipam_namespace).items:
            if self.on_stored(instance):
                restored += 1
                owners.add(ipinstances.owner_of(instance) or "")
        self.rebuilt_owners = frozenset(owners)
        log.info("ipam state rebuilt", extra=fields(allocations=restored))
        return restored

    # ----------------------------------------------------------------- what storage holds

    def on_stored(self, instance: IPInstance) -> bool:
        """An IPInstance exists in storage (an event, in watch order): its owner holds its
        address here too (idempotent). False when it cannot be accounted for (no pod binding,
        unknown subnet, an address this allocator gave someone else)."""
        owner = ipinstances.owner_of(instance)
        if owner is None:
            log.warning("ipinstance without a pod binding", extra=fields(name=instance.name))
            return False
        with self._view_lock:
            self._heard(owner)
            return self._restore(instance, owner)

    def on_deleted(self, instance: IPInstance) -> None:
        """An IPInstance was deleted (by us or anyone; an event, in watch order): free its
        address here too, unless the address already serves someone else (a late event for an
        old owner)."""
        owner = ipinstances.owner_of(instance)
        if owner is not None:
            with self._view_lock:
                self._heard(owner)
                self._free(instance.spec.subnet, ipinstances.address_of(instance), owner)

    def read_back(self, owner: str) -> list[IPInstance] | None:
        """What storage holds for ``owner`` now, the allocator made to agree with it: what
        storage lacks is dropped, what it has is taken. Storage, not a cache: a claim this
        manager wrote a moment ago counts, one another manager deleted does not. None when it
        cannot be decided now: an event for the owner was applied during the read (it may be
        newer than what was read), or an address storage gives the owner is still held here by
        another pod (an in-flight claim that is about to fail); try again later."""
        with self._lock_for(owner):
            return self._read_back(owner)

    def _read_back(self, owner: str) -> list[IPInstance] | None:
        """read_back for a caller that holds the owner's lock (one read-back per owner)."""
        namespace, name = owner.split("/", 1)
        with self._view_lock:
            self._reading[owner] = 0
        try:
            listed = self.store.list(
                IPInstance, self.ipam_namespace, ipinstances.pod_selector(namespace, name)
            ).items
            stored = [i for i in listed if ipinstances.owner_of(i) == owner]
            with self._view_lock:
                if self._reading[owner]:
                    return None
                keep = {(i.spec.subnet, ipinstances.address_of(i)) for i in stored}
                for allocation in self._allocator.allocations_of(owner):
                    if (allocation.subnet, allocation.address) not in keep:
                        self._free(allocation.subnet, allocation.address, owner)
                restored = [self._restore(instance, owner) for instance in stored]
                return stored if all(restored) else None
        finally:
            with self._view_lock:
                self._reading.pop(owner, None)

    def _heard(self, owner: str) -> None:
        """Called under the view lock for every event applied: a read-back in flight for the
        owner may now be older than the allocator, and must not overwrite it."""
        if owner in self._reading:
            self._reading[owner] += 1

    def _restore(self, instance: IPInstance, owner: str) -> bool:
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
        """The pod's allocations, allocating and persisting the families it lacks."""
        with self._lock_for(pod.owner):
            for _ in range(CLAIM_RETRIES):
                held = self._allocator.allocations_of(pod.owner)
                have = {a.version for a in held}
                missing = [v for v in request.versions if v not in have]
                if not missing:
                    return held
                # Part of a dual-stack pair can be missing when a manager died between the two
                # writes, or lost the race for one: complete it, with the MAC the pod has.
                family = request.family if len(missing) > 1 else {4: "IPv4", 6: "IPv6"}[missing[0]]
                wanted = Request(
                    owner=pod.owner,
                    network=network,
                    family=family,  # type: ignore[arg-type]
                    subnets={v: s for v, s in request.subnets.items() if v in missing},
                    fixed={v: a for v, a in request.fixed_ips.items() if v in missing},
                    mac=request.mac or (held[0].mac if held else None),
                )
                allocations = self._allocator.allocate(wanted)
                for allocation in allocations:
                    self.usage.changed(allocation.network, allocation.subnet)
                lost = self._persist(pod, allocations, request.versions)
                if not lost:
                    continue
                # Storage had the address: perhaps another manager served this very pod.
                self._read_back(pod.owner)
                have = {a.version for a in self._allocator.allocations_of(pod.owner)}
                for allocation in lost:
                    if allocation.version in wanted.fixed and allocation.version not in have:
                        raise AddressUnavailable(
                            f"{allocation.address} is already claimed in storage by another pod"
                        )
            raise IPAMError(f"gave up after {CLAIM_RETRIES} addresses were claimed elsewhere")

    def _persist(
        self, pod: PodRef, allocations: list[Allocation], families: tuple[int, ...]
    ) -> list[Allocation]:
        """Create one IPInstance per allocation, each on its own. Returns (and frees here)
        those whose address storage already had. One that was written stays written even if
        the next fails: deleting it could leave the pod with no address of that family, if a
        manager serving the pod at the same time saw it and deleted its own copy (split brain).
        The pod's next pass completes the pair."""
        lost: list[Allocation] = []
        for index, allocation in enumerate(allocations):
            instance = ipinstances.build(
                allocation,
                ipam_namespace=self.ipam_namespace,
                pod_namespace=pod.namespace,
                pod_name=pod.name,
                pod_uid=pod.uid,
                node_name=pod.node,
                ordinal=pod.ordinal,
                families=families,
            )
            try:
                self.store.create(instance)
            except AlreadyExists:
                self._free(allocation.subnet, allocation.address, allocation.owner)
                lost.append(allocation)
                log.warning(
                    "address already claimed in storage",
                    extra=fields(address=allocation.address, pod=pod.owner),
                )
            except BaseException:
                for unwritten in allocations[index:]:  # a create that was written is heard
                    self._free(unwritten.subnet, unwritten.address, unwritten.owner)
                raise
        return lost

    def delete_instance(self, instance: IPInstance) -> None:
        """Delete one IPInstance and free its address for its owner."""
        with contextlib.suppress(NotFound):
            self.store.delete(IPInstance, instance.name, self.ipam_namespace)
        self._forget(instance)

    def delete_as_read(self, instance: IPInstance) -> None:
        """Delete this IPInstance only as it was read, and free its address for its owner.
        Conflict if it changed since: its name, its address, may be another pod's by now."""
        with contextlib.suppress(NotFound):
            self.store.delete(
                IPInstance,
                instance.name,
                self.ipam_namespace,
                resource_version=instance.metadata.resource_version or None,
            )
        self._forget(instance)

    def _forget(self, instance: IPInstance) -> None:
        owner = ipinstances.owner_of(instance)
        if owner is not None:
            self._free(instance.spec.subnet, ipinstances.address_of(instance), owner)

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
        """The network a pod allocates from: the one it names, the Overlay network, or the
        Underlay network its node is attached to (``networks``: all of them, from a cache; the
        oldest when several qualify, as the daemons' datapath picks: api.ordering)."""
        if request.network:
            return request.network
        if request.network_type == c.TYPE_OVERLAY:
            overlays = [n for n in networks if n.spec.type == c.TYPE_OVERLAY]
            if not overlays:
                raise NoSuchNetwork("no Overlay network exists")
            return oldest_first(overlays)[0].name
        attached = [
            n
            for n in networks
            if n.spec.type == c.TYPE_UNDERLAY
            and n.spec.node_selector
            and all(node_labels.get(k) == v for k, v in n.spec.node_selector.items())
        ]
        if not attached:
            raise NoSuchNetwork("the pod's node is attached to no Underlay network")
        return oldest_first(attached)[0].name
