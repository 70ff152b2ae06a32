"""Built-in Kubernetes objects components read or write: kept as the API's JSON plus metadata.

hybridnet needs only a few fields of each, so instead of modelling the whole core API these keep
the body as it came and offer typed accessors for what is used.
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar, Self

from hybridnet.api import codec
from hybridnet.api.meta import ObjectMeta, Resource, ResourceKind


@dataclasses.dataclass
class BuiltinObject(Resource):
    """A core object: typed ``metadata``, everything else (spec, status, ...) in ``body``."""

    body: dict[str, Any] = dataclasses.field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        metadata = codec.encode(self.metadata)
        metadata = {k: v for k, v in metadata.items() if v not in ({}, [])}
        return {
            **self.body,
            "apiVersion": self.KIND.api_version,
            "kind": self.KIND.kind,
            "metadata": metadata,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Self:
        metadata = codec.decode(ObjectMeta, data.get("metadata") or {}, "metadata")
        body = {k: v for k, v in data.items() if k not in {"metadata", "apiVersion", "kind"}}
        return cls(metadata=metadata, body=body)


@dataclasses.dataclass
class Pod(BuiltinObject):
    KIND: ClassVar[ResourceKind] = ResourceKind("", "v1", "Pod", "pods", True)

    @property
    def node_name(self) -> str | None:
        value = self.body.get("spec", {}).get("nodeName")
        return str(value) if value else None

    @property
    def phase(self) -> str | None:
        value = self.body.get("status", {}).get("phase")
        return str(value) if value else None


@dataclasses.dataclass
class Node(BuiltinObject):
    KIND: ClassVar[ResourceKind] = ResourceKind("", "v1", "Node", "nodes", False)


@dataclasses.dataclass
class Namespace(BuiltinObject):
    KIND: ClassVar[ResourceKind] = ResourceKind("", "v1", "Namespace", "namespaces", False)


@dataclasses.dataclass
class NetworkPolicy(BuiltinObject):
    """``networking.k8s.io/v1`` NetworkPolicy: ``spec`` is parsed and checked by
    hybridnet.policy.model (the daemon enforces it, ``hybridnet-ctl policy`` explains it)."""

    KIND: ClassVar[ResourceKind] = ResourceKind(
        "networking.k8s.io", "v1", "NetworkPolicy", "networkpolicies", True,
        status_subresource=False,
    )  # fmt: skip

    @property
    def spec(self) -> dict[str, Any]:
        value = self.body.get("spec")
        return value if isinstance(value, dict) else {}


@dataclasses.dataclass
class Lease(BuiltinObject):
    KIND: ClassVar[ResourceKind] = ResourceKind(
        "coordination.k8s.io", "v1", "Lease", "leases", True
    )


@dataclasses.dataclass
class Event(BuiltinObject):
    KIND: ClassVar[ResourceKind] = ResourceKind(
        "", "v1", "Event", "events", True, status_subresource=False
    )


@dataclasses.dataclass
class ValidatingWebhookConfiguration(BuiltinObject):
    KIND: ClassVar[ResourceKind] = ResourceKind(
        "admissionregistration.k8s.io",
        "v1",
        "ValidatingWebhookConfiguration",
        "validatingwebhookconfigurations",
        False,
        status_subresource=False,
    )


@dataclasses.dataclass
class MutatingWebhookConfiguration(BuiltinObject):
    KIND: ClassVar[ResourceKind] = ResourceKind(
        "admissionregistration.k8s.io",
        "v1",
        "MutatingWebhookConfiguration",
        "mutatingwebhookconfigurations",
        False,
        status_subresource=False,
    )


BUILTIN_KINDS: tuple[type[BuiltinObject], ...] = (
    Pod,
    Node,
    Namespace,
    NetworkPolicy,
    Lease,
    Event,
    ValidatingWebhookConfiguration,
    MutatingWebhookConfiguration,
)
