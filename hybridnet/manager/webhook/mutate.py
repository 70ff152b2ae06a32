"""Pod mutation, without I/O: decide a new pod's network and steer it to nodes that have it.

The pod's request (pod annotations, then its namespace's, then the cluster defaults) is resolved
against the Networks and Subnets that exist, then written back onto the pod: node selectors so
the scheduler only picks nodes attached to the network and with free addresses, and annotations
recording the decision so the manager allocates from the same network later, even if the
namespace's annotations change in between. The result is an RFC 6902 JSON Patch.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

from hybridnet.api import constants as c
from hybridnet.api.annotations import (
    AnnotationError,
    ClusterDefaults,
    PodNetworkRequest,
    parse_pod_request,
)
from hybridnet.api.builtin import Pod
from hybridnet.api.codec import DecodeError
from hybridnet.api.ordering import oldest_first
from hybridnet.api.resources import Network, Subnet

ATTACHED = "true"
"""Value of the node attachment labels the manager sets."""

QUOTA_LABELS = {
    "IPv4": c.LABEL_IPV4_QUOTA,
    "IPv6": c.LABEL_IPV6_QUOTA,
    "DualStack": c.LABEL_DUALSTACK_QUOTA,
}

JsonPatch = list[dict[str, Any]]


class Refused(ValueError):
    """The pod cannot be admitted; the message says why (and names the annotation)."""


@dataclasses.dataclass(frozen=True)
class Mutation:
    """The outcome for one pod: allowed with a (possibly empty) patch, or refused."""

    allowed: bool
    patch: JsonPatch = dataclasses.field(default_factory=list)
    message: str = ""


@dataclasses.dataclass(frozen=True)
class Decision:
    network_type: str
    network: str | None
    node_selector: dict[str, str]
    annotations: dict[str, str]


# --------------------------------------------------------------------------- JSON Patch


def escape(token: str) -> str:
    """A JSON Pointer token (RFC 6901): ``~`` -> ``~0``, ``/`` -> ``~1``."""
    return token.replace("~", "~0").replace("/", "~1")


def map_patch(path: str, current: Mapping[str, str] | None, wanted: Mapping[str, str]) -> JsonPatch:
    """Operations that give the string map at ``path`` the ``wanted`` entries.

    An absent (or null) map is added whole: a patch cannot add a member to a missing parent."""
    if current is None:
        return [{"op": "add", "path": path, "value": dict(wanted)}] if wanted else []
    return [
        {"op": "replace" if key in current else "add", "path": f"{path}/{escape(key)}", "value": v}
        for key, v in wanted.items()
        if current.get(key) != v
    ]


# --------------------------------------------------------------------------- resolution


def _explicit_type(pod: Mapping[str, str], namespace: Mapping[str, str]) -> bool:
    """Whether the pod or its namespace names a network type (read as parse_pod_request
    does: a pod's key, even empty, hides the namespace's)."""
    key = c.ANNOTATION_NETWORK_TYPE
    value = pod[key] if key in pod else namespace.get(key, "")
    return bool(value.strip())


def _check_subnets(request: PodNetworkRequest, network: str, subnets: Sequence[Subnet]) -> None:
    by_name = {s.name: s for s in subnets}
    for version, name in sorted(request.subnets.items()):
        subnet = by_name.get(name)
        where = f"annotation {c.ANNOTATION_SPECIFIED_SUBNET}"
        if subnet is None:
            raise Refused(f"{where}: subnet {name!r} does not exist")
        if subnet.spec.network != network:
            raise Refused(
                f"{where}: subnet {name!r} belongs to network {subnet.spec.network!r}, "
                f"not {network!r}"
            )
        if subnet.spec.range.version != str(version):
            raise Refused(
                f"{where}: subnet {name!r} is IPv{subnet.spec.range.version}, not IPv{version}"
            )


def _specified_network(request: PodNetworkRequest, networks: Sequence[Network]) -> Network | None:
    if not request.network:
        return None
    network = next((n for n in networks if n.name == request.network), None)
    if network is None:
        raise Refused(
            f"annotation {c.ANNOTATION_SPECIFIED_NETWORK}: "
            f"network {request.network!r} does not exist"
        )
    return network


def _network_type(request: PodNetworkRequest, type_given: bool, network: Network | None) -> str:
    """A specified network decides the type unless the pod (or namespace) says one, and then
    the two must agree."""
    if network is None:
        return request.network_type
    if not type_given:
        return network.spec.type
    if network.spec.type != request.network_type:
        raise Refused(
            f"annotation {c.ANNOTATION_NETWORK_TYPE}: {request.network_type} does not match "
            f"network {network.name!r}, which is {network.spec.type}"
        )
    return request.network_type


def _the_overlay(networks: Sequence[Network]) -> Network:
    overlays = [n for n in networks if n.spec.type == c.TYPE_OVERLAY]
    if not overlays:
        raise Refused(
            f"annotation {c.ANNOTATION_NETWORK_TYPE}: the pod asks for an Overlay network "
            "and the cluster has none"
        )
    return oldest_first(overlays)[0]  # as the manager and the daemons pick (api.ordering)


def _underlay_selector(request: PodNetworkRequest, network: Network | None) -> dict[str, str]:
    """Nodes attached to the network (any underlay network when none is named), with free
    addresses of the pod's family."""
    if network is not None:
        selector = dict(network.spec.node_selector)
    else:
        selector = {c.LABEL_UNDERLAY_ATTACHMENT: ATTACHED}
    selector[QUOTA_LABELS[request.family]] = c.QUOTA_NONEMPTY
    return selector


