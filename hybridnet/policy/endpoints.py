"""Pods, namespaces and NetworkPolicies from their API objects into the policy model: the one
place that knows where labels, named container ports and addresses live in a Pod."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from typing import Any

from hybridnet.api.builtin import Namespace, NetworkPolicy, Pod
from hybridnet.policy.model import (
    IPAddress,
    NamedPort,
    NamespaceInfo,
    ParsedPolicy,
    PodEndpoint,
    Protocol,
    parse_policy,
)


def named_ports(pod: Pod) -> tuple[NamedPort, ...]:
    """The pod's named container ports (containers, then sidecars: init containers that keep
    running), first definition of a name and protocol winning; malformed entries skipped."""
    spec = pod.body.get("spec") or {}
    containers = list(spec.get("containers") or [])
    containers += [c for c in spec.get("initContainers") or [] if _is_sidecar(c)]
    seen: dict[tuple[str, Protocol], NamedPort] = {}
    for container in containers:
        for entry in (container or {}).get("ports") or []:
            found = _named_port(entry)
            if found is not None:
                seen.setdefault((found.name, found.protocol), found)
    return tuple(sorted(seen.values()))


def _is_sidecar(container: Any) -> bool:
    return isinstance(container, Mapping) and container.get("restartPolicy") == "Always"


def _named_port(entry: Any) -> NamedPort | None:
    if not isinstance(entry, Mapping):
        return None
    name, number = entry.get("name"), entry.get("containerPort")
    if not isinstance(name, str) or not name or isinstance(number, bool):
        return None
    if not isinstance(number, int) or not 1 <= number <= 65535:
        return None
    try:
        protocol = Protocol(entry.get("protocol") or Protocol.TCP)
    except ValueError:
        return None
    return NamedPort(name, protocol, number)


def status_addresses(pod: Pod) -> tuple[IPAddress, ...]:
    """``status.podIPs`` (and ``podIP``) as the kubelet reports them."""
    status = pod.body.get("status") or {}
    texts = [entry.get("ip") for entry in status.get("podIPs") or [] if isinstance(entry, dict)]
    texts.append(status.get("podIP"))
    return canonical_addresses(t for t in texts if isinstance(t, str))


def canonical_addresses(texts: Iterable[str]) -> tuple[IPAddress, ...]:
    """Parsed, without duplicates, IPv4 first; unparsable text and prefix lengths dropped
    (an IPInstance's ``198.19.0.5/24`` counts as ``198.19.0.5``)."""
    found: set[IPAddress] = set()
    for text in texts:
        try:
            found.add(ipaddress.ip_interface(text.strip()).ip)
        except ValueError:
            continue
    return tuple(sorted(found, key=lambda a: (a.version, int(a))))


def pod_endpoint(
    pod: Pod, addresses: Iterable[IPAddress] = (), host_interface: str | None = None
) -> PodEndpoint:
    """The pod with ``addresses`` (e.g. from its IPInstances) joined to those in its status."""
    joined = canonical_addresses(str(a) for a in (*addresses, *status_addresses(pod)))
    return PodEndpoint(
        namespace=pod.metadata.namespace or "default",
        name=pod.metadata.name,
        labels=dict(pod.metadata.labels),
        addresses=joined,
        named_ports=named_ports(pod),
        host_interface=host_interface,
    )


def namespace_info(namespace: Namespace) -> NamespaceInfo:
    """Namespaces carry ``kubernetes.io/metadata.name`` (set by the API server since 1.21);
    added here too, so selecting a namespace by name works on the embedded store."""
    labels = {"kubernetes.io/metadata.name": namespace.metadata.name}
    labels.update(namespace.metadata.labels)
    return NamespaceInfo(namespace.metadata.name, labels)


def parsed_policy(policy: NetworkPolicy) -> ParsedPolicy:
    """Raises InvalidPolicy as :func:`parse_policy` does."""
    return parse_policy(policy.metadata.namespace or "default", policy.metadata.name, policy.spec)
