"""Allocations as IPInstance objects, and back.

Every IPInstance lives in one namespace (the manager's IPAM namespace) and is named after its
address, so the API server itself refuses a second claim of an address: two managers that both
believe they lead (split brain) cannot both create ``198-19-0-5``. The pod's namespace and name
are in the labels, the binding and the status, which is how the daemon and users find it.

A dual-stack pod's two IPInstances are written one after the other, so each also says which
families the pod's allocation has (``ANNOTATION_FAMILIES``): the daemon, which sees them appear
one at a time, knows from the first whether to wait for the second without reading the pod.
"""

from __future__ import annotations

import datetime
import ipaddress
from collections.abc import Iterable

from hybridnet.api import constants as c
from hybridnet.api.meta import ObjectMeta
from hybridnet.api.naming import (
    LABEL_POD_NAMESPACE,
    instance_name,
    label_value,
    pod_selector,
)
from hybridnet.api.resources import (
    Address,
    Binding,
    IPInstance,
    IPInstanceSpec,
    IPInstanceStatus,
    ReferredObject,
    StatefulInfo,
)
from hybridnet.ipamcore.allocator import Allocation

ANNOTATION_FAMILIES = f"{c.GROUP}/pod-ip-families"
"""The IP versions of the pod's allocation, e.g. ``4,6`` on both IPInstances of a dual-stack
pod (``spec.address.version`` values, comma-separated, ascending)."""

ANNOTATION_BGP_ANNOUNCED = f"{c.GROUP}/bgp-announced"
"""Set by the leading manager on the IPInstance of a pod in a BGP or GlobalBGP network once
the pod's /32 (/128) is announced: ExaBGP acknowledged it for every peer it goes to, and
each of those peers that does not say ``allowNotEstablished`` has its session Established.
The value is the node the route points at, so an address that moves to another node (a
StatefulSet's retained address) is waited for again there. The daemon's ADD waits for it."""

__all__ = [
    "ANNOTATION_BGP_ANNOUNCED",
    "ANNOTATION_FAMILIES",
    "LABEL_POD_NAMESPACE",
    "address_of",
    "bgp_announced_for",
    "build",
    "families_of",
    "instance_name",
    "label_value",
    "now",
    "owner_key",
    "owner_of",
    "pod_selector",
]


def owner_key(pod_namespace: str, pod_name: str) -> str:
    return f"{pod_namespace}/{pod_name}"


def build(
    allocation: Allocation,
    *,
    ipam_namespace: str,
    pod_namespace: str,
    pod_name: str,
    pod_uid: str | None,
    node_name: str,
    ordinal: int | None,
    families: Iterable[int | str],
) -> IPInstance:
    """The IPInstance of one allocation; ``families`` are the IP versions of every allocation
    the pod gets in the same write (recorded in ``ANNOTATION_FAMILIES``)."""
    labels = {
        c.LABEL_NETWORK: label_value(allocation.network),
        c.LABEL_SUBNET: label_value(allocation.subnet),
        c.LABEL_NODE: label_value(node_name),
        c.LABEL_POD: label_value(pod_name),
        LABEL_POD_NAMESPACE: label_value(pod_namespace),
    }
    if pod_uid:
        labels[c.LABEL_POD_UID] = label_value(pod_uid)
    annotations = {ANNOTATION_FAMILIES: ",".join(sorted({str(f) for f in families}))}
    meta = ObjectMeta(
        name=instance_name(allocation.address),
        namespace=ipam_namespace,
        labels=labels,
        annotations=annotations,
    )
    return IPInstance(
        meta,
        IPInstanceSpec(
            network=allocation.network,
            subnet=allocation.subnet,
            address=Address(
                version=str(allocation.version),
                ip=allocation.cidr,
                mac=allocation.mac,
                gateway=allocation.gateway,
                net_id=allocation.net_id,
            ),
            binding=Binding(
                referred_object=ReferredObject(kind="Pod", name=pod_name, uid=pod_uid),
                node_name=node_name,
                pod_uid=pod_uid,
                pod_name=pod_name,
                stateful=StatefulInfo(index=ordinal) if ordinal is not None else None,
            ),
        ),
        # Status is the daemon's to write (sandbox, node); a create cannot set it anyway.
        IPInstanceStatus(),
    )


def owner_of(instance: IPInstance) -> str | None:
    """``namespace/name`` of the pod an IPInstance belongs to (None if it does not say)."""
    binding = instance.spec.binding
    pod_name = binding.pod_name if binding else None
    # Namespace names are DNS labels, so the label always holds the namespace unhashed.
    pod_namespace = instance.metadata.labels.get(LABEL_POD_NAMESPACE)
    if not pod_name or not pod_namespace:
        return None
    return owner_key(pod_namespace, pod_name)


def families_of(instance: IPInstance) -> frozenset[str] | None:
    """The IP versions the IPInstance says its pod's allocation has; None when it does not say
    (written by an older manager) or says something unreadable."""
    text = instance.metadata.annotations.get(ANNOTATION_FAMILIES)
    if text is None:
        return None
    families = frozenset(text.split(","))
    return families if families and families <= {c.IPV4, c.IPV6} else None


def bgp_announced_for(instance: IPInstance) -> str | None:
    """The node whose route to this address the manager has announced (None: not yet)."""
    return instance.metadata.annotations.get(ANNOTATION_BGP_ANNOUNCED) or None


def address_of(instance: IPInstance) -> str:
    return str(ipaddress.ip_interface(instance.spec.address.ip).ip)


def now() -> str:
    """A timestamp in the API's RFC 3339 form."""
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
