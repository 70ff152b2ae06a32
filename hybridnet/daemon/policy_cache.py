"""What NetworkPolicy enforcement needs to know about the whole cluster, kept by informers.

A policy on this node selects local pods, but its peers are pods and namespaces anywhere, so
every Pod, Namespace and NetworkPolicy is watched cluster-wide (as every policy agent does),
and every IPInstance of the IPAM namespace: a pod's addresses are the ones this project
allocated for it, known before its sandbox exists (Pods carry no address until a kubelet
reports one). ``on_change`` (from an informer's thread) wakes the reconcile worker.

On Kubernetes this needs, beyond the daemon's other rules: pods, namespaces (core) and
networkpolicies (networking.k8s.io) list and watch cluster-wide, and ipinstances list and
watch in the IPAM namespace (already granted for this node's own).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from hybridnet.api.builtin import Namespace, NetworkPolicy, Pod
from hybridnet.api.resources import IPInstance
from hybridnet.daemon.datapath.view import PolicyView
from hybridnet.daemon.health import WatchHealth
from hybridnet.store.informer import Backoff, Informer
from hybridnet.store.interface import Store, WatchEvent


class PolicyCache:
    """Pods, Namespaces and NetworkPolicies of every namespace and the IPAM namespace's
    IPInstances; :meth:`snapshot` hands the reconciler a consistent copy."""

    def __init__(
        self,
        store: Store,
        ipam_namespace: str,
        *,
        watch_timeout: float = 30.0,
        backoff: Backoff | None = None,
    ):
        self.on_change: Callable[[], None] = lambda: None
        self.health: dict[str, WatchHealth] = {}

        def informer(kind: Any, namespace: str | None = None) -> Informer[Any]:
            health = self.health.setdefault(kind.KIND.plural, WatchHealth(store))
            return Informer(
                health,
                kind,
                self._changed,
                namespace=namespace,
                watch_timeout=watch_timeout,
                backoff=backoff,
            )

        self.pods: Informer[Pod] = informer(Pod)
        self.namespaces: Informer[Namespace] = informer(Namespace)
        self.policies: Informer[NetworkPolicy] = informer(NetworkPolicy)
        self.addresses: Informer[IPInstance] = informer(IPInstance, ipam_namespace)

    @property
    def informers(self) -> tuple[tuple[Informer[Any], WatchHealth], ...]:
        found: list[Informer[Any]] = [self.pods, self.namespaces, self.policies, self.addresses]
        return tuple((each, self.health[each.kind.KIND.plural]) for each in found)

    def synced(self) -> bool:
        """Whether each informer has listed once: before that a policy's peers may be
        missing, and enforcing it from a partial picture would cut allowed traffic."""
        return all(informer.synced.is_set() for informer, _ in self.informers)

    def snapshot(self) -> PolicyView | None:
        """Copies of the caches (their dicts change under the informers' threads), ordered
        by key so equal contents compare equal; None until every informer has listed."""
        if not self.synced():
            return None
        return PolicyView(
            pods=_sorted(self.pods.cache.copy()),
            namespaces=_sorted(self.namespaces.cache.copy()),
            policies=_sorted(self.policies.cache.copy()),
            addresses=_sorted(self.addresses.cache.copy()),
        )

    def _changed(self, event: WatchEvent[Any]) -> None:
        self.on_change()


def _sorted(cache: dict[tuple[str, str], Any]) -> tuple[Any, ...]:
    return tuple(cache[key] for key in sorted(cache))
