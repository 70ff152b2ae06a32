"""The daemon's view of the store, kept current by informers instead of requests per CNI call.

Five informers: this node's IPInstances (in the IPAM namespace, selected by the node label the
allocation writes), indexed by pod, the Networks, the Subnets, every node's NodeInfo and the
Nodes (the last three feed only the datapath's reconcile worker, which ``on_change`` wakes:
NodeInfos carry the remote VTEPs, a Node's labels decide which underlay network attaches it;
the API server cannot watch one Node by name, so all are watched, as kube-proxy does). A daemon
that enforces NetworkPolicy also runs hybridnet.daemon.policy_cache's informers (every Pod,
Namespace, NetworkPolicy and IPInstance): they count for readiness, and the datapath's view
carries their snapshot once they have listed.

ADD waits here for the manager's allocation: a condition variable that the informer's handler
wakes on every change, bounded by the allocation timeout; a BGP pod's ADD then waits the same
way for the manager's ``bgp-announced`` mark naming this node (its route is out). STATUS asks
:meth:`NodeCache.problem`: ready means every cache has
synced and the store answered each informer's latest list or watch (hybridnet.daemon.health).

A dual-stack allocation is written as two IPInstances in two steps; each says which families
the allocation has (``ipinstances.ANNOTATION_FAMILIES``), so the first one tells the daemon to
wait for the second.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from hybridnet.api import constants as c
from hybridnet.api.builtin import Node
from hybridnet.api.naming import label_value
from hybridnet.api.resources import IPInstance, Network, NodeInfo, Subnet
from hybridnet.daemon.datapath.view import PolicyView
from hybridnet.daemon.health import WatchHealth
from hybridnet.daemon.policy_cache import PolicyCache
from hybridnet.ipamstore import ipinstances
from hybridnet.store.informer import Backoff, Informer
from hybridnet.store.interface import Store, WatchEvent


class AllocationTimeout(Exception):
    """The pod's addresses did not appear in time; the runtime should retry."""


class NotAnnounced(Exception):
    """The manager did not mark these IPInstances' BGP routes announced in time."""

    def __init__(self, waiting: list[str]):
        super().__init__(", ".join(waiting))
        self.waiting = waiting


def node_selector(node_name: str) -> str:
    """The label selector of the IPInstances allocated to pods of ``node_name``."""
    return f"{c.LABEL_NODE}={label_value(node_name)}"


def allocation_complete(found: list[IPInstance]) -> bool:
    """Whether ``found`` (one pod's IPInstances) holds every family its allocation has."""
    have = {i.spec.address.version for i in found}
    if not have:
        return False
    declared: set[str] = set()
    for instance in found:
        # An IPInstance without the annotation (written by an older manager) declares
        # nothing; if none declares, any family present is enough, as it always was.
        declared |= ipinstances.families_of(instance) or set()
    return declared <= have


def one_per_family(found: list[IPInstance]) -> list[IPInstance]:
    """The pod's address of each family: the lowest name, the one every manager keeps when
    split brain gave a pod two."""
    chosen: dict[str, IPInstance] = {}
    for instance in sorted(found, key=lambda i: i.name):
        chosen.setdefault(instance.spec.address.version, instance)
    return [chosen[v] for v in sorted(chosen)]


