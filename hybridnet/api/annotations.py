"""What a pod asks of the network, read from its annotations (then its namespace's, then the
cluster defaults), with errors that name the annotation.

The webhook uses this to mutate and admit pods; the manager uses it to allocate. Keys are the
reference's (``networking.alibaba.com/...``); see hybridnet.api.constants.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import re
from collections.abc import Mapping, Sequence

from hybridnet.api import constants as c
from hybridnet.api.meta import OwnerReference

FAMILIES = ("IPv4", "IPv6", "DualStack")
NETWORK_TYPES = (c.TYPE_UNDERLAY, c.TYPE_OVERLAY)
_MAC = re.compile(r"^[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}$")
_ORDINAL = re.compile(r"-(\d+)$")


class AnnotationError(ValueError):
    """An annotation's value cannot be used; the message names the annotation."""

    def __init__(self, annotation: str, problem: str):
        super().__init__(f"annotation {annotation}: {problem}")
        self.annotation = annotation
        self.problem = problem


@dataclasses.dataclass(frozen=True)
class ClusterDefaults:
    """What a pod gets when neither it nor its namespace says (manager flags)."""

    network_type: str = c.TYPE_UNDERLAY
    ip_family: str = "IPv4"


@dataclasses.dataclass(frozen=True)
class PodNetworkRequest:
    network_type: str
    network: str | None
    family: str
    subnets: Mapping[int, str]
    """Named subnet per IP version."""
    fixed_ips: Mapping[int, str]
    """Fixed address per IP version, picked from ip-pool by the pod's ordinal."""
    mac: str | None
    retain: bool
    """Keep the address across delete/re-create (StatefulSet pods only)."""
    stateful_ordinal: int | None

    @property
    def versions(self) -> tuple[int, ...]:
        return {"IPv4": (4,), "IPv6": (6,), "DualStack": (4, 6)}[self.family]


def stateful_ordinal(pod_name: str, owners: Sequence[OwnerReference]) -> int | None:
    """The ordinal of a StatefulSet's pod (``web-3`` -> 3), None for other pods."""
    if not any(o.kind == "StatefulSet" for o in owners):
        return None
    match = _ORDINAL.search(pod_name)
    return int(match.group(1)) if match else None


def _lookup(key: str, pod: Mapping[str, str], namespace: Mapping[str, str]) -> str | None:
    value = pod.get(key)
    if value is None:
        value = namespace.get(key)
    return value.strip() if value is not None else None


def _choice(key: str, value: str, allowed: Sequence[str]) -> str:
    for option in allowed:
        if value.lower() == option.lower():
            return option
    raise AnnotationError(key, f"{value!r} must be one of {', '.join(allowed)}")


def _parse_subnets(value: str, family: str) -> dict[int, str]:
    parts = [p.strip() for p in value.split("/")]
    if any(not p for p in parts) or len(parts) > 2:
        raise AnnotationError(
            c.ANNOTATION_SPECIFIED_SUBNET, f"{value!r} must be 'name' or 'v4name/v6name'"
        )
    if len(parts) == 2:
        if family != "DualStack":
            raise AnnotationError(
                c.ANNOTATION_SPECIFIED_SUBNET, f"two subnets {value!r} need ip-family DualStack"
            )
        return {4: parts[0], 6: parts[1]}
    return {6 if family == "IPv6" else 4: parts[0]}


def _parse_pool_entry(entry: str, family: str) -> dict[int, str]:
    addresses: dict[int, str] = {}
    for text in (t.strip() for t in entry.split("/")):
        try:
            address = ipaddress.ip_address(text)
        except ValueError:
            raise AnnotationError(c.ANNOTATION_IP_POOL, f"{text!r} is not an IP address") from None
        if address.version in addresses:
            raise AnnotationError(
                c.ANNOTATION_IP_POOL, f"{entry!r} has two IPv{address.version} addresses"
            )
        addresses[address.version] = str(address)
    wanted = {"IPv4": {4}, "IPv6": {6}, "DualStack": {4, 6}}[family]
    if set(addresses) != wanted:
        raise AnnotationError(
            c.ANNOTATION_IP_POOL,
            f"{entry!r} does not match ip-family {family} (one address per family)",
        )
    return addresses


