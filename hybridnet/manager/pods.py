"""The pod controller: every scheduled pod gets its addresses, every gone pod gives them back.

Level-based: whatever event woke it, a pass looks at the pod as it is now and at what the
allocator says the pod holds, and does the difference. Pods that could not be served (subnet
exhausted, no such network) get an Event and wait; they are retried when addresses are freed or
networks and subnets change, and every ``RETRY_SECONDS`` regardless.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Callable

from hybridnet.api import constants as c
from hybridnet.api.annotations import (
    AnnotationError,
    ClusterDefaults,
    PodNetworkRequest,
    parse_pod_request,
)
from hybridnet.api.builtin import Pod
from hybridnet.api.resources import IPInstance, Network, Subnet
from hybridnet.ipamcore.errors import (
    AddressUnavailable,
    InvalidRequest,
    IPAMError,
    NoSuchNetwork,
    NoSuchSubnet,
)
from hybridnet.ipamstore import ipinstances
from hybridnet.ipamstore.service import IPAMService, PodRef
from hybridnet.logs import fields
from hybridnet.manager.caches import ClusterCache
from hybridnet.manager.events import EventRecorder
from hybridnet.manager.workqueue import WorkQueue
from hybridnet.store.errors import Conflict, NotFound, StoreError
from hybridnet.store.interface import Store, WatchEvent

log = logging.getLogger(__name__)

RETRY_SECONDS = 30.0
TERMINAL_PHASES = ("Succeeded", "Failed")


def blame(error: IPAMError, request: PodNetworkRequest) -> str:
    """The error's message, naming the pod annotation that asked for the impossible."""
    culprit = None
    if isinstance(error, NoSuchNetwork) and request.network:
        culprit = c.ANNOTATION_SPECIFIED_NETWORK
    elif isinstance(error, NoSuchSubnet) and request.subnets:
        culprit = c.ANNOTATION_SPECIFIED_SUBNET
    elif isinstance(error, AddressUnavailable | InvalidRequest) and request.fixed_ips:
        culprit = c.ANNOTATION_IP_POOL
    elif isinstance(error, AddressUnavailable) and request.mac:
        culprit = c.ANNOTATION_MAC_POOL
    return f"annotation {culprit}: {error}" if culprit else str(error)


def rebound(instance: IPInstance, ref: PodRef) -> IPInstance | None:
    """A copy of a retained address's IPInstance pointing at the re-created pod (None when it
    points there already). The informer's cached object is left as it is."""
    binding = instance.spec.binding
    if binding is None or (binding.pod_uid == ref.uid and binding.node_name == ref.node):
        return None
    referred = binding.referred_object
    new_binding = dataclasses.replace(
        binding,
        pod_uid=ref.uid,
        node_name=ref.node,
        referred_object=dataclasses.replace(referred, uid=ref.uid) if referred else None,
    )
    labels = {**instance.metadata.labels, c.LABEL_NODE: ipinstances.label_value(ref.node)}
    if ref.uid:
        labels[c.LABEL_POD_UID] = ipinstances.label_value(ref.uid)
    return dataclasses.replace(
        instance,
        metadata=dataclasses.replace(instance.metadata, labels=labels),
        spec=dataclasses.replace(instance.spec, binding=new_binding),
    )


def doubled(instances: list[IPInstance]) -> bool:
    """Whether two of ``instances`` (one pod's) hold addresses of one family."""
    versions = [i.spec.address.version for i in instances]
    return len(versions) != len(set(versions))


def extras(instances: list[IPInstance]) -> list[IPInstance]:
    """What a pod with two addresses of a family gives back: all but the lowest IPInstance
    name of each family (a rule every manager evaluates alike)."""
    by_version: dict[str, list[IPInstance]] = {}
    for instance in instances:
        by_version.setdefault(instance.spec.address.version, []).append(instance)
    return [
        extra for same in by_version.values() for extra in sorted(same, key=lambda i: i.name)[1:]
    ]