def resolve(
    request: PodNetworkRequest,
    type_given: bool,
    networks: Sequence[Network],
    subnets: Sequence[Subnet],
) -> Decision:
    """The network type, network, node selector and annotations for ``request``; raises
    Refused."""
    network = _specified_network(request, networks)
    network_type = _network_type(request, type_given, network)
    if network_type == c.TYPE_OVERLAY:
        network = network or _the_overlay(networks)
        selector: dict[str, str] = {}
    elif network_type == c.TYPE_UNDERLAY:
        selector = _underlay_selector(request, network)
    else:
        raise Refused(f"network type {network_type} is not supported for pods")
    annotations = {c.ANNOTATION_NETWORK_TYPE: network_type, c.ANNOTATION_IP_FAMILY: request.family}
    if network is not None:
        _check_subnets(request, network.name, subnets)
        annotations[c.ANNOTATION_SPECIFIED_NETWORK] = network.name
    if request.subnets:
        annotations[c.ANNOTATION_SPECIFIED_SUBNET] = "/".join(
            request.subnets[v] for v in sorted(request.subnets)
        )
    return Decision(network_type, network.name if network else None, selector, annotations)


def _selector_conflicts(current: Mapping[str, str], wanted: Mapping[str, str], why: str) -> None:
    for key, value in wanted.items():
        if key in current and current[key] != value:
            raise Refused(
                f"spec.nodeSelector: {key}={current[key]!r} conflicts with {key}={value!r}, "
                f"which {why} needs"
            )


# --------------------------------------------------------------------------- entry point


def _string_map(value: Any, path: str) -> dict[str, str] | None:
    if value is None:
        return None
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        raise Refused(f"{path} must be a map of strings")
    return {str(k): v for k, v in value.items()}


def mutate_pod(
    pod: Mapping[str, Any],
    namespace_annotations: Mapping[str, str],
    networks: Sequence[Network],
    subnets: Sequence[Subnet],
    defaults: ClusterDefaults | None = None,
) -> Mutation:
    """The mutation of a new pod (its JSON as the API server sent it)."""
    try:
        spec = pod.get("spec")
        if not isinstance(spec, dict):
            raise Refused("the pod has no spec")
        if spec.get("hostNetwork") is True:
            return Mutation(allowed=True)
        raw_meta = pod.get("metadata")
        if not isinstance(raw_meta, dict):
            raise Refused("the pod has no metadata")
        try:  # null maps and lists read as absent, the way the API server reads them
            meta = Pod.from_json(
                {"metadata": {k: v for k, v in raw_meta.items() if v is not None}}
            ).metadata
        except DecodeError as exc:
            raise Refused(f"the pod cannot be read: {exc}") from exc
        try:
            request = parse_pod_request(
                meta.name or meta.generate_name or "",
                meta.annotations,
                namespace_annotations,
                meta.owner_references,
                defaults,
            )
        except AnnotationError as exc:
            raise Refused(str(exc)) from exc
        type_given = _explicit_type(meta.annotations, namespace_annotations)
        decision = resolve(request, type_given, networks, subnets)
        current_selector = _string_map(spec.get("nodeSelector"), "spec.nodeSelector")
        why = f"network {decision.network!r}" if decision.network else "an Underlay pod"
        _selector_conflicts(current_selector or {}, decision.node_selector, why)
        current_annotations = _string_map(raw_meta.get("annotations"), "metadata.annotations")
        patch = map_patch("/metadata/annotations", current_annotations, decision.annotations)
        patch += map_patch("/spec/nodeSelector", current_selector, decision.node_selector)
    except Refused as exc:
        return Mutation(allowed=False, message=str(exc))
    return Mutation(allowed=True, patch=patch)
