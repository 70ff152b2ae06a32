"""What the webhook reads of the cluster, behind a small protocol so rules can be fed by anything.

Reads go to the store on every review rather than to a cache: admission decides on the state of
the moment (a subnet created a second ago must already count for overlap), and reviews are rare.
"""

from __future__ import annotations

from typing import Protocol

from hybridnet.api.builtin import Namespace, Node
from hybridnet.api.resources import IPInstance, Network, Subnet
from hybridnet.store.errors import NotFound
from hybridnet.store.interface import Store


class ClusterView(Protocol):
    """The objects admission decisions depend on."""

    def networks(self) -> list[Network]: ...

    def subnets(self) -> list[Subnet]: ...

    def nodes(self) -> list[Node]: ...

    def ipinstances(self) -> list[IPInstance]: ...

    def namespace_annotations(self, name: str) -> dict[str, str]:
        """The namespace's annotations ({} when it does not exist)."""
        ...


class StoreView:
    """A ClusterView over a Store (any backend); store errors propagate to the caller."""

    def __init__(self, store: Store, ipam_namespace: str | None = None) -> None:
        self.store = store
        self.ipam_namespace = ipam_namespace
        """Where the manager keeps IPInstances (None: every namespace)."""

    def networks(self) -> list[Network]:
        return self.store.list(Network).items

    def subnets(self) -> list[Subnet]:
        return self.store.list(Subnet).items

    def nodes(self) -> list[Node]:
        return self.store.list(Node).items

    def ipinstances(self) -> list[IPInstance]:
        return self.store.list(IPInstance, self.ipam_namespace).items

    def namespace_annotations(self, name: str) -> dict[str, str]:
        try:
            return dict(self.store.get(Namespace, name).metadata.annotations)
        except NotFound:
            return {}
