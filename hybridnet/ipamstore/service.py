"""The allocator joined to the store: rebuild from stored IPInstances, allocate and persist,
release and delete.

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

from hybridnet.api import constants as c
from hybridnet.api.annotations import PodNetworkRequest
from hybridnet.api.resources import IPInstance, Network, Subnet
from hybridnet.ipamcore.allocator import Allocation, Allocator, Request, SubnetConfig
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
    """Allocation for pods, persisted as IPInstances in ``ipam_namespace``."""

    def __init__(self, store: Store, allocator: Allocator, ipam_namespace: str):
        self.store = store
        self.allocator = allocator
        self.ipam_namespace = ipam_namespace
        self._owner_locks: dict[str, threading.Lock] = {}
        self._locks_guard = threading.Lock()

    # ----------------------------------------------------------------- state

    def apply_network(self, network: Network) -> None:
        self.allocator.set_network(network.metadata.name, network.spec.net_id)
        status = network.status
        self.allocator.set_sticky_subnet(network.metadata.name, 4, status.last_allocated_subnet)
        self.allocator.set_sticky_subnet(
            network.metadata.name, 6, status.last_allocated_ipv6_subnet
        )

    def apply_subnet(self, subnet: Subnet) -> None:
        self.allocator.set_subnet(subnet_config(subnet))

    def rebuild(self) -> int:
        """Load networks, subnets and every stored allocation, before serving anything.
        Returns how many allocations were restored."""
        for network in self.store.list(Network).items:
            self.apply_network(network)
        for subnet in self.store.list(Subnet).items:
            self.apply_subnet(subnet)
            self.allocator.set_cursor(subnet.metadata.name, subnet.status.last_allocated_ip)
        restored = 0
        for instance in self.store.list(IPInstance, self.ipam_namespace).items:
            if self.restore(instance):
                restored += 1
        log.info("ipam state rebuilt", extra=fields(allocations=restored))
        return restored

    def restore(self, instance: IPInstance) -> bool:
        """Enter a stored IPInstance into the allocator (idempotent)."""
        owner = ipinstances.owner_of(instance)
        if owner is None:
            log.warning("ipinstance without a pod binding", extra=fields(name=instance.name))
            return False
        try:
            self.allocator.restore(
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
        return True

    def forget(self, instance: IPInstance) -> None:
        """An IPInstance was deleted (by us or anyone): free its address here too, unless the
        address already serves someone else (a late event for an old owner)."""
        owner = ipinstances.owner_of(instance)
        if owner is not None:
            self.allocator.release(instance.spec.subnet, ipinstances.address_of(instance), owner)

    # ----------------------------------------------------------------- allocation

    def _lock_for(self, owner: str) -> threading.Lock:
        with self._locks_guard:
            return self._owner_locks.setdefault(owner, threading.Lock())

    def ensure_allocated(
        self, pod: PodRef, request: PodNetworkRequest, network: str
    ) -> list[Allocation]:
        """The pod's allocations, allocating and persisting them if it has none yet."""
        with self._lock_for(pod.owner):
            held = self.allocator.allocations_of(pod.owner)
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
                allocations = self.allocator.allocate(wanted)
                if self._persist(pod, allocations):
                    return held + allocations
                learned = self.allocator.allocations_of(pod.owner)
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
        self.allocator.release(allocation.subnet, allocation.address, owner=allocation.owner)
        try:
            existing = self.store.get(
                IPInstance, ipinstances.instance_name(allocation.address), self.ipam_namespace
            )
        except NotFound:
            return  # deleted meanwhile: the address is free again
        self.restore(existing)
        log.warning(
            "address already claimed in storage",
            extra=fields(address=allocation.address, holder=ipinstances.owner_of(existing)),
        )

    def _undo(self, created: list[IPInstance], allocations: list[Allocation]) -> None:
        for instance in created:
            with contextlib.suppress(NotFound):
                self.store.delete(IPInstance, instance.name, self.ipam_namespace)
        for allocation in allocations:
            self.allocator.release(allocation.subnet, allocation.address, owner=allocation.owner)

    def delete_instance(self, instance: IPInstance) -> None:
        """Delete one IPInstance and free its address for its owner."""
        with contextlib.suppress(NotFound):
            self.store.delete(IPInstance, instance.name, self.ipam_namespace)
        self.forget(instance)

    def release(self, owner: str) -> int:
        """Delete the owner's IPInstances and free their addresses; returns how many."""
        with self._lock_for(owner):
            held = self.allocator.allocations_of(owner)
            for allocation in held:
                with contextlib.suppress(NotFound):
                    self.store.delete(
                        IPInstance,
                        ipinstances.instance_name(allocation.address),
                        self.ipam_namespace,
                    )
                self.allocator.release(allocation.subnet, allocation.address)
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