class NodeCache:
    """This node's IPInstances by pod, the Networks, Subnets and NodeInfos, from the store's
    watches. ``on_change`` is called (from an informer's thread) after every change."""

    def __init__(
        self,
        store: Store,
        node_name: str,
        ipam_namespace: str,
        *,
        watch_timeout: float = 30.0,
        backoff: Backoff | None = None,
        network_policy: bool = False,
    ):
        self._on_change: Callable[[], None] = lambda: None
        self.on_instance: Callable[[WatchEvent[IPInstance]], None] = lambda event: None
        """Hears each of this node's IPInstance events, in watch order, after the index."""
        self._instance_health = WatchHealth(store)
        self._network_health = WatchHealth(store)
        self._subnet_health = WatchHealth(store)
        self._node_info_health = WatchHealth(store)
        self._node_health = WatchHealth(store)
        self.node_name = node_name
        self.instances = Informer(
            self._instance_health,
            IPInstance,
            self._on_instance,
            namespace=ipam_namespace,
            label_selector=node_selector(node_name),
            watch_timeout=watch_timeout,
            backoff=backoff,
        )
        self.networks = Informer(
            self._network_health,
            Network,
            self._on_other,
            watch_timeout=watch_timeout,
            backoff=backoff,
        )
        self.subnets = Informer(
            self._subnet_health,
            Subnet,
            self._on_other,
            watch_timeout=watch_timeout,
            backoff=backoff,
        )
        self.node_infos = Informer(
            self._node_info_health,
            NodeInfo,
            self._on_other,
            watch_timeout=watch_timeout,
            backoff=backoff,
        )
        self.nodes = Informer(
            self._node_health,
            Node,
            self._on_node,
            watch_timeout=watch_timeout,
            backoff=backoff,
        )
        self.policy = (
            PolicyCache(store, ipam_namespace, watch_timeout=watch_timeout, backoff=backoff)
            if network_policy
            else None
        )
        """The cluster-wide inputs of NetworkPolicy (only for a daemon that enforces it)."""
        self._changed = threading.Condition()
        self._by_pod: dict[str, dict[str, IPInstance]] = {}
        self._owner_of: dict[str, str] = {}
        """IPInstance name -> the pod it was indexed under."""

    # ----------------------------------------------------------------- lifecycle

    @property
    def on_change(self) -> Callable[[], None]:
        """Called (from an informer's thread) after every change, policy inputs' included."""
        return self._on_change

    @on_change.setter
    def on_change(self, callback: Callable[[], None]) -> None:
        self._on_change = callback
        if self.policy is not None:
            self.policy.on_change = callback

    @property
    def _datapath_informers(self) -> tuple[tuple[Informer[Any], WatchHealth], ...]:
        return (
            (self.instances, self._instance_health),
            (self.networks, self._network_health),
            (self.subnets, self._subnet_health),
            (self.node_infos, self._node_info_health),
            (self.nodes, self._node_health),
        )

    @property
    def _informers(self) -> tuple[tuple[Informer[Any], WatchHealth], ...]:
        """Every informer: readiness needs them all (a node that cannot see the policies
        cannot enforce them)."""
        policy = self.policy.informers if self.policy is not None else ()
        return self._datapath_informers + policy

    def start(self) -> NodeCache:
        for informer, _ in self._informers:
            informer.start()
        return self

    def signal_stop(self) -> None:
        """Ask every informer to end; a watch blocked on a quiet stream notices when its
        store is closed (or at its timeout)."""
        for informer, _ in self._informers:
            informer.signal_stop()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the informers, waiting at most ``timeout`` seconds in all (a watch blocked on
        a quiet stream ends only at its timeout or when the store closes; the threads are
        daemons)."""
        deadline = time.monotonic() + timeout
        self.signal_stop()
        for informer, _ in self._informers:
            informer.stop(timeout=max(deadline - time.monotonic(), 0))

    def problem(self) -> str | None:
        """None when the caches are current (ready), else why not."""
        for informer, health in self._informers:
            plural = informer.kind.KIND.plural
            failure = health.problem
            if not informer.synced.is_set():
                return f"{plural} not listed yet" + (f": {failure}" if failure else "")
            if failure is not None:
                return f"watching {plural}: {failure}"
        return None

    # ----------------------------------------------------------------- reads

    def pod_instances(self, owner: str) -> list[IPInstance]:
        """The IPInstances of pod ``owner`` (``namespace/name``) on this node, as cached."""
        with self._changed:
            return list(self._by_pod.get(owner, {}).values())

    def wait_for_pod(self, owner: str, timeout: float) -> list[IPInstance]:
        """The pod's IPInstances once every family of its allocation is here, waiting up to
        ``timeout`` seconds (AllocationTimeout after that)."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                found = list(self._by_pod.get(owner, {}).values())
                if allocation_complete(found):
                    return found
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AllocationTimeout(self._missing(owner, found, timeout))
                self._changed.wait(remaining)

    def _missing(self, owner: str, found: list[IPInstance], timeout: float) -> str:
        if found:
            have = ",".join(sorted({i.spec.address.version for i in found}))
            what = f"only IPv{have} of a dual-stack allocation for pod {owner}"
        else:
            what = f"no address for pod {owner}"
        message = f"{what} after {timeout:.0f}s"
        problem = self.problem()
        return f"{message} (store unavailable: {problem})" if problem else message

    def wait_for_announced(self, owner: str, names: set[str], timeout: float) -> list[IPInstance]:
        """The pod's IPInstances once each of ``names`` carries the manager's mark that its
        route to this node is announced, waiting up to ``timeout`` seconds (NotAnnounced,
        naming those still waiting, after that)."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                held = self._by_pod.get(owner, {})
                waiting = sorted(
                    name
                    for name in names
                    if name not in held
                    or ipinstances.bgp_announced_for(held[name]) != self.node_name
                )
                if not waiting:
                    return list(held.values())
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise NotAnnounced(waiting)
                self._changed.wait(remaining)

    def wait_for_newer(self, instance: IPInstance, timeout: float) -> IPInstance | None:
        """A cached version of ``instance`` other than the one given (after a write met a
        newer one), waiting up to ``timeout`` seconds; None if none arrives."""
        owner = ipinstances.owner_of(instance)
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                current = self._by_pod.get(owner or "", {}).get(instance.name)
                version = instance.metadata.resource_version
                if current is not None and current.metadata.resource_version != version:
                    return current
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return None
                self._changed.wait(remaining)

    def network(self, name: str, timeout: float) -> Network | None:
        """The Network called ``name``, waiting up to ``timeout`` seconds for the first list;
        None when there is no such network (or the list did not come)."""
        self.networks.synced.wait(timeout)
        return self.networks.cache.get(("", name))

    def synced(self) -> bool:
        """Whether the node datapath's informers have listed once (it needs all of them;
        the policy table waits for its own, see :meth:`policy_view`)."""
        return all(informer.synced.is_set() for informer, _ in self._datapath_informers)

    def policy_view(self) -> PolicyView | None:
        """The policy inputs; None without enforcement or before their informers listed."""
        return self.policy.snapshot() if self.policy is not None else None

    def snapshot(self) -> tuple[list[Network], list[Subnet], list[IPInstance], list[NodeInfo]]:
        """Copies of the cached lists (the informers' dicts change under their threads)."""
        with self._changed:
            local = [i for held in self._by_pod.values() for i in held.values()]
        return (
            list(self.networks.cache.copy().values()),
            list(self.subnets.cache.copy().values()),
            local,
            list(self.node_infos.cache.copy().values()),
        )

    # ----------------------------------------------------------------- events

    def node_labels(self) -> dict[str, str]:
        """This node's labels (none when it has no Node object, as in the embedded store)."""
        node = self.nodes.cache.get(("", self.node_name))
        return dict(node.metadata.labels or {}) if node is not None else {}

    def _on_other(self, event: WatchEvent[Any]) -> None:
        self.on_change()

    def _on_node(self, event: WatchEvent[Node]) -> None:
        if event.object.name == self.node_name:
            self.on_change()  # another node's labels change nothing here

    def _on_instance(self, event: WatchEvent[IPInstance]) -> None:
        instance = event.object
        with self._changed:
            previous = self._owner_of.pop(instance.name, None)
            if previous is not None:
                held = self._by_pod[previous]
                held.pop(instance.name, None)
                if not held:
                    del self._by_pod[previous]
            owner = ipinstances.owner_of(instance)
            if event.type != "DELETED" and owner is not None:
                self._by_pod.setdefault(owner, {})[instance.name] = instance
                self._owner_of[instance.name] = owner
            self._changed.notify_all()
        self.on_instance(event)
        self.on_change()
