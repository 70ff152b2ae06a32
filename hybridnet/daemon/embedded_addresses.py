"""Addresses on the embedded store: with no manager, the daemon allocates and frees itself.

A plain container host (podman, the lab) runs one daemon on an SQLite store. It allocates a
pod's addresses at ADD with the manager's own IPAM code (hybridnet.ipamstore.service), frees
them at DEL and at CNI GC, and follows the store's IPInstance events so an address someone else
freed (``hybridnet-ctl ipam gc``, another daemon's DEL) is free here at once. With the
Kubernetes store none of this runs: the manager allocates and the daemon only waits.
"""

from __future__ import annotations

import contextlib
import dataclasses
import threading
from collections.abc import Callable

from hybridnet.api.naming import pod_selector
from hybridnet.api.resources import IPInstance, Network
from hybridnet.daemon import embedded_request
from hybridnet.daemon.cache import NodeCache, node_selector
from hybridnet.ipamcore.allocator import Allocator
from hybridnet.ipamcore.errors import NoSuchNetwork
from hybridnet.ipamstore import ipinstances
from hybridnet.ipamstore.service import IPAMService, PodRef
from hybridnet.rpc import daemon_pb2 as pb
from hybridnet.store.interface import Store, WatchEvent

PodLock = Callable[[str], contextlib.AbstractContextManager[None]]
"""The daemon's per-pod lock (hybridnet.daemon.pod_locks): ADD, DEL and GC of a pod in turn."""


@dataclasses.dataclass(frozen=True)
class EmbeddedSettings:
    node_name: str
    ipam_namespace: str
    allocation_timeout: float
    default_network: str | None
    """The network of pods that choose none."""
    default_family: str
    """IPv4, IPv6 or DualStack for pods that do not say."""


class EmbeddedAddresses:
    def __init__(
        self, store: Store, cache: NodeCache, settings: EmbeddedSettings, pod_lock: PodLock
    ) -> None:
        self.store = store
        self.cache = cache
        self.settings = settings
        self._pod_lock = pod_lock
        self._ipam: IPAMService | None = None
        self._lock = threading.Lock()

    def _service(self) -> IPAMService:
        """The daemon's own allocator, rebuilt once from the store at the first use."""
        with self._lock:
            if self._ipam is None:
                service = IPAMService(self.store, Allocator(), self.settings.ipam_namespace)
                service.rebuild()
                self._ipam = service
            return self._ipam

    def follow(self, event: WatchEvent[IPInstance]) -> None:
        """Keep the allocator agreeing with the store in watch order, as the manager's does.
        Events before the first ADD are in the rebuild; those during it wait for the lock
        and follow it."""
        with self._lock:
            if self._ipam is None:
                return
            if event.type == "DELETED":
                self._ipam.on_deleted(event.object)
            else:
                self._ipam.on_stored(event.object)

    def stored(self, selector: str) -> list[IPInstance]:
        """IPInstances read from the store itself: the daemon writes them there and must see
        its own writes at once (its cache follows a moment later)."""
        return self.store.list(IPInstance, self.settings.ipam_namespace, selector).items

    def allocate(
        self, attach: pb.Attachment, check_placement: Callable[[Network], None]
    ) -> list[IPInstance]:
        """The pod's IPInstances, allocated now unless it holds them already.
        ``check_placement`` refuses a network this node may not serve, before anything is
        allocated (so nothing has to be given back)."""
        service = self._service()
        timeout = self.settings.allocation_timeout
        self.cache.networks.synced.wait(timeout)
        networks = list(self.cache.networks.cache.copy().values())
        annotations = embedded_request.read_annotations(
            self.store, attach.pod_namespace, attach.pod_name
        )
        request, name = embedded_request.resolve(
            attach.pod_name,
            annotations,
            default_network=self.settings.default_network,
            default_family=self.settings.default_family,
            node_labels=self.cache.node_labels(),
            networks=networks,
        )
        network = self.cache.network(name, timeout)
        if network is None:
            raise NoSuchNetwork(f"network {name} does not exist")
        check_placement(network)
        self._learn_network(service, network)
        ref = PodRef(
            attach.pod_namespace, attach.pod_name, attach.pod_uid or None, self.settings.node_name
        )
        service.ensure_allocated(ref, request, name)
        selector = pod_selector(attach.pod_namespace, attach.pod_name)
        found = self.stored(selector)
        if not found:
            # The store lost the pod's IPInstances while the allocator still holds them: no
            # sandbox can own what is not stored, so allocate afresh.
            service.release(ref.owner)
            service.ensure_allocated(ref, request, name)
            found = self.stored(selector)
        return found

    def _learn_network(self, service: IPAMService, network: Network) -> None:
        """Give the allocator the network and its subnets as the cache has them now: a subnet
        created after the daemon started is allocated from at once."""
        service.apply_network(network)
        for subnet in self.cache.subnets.cache.copy().values():
            if subnet.spec.network == network.name:
                service.apply_subnet(subnet)

    def delete(self, instances: list[IPInstance]) -> None:
        """Free addresses an ADD allocated and then refused (the underlay address check)."""
        service = self._service()
        for instance in instances:
            service.delete_instance(instance)

    def free_sandbox(self, attach: pb.Attachment) -> list[str]:
        """At DEL: free the pod's addresses that belong to this sandbox (or to none: an ADD
        that failed before recording), never those of its current sandbox. The caller holds
        the pod's lock."""
        service = self._service()
        owner = ipinstances.owner_key(attach.pod_namespace, attach.pod_name)
        stored = self.stored(pod_selector(attach.pod_namespace, attach.pod_name))
        if not stored:
            # Nothing stored can belong to any sandbox: let go of whatever the allocator
            # still holds for the pod (the store lost it, or this DEL is a repeat).
            service.release(owner)
            return []
        mine = [i for i in stored if i.status.sandbox_id in (attach.container_id, None)]
        for instance in mine:
            service.delete_instance(instance)
        return [ipinstances.address_of(i) for i in mine]

    def free_stale(self, valid_sandboxes: set[str]) -> list[str]:
        """At CNI GC: free every address on this node whose sandbox is not valid, whether or
        not its link still exists."""
        service = self._service()
        stale = {
            ipinstances.owner_of(i)
            for i in self.stored(node_selector(self.settings.node_name))
            if i.status.sandbox_id not in valid_sandboxes
        }
        freed = []
        for owner in sorted(o for o in stale if o is not None):
            pod_namespace, _, pod_name = owner.partition("/")
            with self._pod_lock(owner):  # read again: an ADD may have recorded meanwhile
                for instance in self.stored(pod_selector(pod_namespace, pod_name)):
                    if instance.status.sandbox_id not in valid_sandboxes:
                        service.delete_instance(instance)
                        freed.append(ipinstances.address_of(instance))
        return freed
