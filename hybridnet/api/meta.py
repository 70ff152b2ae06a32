"""Object metadata and the kind descriptors every stored object carries."""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar, Self

from hybridnet.api import codec


@dataclasses.dataclass(frozen=True)
class ResourceKind:
    """Where a kind lives in the API: group/version, plural for URLs, and its scope."""

    group: str
    version: str
    kind: str
    plural: str
    namespaced: bool
    status_subresource: bool = True
    """Whether updates of the object leave ``status`` alone (and status has its own verb)."""

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version


@dataclasses.dataclass
class OwnerReference:
    api_version: str
    kind: str
    name: str
    uid: str
    controller: bool | None = None
    block_owner_deletion: bool | None = None


@dataclasses.dataclass
class ObjectMeta:
    """The subset of Kubernetes ObjectMeta hybridnet reads; the rest is kept in ``extra``."""

    name: str = ""
    namespace: str | None = None
    generate_name: str | None = None
    labels: dict[str, str] = dataclasses.field(default_factory=dict)
    annotations: dict[str, str] = dataclasses.field(default_factory=dict)
    resource_version: str | None = None
    uid: str | None = None
    generation: int | None = None
    creation_timestamp: str | None = None
    deletion_timestamp: str | None = None
    deletion_grace_period_seconds: int | None = None
    owner_references: list[OwnerReference] = dataclasses.field(default_factory=list)
    finalizers: list[str] = dataclasses.field(default_factory=list)
    extra: dict[str, Any] = dataclasses.field(default_factory=dict, metadata={"skip": True})


@dataclasses.dataclass
class Resource:
    """Base of every stored object: ``metadata`` plus the kind's own fields."""

    KIND: ClassVar[ResourceKind]

    metadata: ObjectMeta

    @property
    def name(self) -> str:
        return self.metadata.name

    @property
    def namespace(self) -> str | None:
        return self.metadata.namespace

    @property
    def resource_version(self) -> str | None:
        return self.metadata.resource_version

    def to_json(self) -> dict[str, Any]:
        body = codec.encode(self)
        body = {"apiVersion": self.KIND.api_version, "kind": self.KIND.kind, **body}
        body["metadata"] = {k: v for k, v in body["metadata"].items() if v not in ({}, [])}
        return body

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Self:
        return codec.decode(cls, data)
