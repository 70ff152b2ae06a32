"""The store interface every component uses, whatever the backend.

Semantics follow the Kubernetes API server so that code written against one backend behaves the
same on the other: resource versions are opaque strings that change on every write; ``create``
refuses a taken name (:class:`~hybridnet.store.errors.AlreadyExists`); ``update`` succeeds only
against the current version (:class:`~hybridnet.store.errors.Conflict` otherwise) and leaves
``status`` alone for kinds with a status subresource, while ``update_status`` changes only
``status``; ``watch`` streams changes after a version and raises
:class:`~hybridnet.store.errors.Gone` when that history was compacted. Every object of a hybridnet
kind is validated (hybridnet.api.validation) before it is sent or stored.
"""

from __future__ import annotations

import abc
import dataclasses
from collections.abc import Iterator
from typing import Generic, Literal, TypeVar

from hybridnet.api.meta import Resource

R = TypeVar("R", bound=Resource)

EventType = Literal["ADDED", "MODIFIED", "DELETED", "BOOKMARK"]


@dataclasses.dataclass(frozen=True)
class ListResult(Generic[R]):
    items: list[R]
    resource_version: str
    """The store's version at the time of the list: watch from here to miss nothing."""


@dataclasses.dataclass(frozen=True)
class WatchEvent(Generic[R]):
    type: EventType
    object: R
    """For BOOKMARK, only ``metadata.resource_version`` is meaningful."""


class Store(abc.ABC):
    """Get, list, create, update, update status, delete and watch objects of any known kind."""

    @abc.abstractmethod
    def get(self, kind: type[R], name: str, namespace: str | None = None) -> R: ...

    @abc.abstractmethod
    def list(
        self,
        kind: type[R],
        namespace: str | None = None,
        label_selector: str | None = None,
    ) -> ListResult[R]:
        """Objects of ``kind`` (in ``namespace``, or all namespaces when None)."""

    @abc.abstractmethod
    def create(self, obj: R) -> R:
        """Store a new object; returns it with uid and resource version set."""

    @abc.abstractmethod
    def update(self, obj: R) -> R:
        """Replace an object's spec and metadata if ``obj.metadata.resource_version`` is
        current."""

    @abc.abstractmethod
    def update_status(self, obj: R) -> R:
        """Replace an object's status if ``obj.metadata.resource_version`` is current."""

    @abc.abstractmethod
    def delete(
        self,
        kind: type[R],
        name: str,
        namespace: str | None = None,
        resource_version: str | None = None,
        grace_period_seconds: int | None = None,
    ) -> None:
        """Delete an object, only at ``resource_version`` when given (Conflict otherwise).
        ``grace_period_seconds=0`` deletes a pod at once instead of marking it terminating
        (what kubelet does when a pod has stopped); backends without grace ignore it."""

    @abc.abstractmethod
    def watch(
        self,
        kind: type[R],
        resource_version: str,
        namespace: str | None = None,
        label_selector: str | None = None,
        timeout_seconds: float | None = None,
    ) -> Iterator[WatchEvent[R]]:
        """Changes after ``resource_version``, in order, until ``timeout_seconds`` pass (the
        iterator then ends and the caller resumes from the last version it saw).

        With ``label_selector``, as the API server does: an object changed so that it stops
        matching arrives as DELETED, carrying its last matching state at the version of that
        change; one changed so that it starts matching arrives as ADDED; changes to objects
        that match neither before nor after are not sent."""

    @abc.abstractmethod
    def close(self) -> None:
        """Release connections; the store is unusable afterwards."""