class PodController:
    """Worker threads serving pods, woken by the events of the manager's caches."""

    def __init__(
        self,
        store: Store,
        service: IPAMService,
        cache: ClusterCache,
        *,
        defaults: ClusterDefaults | None = None,
        workers: int = 4,
        on_allocated: Callable[[float], None] | None = None,
    ):
        self.store = store
        self.service = service
        self.cache = cache
        self.defaults = defaults or ClusterDefaults()
        self.workers = workers
        self.on_allocated = on_allocated
        self.events = EventRecorder(store)
        self.queue = WorkQueue()
        self._waiting: set[str] = set()
        self._retained: set[str] = set()
        self._seen: set[str] = set()
        """Pods this controller has had in its cache (or knows were deleted before it started):
        only those are taken for gone when the cache lacks them."""
        self._stored_names: dict[str, set[str]] = {}
        """Owner -> names of its IPInstances in storage (an index over the informer cache)."""
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        cache.pods.subscribe(self._on_pod)
        cache.instances.subscribe(self._on_instance)
        cache.subnets.subscribe(self._on_subnet)
        cache.networks.subscribe(self._on_network)

    # ----------------------------------------------------------------- lifecycle

    def start(self) -> None:
        """Start the workers (the caches are started, and synced, by the caller). A pod that
        held addresses when the IPAM state was rebuilt (before the pod cache listed) and is not
        in the synced pod cache was deleted while no manager watched: its pass releases it, or
        keeps the addresses of a StatefulSet's pod. That is read from the synced cache here,
        not left to the IPInstance events, which may still be on their way to the handlers."""
        stateful = {
            ipinstances.owner_of(i)
            for i in self.cache.instances.items()
            if i.spec.binding is not None and i.spec.binding.stateful is not None
        }
        for owner in sorted(self.service.rebuilt_owners):
            if not self._pod_cached(owner):
                with self._lock:
                    self._seen.add(owner)
                    if owner in stateful:
                        self._retained.add(owner)
                self.queue.add(owner)
        for index in range(self.workers):
            thread = threading.Thread(target=self._work, name=f"pod-worker-{index}", daemon=True)
            thread.start()
            self._threads.append(thread)
        log.info("pod controller started", extra=fields(workers=self.workers))

    def stop(self, timeout: float = 10.0) -> None:
        """Stop working, waiting at most about ``timeout`` seconds for the workers."""
        deadline = time.monotonic() + timeout
        self.queue.close()
        for thread in self._threads:  # a worker finishes the item it holds
            thread.join(timeout=max(deadline - time.monotonic(), 0))

    # ----------------------------------------------------------------- events

    def _on_pod(self, event: WatchEvent[Pod]) -> None:
        pod = event.object
        key = ipinstances.owner_key(pod.metadata.namespace or "", pod.metadata.name)
        with self._lock:
            self._seen.add(key)
        self.queue.add(key)

    def _on_instance(self, event: WatchEvent[IPInstance]) -> None:
        instance = event.object
        owner = ipinstances.owner_of(instance)
        if owner is not None:
            with self._lock:
                names = self._stored_names.setdefault(owner, set())
                if event.type == "DELETED":
                    names.discard(instance.name)
                else:
                    names.add(instance.name)
                if not names:
                    self._stored_names.pop(owner, None)
        if event.type == "DELETED":
            self.service.on_deleted(instance)
            self._retry_waiting()
            if owner and self._pod_cached(owner):
                self.queue.add(owner)  # a running pod may hold no address of that family now
            return
        if not self.service.on_stored(instance) and owner:
            self.queue.add_after(owner, 0.5)  # an in-flight claim of ours: settle it later
        if owner and doubled(self._stored(owner)):
            self.queue.add(owner)  # two addresses of one family: the pass resolves it
        binding = instance.spec.binding
        if owner and binding and binding.stateful is not None:
            with self._lock:
                self._retained.add(owner)

    def _stored(self, owner: str) -> list[IPInstance]:
        """The owner's IPInstances as storage has them (this manager's cache of it)."""
        namespace = self.service.ipam_namespace
        with self._lock:
            names = sorted(self._stored_names.get(owner, ()))
        found = (self.cache.instances.get(name, namespace) for name in names)
        return [instance for instance in found if instance is not None]

    def _pod_cached(self, owner: str) -> bool:
        namespace, name = owner.split("/", 1)
        return self.cache.pods.get(name, namespace) is not None

    def _settle_with_storage(self, owner: str) -> bool:
        """Make the allocator agree with storage for ``owner``, and keep one address per
        family: only split brain (two managers serving one pod at once) gives a pod two.
        False when that cannot be decided now (the pod's pass is tried again shortly).

        The cache is only the hint: when it and the allocator agree and no family is doubled,
        there is nothing to do. Otherwise the decision is taken on a read of storage, never on
        the cache: a cached IPInstance may have been deleted since, or its name (its address)
        given to another pod. Every manager keeps the lowest IPInstance name of a family, and
        deletes the others only as they were read (a resourceVersion precondition). So the
        lowest-named IPInstance a pod ever had of a family is deleted by no manager, however
        stale its view, and the pod is never left with none while they converge."""
        cached = self._stored(owner)
        held = {(a.subnet, a.address) for a in self.service.held_by(owner)}
        in_cache = {(i.spec.subnet, ipinstances.address_of(i)) for i in cached}
        if held == in_cache and not doubled(cached):
            return True
        stored = self.service.read_back(owner)
        if stored is None:
            self.queue.add_after(owner, 0.5)
            return False
        for extra in extras(stored):
            try:
                self.service.delete_as_read(extra)
            except Conflict:  # changed since the read: decide again on a fresh one
                self.queue.add_after(owner, 0.2)
                return False
            log.warning(
                "pod had two addresses of one family (split brain); kept one",
                extra=fields(pod=owner, dropped=extra.name),
            )
        return True

    def _on_subnet(self, event: WatchEvent[Subnet]) -> None:
        if event.type == "DELETED":
            self._remove(self.service.remove_subnet, "subnet", event.object.name)
        else:
            self.service.apply_subnet(event.object)
        self._retry_waiting()

    def _on_network(self, event: WatchEvent[Network]) -> None:
        if event.type == "DELETED":
            self._remove(self.service.remove_network, "network", event.object.name)
        else:
            self.service.apply_network(event.object)
        self._retry_waiting()

    @staticmethod
    def _remove(remove: Callable[[str], None], what: str, name: str) -> None:
        """Stop allocating from a deleted subnet or network. The webhook refuses deleting one
        in use; without it, the addresses stay accounted for and that is said loudly."""
        try:
            remove(name)
        except IPAMError as exc:
            log.error(f"{what} deleted while in use", extra=fields(name=name, reason=str(exc)))

    def _retry_waiting(self) -> None:
        with self._lock:
            waiting, self._waiting = self._waiting, set()
        for key in waiting:
            self.queue.add(key)

    # ----------------------------------------------------------------- work

    def _work(self) -> None:
        while True:
            key = self.queue.get()
            if key is None:
                return
            try:
                self.reconcile(key)
            except StoreError as exc:
                log.warning("pod pass failed, retrying", extra=fields(pod=key, error=str(exc)))
                self.queue.add_after(key, 1.0)
            except Exception:
                log.exception("pod pass crashed", extra=fields(pod=key))
                self.queue.add_after(key, 5.0)
            finally:
                self.queue.done(key)

    def reconcile(self, key: str) -> None:
        namespace, name = key.split("/", 1)
        pod = self.cache.pods.get(name, namespace)
        if pod is None:
            self._pod_gone(key, namespace, name)
            return
        if pod.phase in TERMINAL_PHASES:
            with self._lock:
                retained = key in self._retained
            if pod.metadata.deletion_timestamp and retained:
                # kubelet puts a pod it is deleting into a terminal phase once its containers
                # exited, before the object is gone: a deletion, which the StatefulSet follows
                # with the same pod again. The pod's disappearance decides (_pod_gone).
                return
            # Completed or evicted: the address goes back even for StatefulSet pods.
            self._release(key, why=f"pod {pod.phase}")
            return
        if pod.metadata.deletion_timestamp or pod.body.get("spec", {}).get("hostNetwork"):
            return
        node = pod.node_name
        if not node:
            return
        namespace_obj = self.cache.namespaces.get(namespace)
        if namespace_obj is None:
            # A pod's namespace exists; ours has not heard of it yet, and its annotations may
            # decide the pod's network. Deciding without them would be wrong for good.
            self.queue.add_after(key, 0.2)
            return
        try:
            request = parse_pod_request(
                name,
                pod.metadata.annotations,
                namespace_obj.metadata.annotations,
                pod.metadata.owner_references,
                self.defaults,
            )
        except AnnotationError as exc:
            self.events.pod_warning(
                namespace, name, pod.metadata.uid, "InvalidAnnotation", str(exc)
            )
            return
        ref = PodRef(namespace, name, pod.metadata.uid, node, request.stateful_ordinal)
        if not self._settle_with_storage(key):
            return
        held = self.service.held_by(key)
        if held and set(request.versions) <= {a.version for a in held}:
            self._rebind(ref)
            return
        started = time.perf_counter()
        node_obj = self.cache.nodes.get(node)
        try:
            network = self.service.network_for(
                request,
                node_obj.metadata.labels if node_obj else {},
                self.cache.networks.items(),
            )
            allocations = self.service.ensure_allocated(ref, request, network)
        except IPAMError as exc:
            with self._lock:
                self._waiting.add(key)
            self.queue.add_after(key, RETRY_SECONDS)
            self.events.pod_warning(
                namespace, name, pod.metadata.uid, exc.reason, blame(exc, request)
            )
            return
        if request.retain and request.stateful_ordinal is not None:
            with self._lock:
                self._retained.add(key)
        if self.on_allocated:
            self.on_allocated(time.perf_counter() - started)
        with self._lock:
            self._waiting.discard(key)
        log.info(
            "pod allocated",
            extra=fields(pod=key, node=node, addresses=[a.cidr for a in allocations]),
        )

    def _pod_gone(self, key: str, namespace: str, name: str) -> None:
        with self._lock:
            seen = key in self._seen
        if not seen and self.service.held_by(key):
            # Addresses learned from storage for a pod this cache has not had yet: another
            # manager served it, and the pods' watch can be behind the IPInstances'. Its
            # ADDED event, or its DELETED one, brings it here; releasing now would take
            # the addresses of a running pod.
            return
        self.events.forget(namespace, name)
        with self._lock:
            self._seen.discard(key)
            self._waiting.discard(key)
            retained = key in self._retained
        if retained and self.service.held_by(key):
            log.info("pod deleted, address retained for its StatefulSet", extra=fields(pod=key))
            return
        self._release(key, why="pod deleted")

    def _release(self, key: str, why: str) -> None:
        released = self.service.release(key)
        with self._lock:
            self._retained.discard(key)
        if released:
            log.info("pod released", extra=fields(pod=key, reason=why, addresses=released))
            self._retry_waiting()

    def _rebind(self, ref: PodRef) -> None:
        """A retained address serves the re-created pod: point the binding at the new pod."""
        for allocation in self.service.held_by(ref.owner):
            name = ipinstances.instance_name(allocation.address)
            cached = self.cache.instances.get(name, self.service.ipam_namespace)
            if cached is None:
                continue
            instance = rebound(cached, ref)
            if instance is None:
                continue
            try:
                self.store.update(instance)
            except NotFound:
                continue
            except Conflict:  # the cache is behind: its next event wakes this pod again
                self.queue.add_after(ref.owner, 0.2)
                return
            log.info(
                "retained address rebound",
                extra=fields(pod=ref.owner, node=ref.node, address=allocation.address),
            )