def _pick(key: str, value: str, ordinal: int | None) -> str:
    entries = [e.strip() for e in value.split(",") if e.strip()]
    if not entries:
        raise AnnotationError(key, "is empty")
    if ordinal is None:
        if len(entries) > 1:
            raise AnnotationError(
                key, f"has {len(entries)} entries but the pod is not a StatefulSet's"
            )
        return entries[0]
    if ordinal >= len(entries):
        raise AnnotationError(
            key, f"has {len(entries)} entries, too few for StatefulSet ordinal {ordinal}"
        )
    return entries[ordinal]


def parse_pod_request(
    pod_name: str,
    pod_annotations: Mapping[str, str],
    namespace_annotations: Mapping[str, str],
    owners: Sequence[OwnerReference] = (),
    defaults: ClusterDefaults | None = None,
) -> PodNetworkRequest:
    """Resolve the pod's request: pod annotation, else namespace annotation, else default.

    ``ip-pool`` and ``mac-pool`` are read from the pod only: they are per-workload."""
    defaults = defaults or ClusterDefaults()
    raw_type = _lookup(c.ANNOTATION_NETWORK_TYPE, pod_annotations, namespace_annotations)
    network_type = (
        _choice(c.ANNOTATION_NETWORK_TYPE, raw_type, NETWORK_TYPES)
        if raw_type
        else defaults.network_type
    )
    raw_family = _lookup(c.ANNOTATION_IP_FAMILY, pod_annotations, namespace_annotations)
    family = (
        _choice(c.ANNOTATION_IP_FAMILY, raw_family, FAMILIES) if raw_family else defaults.ip_family
    )
    network = (
        _lookup(c.ANNOTATION_SPECIFIED_NETWORK, pod_annotations, namespace_annotations) or None
    )
    raw_subnets = _lookup(c.ANNOTATION_SPECIFIED_SUBNET, pod_annotations, namespace_annotations)
    subnets = _parse_subnets(raw_subnets, family) if raw_subnets else {}
    if subnets and not network:
        raise AnnotationError(c.ANNOTATION_SPECIFIED_SUBNET, "needs specified-network as well")
    raw_retain = _lookup(c.ANNOTATION_IP_RETAIN, pod_annotations, namespace_annotations)
    if raw_retain is None or raw_retain == "":
        retain = True
    elif raw_retain.lower() in ("true", "false"):
        retain = raw_retain.lower() == "true"
    else:
        raise AnnotationError(c.ANNOTATION_IP_RETAIN, f"{raw_retain!r} must be true or false")
    ordinal = stateful_ordinal(pod_name, owners)
    fixed: dict[int, str] = {}
    pool = pod_annotations.get(c.ANNOTATION_IP_POOL)
    if pool is not None:
        fixed = _parse_pool_entry(_pick(c.ANNOTATION_IP_POOL, pool, ordinal), family)
    mac = None
    mac_pool = pod_annotations.get(c.ANNOTATION_MAC_POOL)
    if mac_pool is not None:
        mac = _pick(c.ANNOTATION_MAC_POOL, mac_pool, ordinal)
        if not _MAC.match(mac) or int(mac[:2], 16) & 1:
            raise AnnotationError(c.ANNOTATION_MAC_POOL, f"{mac!r} is not a unicast MAC address")
        mac = mac.lower()
    return PodNetworkRequest(
        network_type=network_type,
        network=network,
        family=family,
        subnets=subnets,
        fixed_ips=fixed,
        mac=mac,
        retain=retain,
        stateful_ordinal=ordinal,
    )
