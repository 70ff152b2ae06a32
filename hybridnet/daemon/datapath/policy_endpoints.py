"""The cluster's pods and namespaces as NetworkPolicy sees them, from the daemon's view. Pure.

A pod's addresses are its IPInstances' (one per family: the lowest name, the one every
manager keeps when split brain gave a pod two), joined to any its status reports; a pod of
this node also gets the host end of its veth, found by the mark the attachment gives it
(alias ``hybridnet:<sandbox>/<ifname>``, the sandbox its IPInstance records), which only this
node holds. Pods that policy does not apply to are left out: host-network pods (upstream
leaves them alone) and pods whose phase is final (their address may already be another
pod's). Where labels and ports live in a Pod is hybridnet.policy.endpoints' to know.
"""

from __future__ import annotations

import dataclasses
import ipaddress
from collections.abc import Iterable, Mapping

from hybridnet.api.builtin import Pod
from hybridnet.api.resources import IPInstance
from hybridnet.daemon.attachment import MARK_PREFIX
from hybridnet.daemon.datapath.view import HostLink, PolicyView
from hybridnet.ipamstore import ipinstances
from hybridnet.policy.endpoints import namespace_info, pod_endpoint
from hybridnet.policy.model import IPAddress, NamespaceInfo, PodEndpoint

FINAL_PHASES = frozenset({"Succeeded", "Failed"})


@dataclasses.dataclass(frozen=True)
class PolicyPeers:
    pods: tuple[PodEndpoint, ...]
    """Every pod policy applies to, cluster-wide; this node's carry their host interface."""
    namespaces: tuple[NamespaceInfo, ...]
    node_addresses: tuple[IPAddress, ...]
    """This node's own addresses: upstream always lets a pod and its node talk."""

    @property
    def local(self) -> tuple[PodEndpoint, ...]:
        return tuple(p for p in self.pods if p.host_interface is not None)


def build(view: PolicyView, links: Mapping[str, HostLink]) -> PolicyPeers:
    """``links``: this node's, as observed (their marks and global addresses)."""
    by_owner = _instances_by_owner(view.addresses)
    interfaces = _interfaces_by_sandbox(links.values())
    pods = []
    for pod in view.pods:
        if _ignored(pod):
            continue
        instances = by_owner.get(f"{pod.metadata.namespace or 'default'}/{pod.name}", [])
        addresses = [a for a in map(_address, instances) if a is not None]
        pods.append(pod_endpoint(pod, addresses, _interface(instances, interfaces)))
    return PolicyPeers(
        tuple(pods),
        tuple(namespace_info(n) for n in view.namespaces),
        node_addresses(links.values()),
    )


def node_addresses(links: Iterable[HostLink]) -> tuple[IPAddress, ...]:
    """Every global address on the node's links (a probe from the node may leave by any)."""
    found = set()
    for link in links:
        for cidr in link.addresses:
            try:
                found.add(ipaddress.ip_interface(cidr).ip)
            except ValueError:
                continue
    return tuple(sorted(found, key=lambda a: (a.version, int(a))))


def _ignored(pod: Pod) -> bool:
    spec = pod.body.get("spec")
    host_network = isinstance(spec, dict) and bool(spec.get("hostNetwork"))
    return host_network or pod.phase in FINAL_PHASES


def _instances_by_owner(instances: Iterable[IPInstance]) -> dict[str, list[IPInstance]]:
    """Owner -> one IPInstance per family, the lowest name of each."""
    chosen: dict[str, dict[str, IPInstance]] = {}
    for instance in sorted(instances, key=lambda i: i.name):
        owner = ipinstances.owner_of(instance)
        if owner is not None:
            chosen.setdefault(owner, {}).setdefault(instance.spec.address.version, instance)
    return {owner: [held[v] for v in sorted(held)] for owner, held in chosen.items()}


def _address(instance: IPInstance) -> IPAddress | None:
    try:
        return ipaddress.ip_interface(instance.spec.address.ip).ip
    except ValueError:
        return None  # the manager wrote it; a bad one matches nothing rather than stopping all


def _interfaces_by_sandbox(links: Iterable[HostLink]) -> dict[str, str]:
    """Sandbox (container id) -> the name of its host end, from the attachments' marks."""
    found: dict[str, str] = {}
    for link in sorted(links, key=lambda each: each.name):
        alias = link.alias or ""
        if alias.startswith(MARK_PREFIX) and "/" in alias:
            sandbox = alias.removeprefix(MARK_PREFIX).rpartition("/")[0]
            found.setdefault(sandbox, link.name)
    return found


def _interface(instances: Iterable[IPInstance], interfaces: Mapping[str, str]) -> str | None:
    for instance in instances:
        sandbox = instance.status.sandbox_id
        if sandbox and sandbox in interfaces:
            return interfaces[sandbox]
    return None
