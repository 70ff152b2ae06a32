"""Managers whose storage events the test delivers by hand, so that two of them can serve one pod
at once (split brain) in exactly the interleaving a test wants, with no threads and no waiting.

Every write goes through one :class:`Journal`, which records the watch event each write causes,
in the order of the writes. A :class:`Replica` hears those events only when the test says so,
one kind at a time if it likes (each kind has its own watch in a real manager, so one kind can
be behind another), and runs its pod controller's passes when the test says so.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from hybridnet.api.builtin import Namespace, Node, Pod
from hybridnet.api.meta import Resource
from hybridnet.api.resources import IPInstance, Network, Subnet
from hybridnet.ipamcore.allocator import Allocator
from hybridnet.ipamstore import ipinstances
from hybridnet.ipamstore.service import IPAMService
from hybridnet.lab.manager import IPAM_NAMESPACE
from hybridnet.manager.caches import ClusterCache, Watched
from hybridnet.manager.pods import PodController
from hybridnet.store.interface import R, Store, WatchEvent
from tests.unit.manager.stores import DelegatingStore

KINDS: tuple[type[Resource], ...] = (Network, Subnet, Namespace, Node, IPInstance, Pod)
"""The kinds a manager watches, in the order a replica hears them when told to hear all."""


class Journal(DelegatingStore):
    """The one store every replica writes to; ``events`` are the watch events of its writes."""

    def __init__(self, inner: Store):
        super().__init__(inner)
        self.events: list[WatchEvent[Any]] = []

    def create(self, obj: R) -> R:
        created = super().create(obj)
        self.events.append(WatchEvent("ADDED", created))
        return created

    def update(self, obj: R) -> R:
        updated = super().update(obj)
        self.events.append(WatchEvent("MODIFIED", updated))
        return updated

    def update_status(self, obj: R) -> R:
        updated = super().update_status(obj)
        self.events.append(WatchEvent("MODIFIED", updated))
        return updated

    def delete(
        self,
        kind: type[R],
        name: str,
        namespace: str | None = None,
        resource_version: str | None = None,
        grace_period_seconds: int | None = None,
    ) -> None:
        last = self.inner.get(kind, name, namespace)  # single-threaded: still the one deleted
        super().delete(kind, name, namespace, resource_version, grace_period_seconds)
        self.events.append(WatchEvent("DELETED", last))


class Hooked(DelegatingStore):
    """A replica's connection to the journal, which runs a test's action once at one moment:
    just before the first create of an object name, or just after the first get of one."""

    def __init__(self, inner: Store):
        super().__init__(inner)
        self._hooks: list[tuple[str, Callable[[str], bool], Callable[[], None]]] = []

    def before_create(self, name: Callable[[str], bool], action: Callable[[], None]) -> None:
        self._hooks.append(("create", name, action))

    def after_get(self, name: Callable[[str], bool], action: Callable[[], None]) -> None:
        self._hooks.append(("get", name, action))

    def unfired(self) -> list[Callable[[], None]]:
        """The actions whose moment never came, taken off the hooks."""
        actions = [hook[2] for hook in self._hooks]
        self._hooks.clear()
        return actions

    def _run_hooks(self, verb: str, name: str) -> None:
        for hook in list(self._hooks):
            if hook[0] == verb and hook[1](name):
                self._hooks.remove(hook)
                hook[2]()

    def create(self, obj: R) -> R:
        self._run_hooks("create", obj.metadata.name)
        return super().create(obj)

    def get(self, kind: type[R], name: str, namespace: str | None = None) -> R:
        found = super().get(kind, name, namespace)
        self._run_hooks("get", name)
        return found


class Replica:
    """One manager's allocator, IPAM service, caches and pod controller, driven by the test."""

    def __init__(self, journal: Journal):
        self.journal = journal
        self.store = Hooked(journal)
        self.allocator = Allocator()
        self.service = IPAMService(self.store, self.allocator, IPAM_NAMESPACE)
        self.cache = ClusterCache(self.store, IPAM_NAMESPACE)
        self.controller = PodController(self.store, self.service, self.cache, workers=0)
        self._heard: dict[type[Resource], int] = dict.fromkeys(KINDS, 0)
        self._listed: list[tuple[type[Resource], WatchEvent[Any]]] = []
        """Listed by start() into the caches, not heard by the handlers yet."""

    def start(self) -> None:
        """Start as a manager does: rebuild from storage, fill the caches from a list of what
        is stored now (not from the history), start the controller (no worker threads). An
        informer's cache is synced before its handlers hear the list: here they hear it when
        the test next calls hear(), the latest they may."""
        self.service.rebuild()
        for kind in KINDS:
            namespace = IPAM_NAMESPACE if kind is IPInstance else None
            for obj in self.store.list(kind, namespace).items:
                key = (obj.metadata.namespace or "", obj.metadata.name)
                self._watched(kind).informer.cache[key] = obj
                self._listed.append((kind, WatchEvent("ADDED", obj)))
            self._heard[kind] = len(self.journal.events)
        self.controller.start()

    def hear(self, *kinds: type[Resource]) -> None:
        """Deliver every event of ``kinds`` (default: all) this replica has not heard yet."""
        for kind in kinds or KINDS:
            while self.hear_next(kind):
                pass

    def hear_next(self, kind: type[Resource]) -> WatchEvent[Any] | None:
        """Deliver the next event of ``kind`` this replica has not heard (None: there is
        none), as its informer would: into the cache first, then to the handlers."""
        for listed in self._listed:
            if listed[0] is kind:
                self._listed.remove(listed)
                self._watched(kind).informer.handler(listed[1])
                return listed[1]
        events = self.journal.events
        while self._heard[kind] < len(events):
            event = events[self._heard[kind]]
            self._heard[kind] += 1
            if isinstance(event.object, kind):
                self._deliver(kind, event)
                return event
        return None

    def _deliver(self, kind: type[Resource], event: WatchEvent[Any]) -> None:
        watched: Watched[Any] = self._watched(kind)
        obj = event.object
        key = (obj.metadata.namespace or "", obj.metadata.name)
        if event.type == "DELETED":
            watched.informer.cache.pop(key, None)
        else:
            watched.informer.cache[key] = obj
        watched.informer.handler(event)

    def _watched(self, kind: type[Resource]) -> Watched[Any]:
        cache = self.cache
        by_kind: dict[type[Resource], Watched[Any]] = {
            Network: cache.networks,
            Subnet: cache.subnets,
            Namespace: cache.namespaces,
            Node: cache.nodes,
            IPInstance: cache.instances,
            Pod: cache.pods,
        }
        return by_kind[kind]

    def queued(self) -> list[str]:
        """The pods the controller queued, taken off its queue (none is worked on meanwhile:
        the controller has no worker threads)."""
        keys = []
        while (key := self.controller.queue.get(timeout=0)) is not None:
            keys.append(key)
            self.controller.queue.done(key)
        return keys

    def serve(self) -> None:
        """Hear everything, then run one pass for every pod that got queued."""
        self.hear()
        for key in self.queued():
            self.controller.reconcile(key)

    def addresses(self, owner: str) -> list[str]:
        """What this replica's allocator gives ``owner``."""
        return [a.address for a in self.service.held_by(owner)]

    def close(self) -> None:
        self.controller.queue.close()


def stored(store: Store) -> list[IPInstance]:
    return store.list(IPInstance, IPAM_NAMESPACE).items


def stored_addresses(store: Store, owner: str) -> list[str]:
    """What storage gives ``owner``, IPv4 first."""
    instances = [i for i in stored(store) if ipinstances.owner_of(i) == owner]
    return [
        ipinstances.address_of(i)
        for i in sorted(instances, key=lambda i: (i.spec.address.version, i.name))
    ]
