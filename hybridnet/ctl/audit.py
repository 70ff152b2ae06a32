"""The IPAM audit, without I/O: given what the store holds (and what the daemons that could be
reached say is attached on their nodes), every address that is not as it should be.

Kinds of finding:

* ``leak``: an IPInstance bound to a pod that no longer exists, or that has finished
  (Succeeded, Failed), which the manager would have released; a StatefulSet's address kept
  for its next pod is retained on purpose and not a leak;
* ``orphan``: an IPInstance of a subnet or network that does not exist, outside its subnet's
  CIDR, or naming no pod;
* ``duplicate``: one address in two IPInstances, or one pod holding two addresses of a family;
* ``not-on-node``: an IPInstance on a node that does not exist, or recorded for a sandbox that
  its node's daemon has no attachment for;
* ``not-in-store``: an address a daemon has attached on its node that no IPInstance of that
  node holds;
* ``counter``: a Subnet's or Network's status counters that disagree with the allocations
  (only where a manager writes them: counters never written are left alone).
"""

from __future__ import annotations

import collections
import dataclasses
import ipaddress
from collections.abc import Mapping, Sequence

from hybridnet.api.builtin import Node, Pod
from hybridnet.api.resources import Count, IPInstance, Network, Subnet
from hybridnet.ctl.addresses import node_of
from hybridnet.ctl.output import Record
from hybridnet.ctl.usage import Usage, network_usage, subnet_usage
from hybridnet.ipamstore import ipinstances

INT64_MAX = 2**63 - 1
"""The manager caps counters here (JSON integers are int64): compare capped values."""
TERMINAL_PHASES = ("Succeeded", "Failed")
KINDS = ("leak", "orphan", "duplicate", "not-on-node", "not-in-store", "counter")


@dataclasses.dataclass(frozen=True)
class Finding:
    kind: str
    subject: str
    """What is wrong: ``namespace/name`` of an IPInstance, ``subnet/NAME``, ``node/NAME``."""
    detail: str
    address: str | None = None
    pod: str | None = None
    node: str | None = None

    def record(self) -> Record:
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class NodeAttachments:
    """What one node's daemon says is attached there: address -> ``container/ifname``."""

    node: str
    addresses: Mapping[str, str]


@dataclasses.dataclass(frozen=True)
class Snapshot:
    networks: Sequence[Network]
    subnets: Sequence[Subnet]
    instances: Sequence[IPInstance]
    nodes: Sequence[Node]
    pods: Sequence[Pod] | None
    """None: pods are not known here (an embedded store without Pod objects)."""
    attachments: Mapping[str, NodeAttachments] = dataclasses.field(default_factory=dict)
    """By node, from the daemons that answered."""


def _subject(instance: IPInstance) -> str:
    return f"{instance.namespace}/{instance.name}"


def _finding(kind: str, instance: IPInstance, detail: str) -> Finding:
    return Finding(
        kind=kind,
        subject=_subject(instance),
        detail=detail,
        address=ipinstances.address_of(instance),
        pod=ipinstances.owner_of(instance),
        node=node_of(instance),
    )


def _address(instance: IPInstance) -> str | None:
    try:
        return ipinstances.address_of(instance)
    except ValueError:
        return None


# --------------------------------------------------------------------------- pods


def is_retained(instance: IPInstance) -> bool:
    """A StatefulSet pod's address, kept for the pod's next incarnation."""
    binding = instance.spec.binding
    return binding is not None and binding.stateful is not None


def leaks(instances: Sequence[IPInstance], pods: Sequence[Pod]) -> list[Finding]:
    by_key = {ipinstances.owner_key(p.namespace or "", p.name): p for p in pods}
    found = []
    for instance in instances:
        owner = ipinstances.owner_of(instance)
        if owner is None:
            continue  # an orphan, reported as such
        pod = by_key.get(owner)
        if pod is None and not is_retained(instance):
            found.append(_finding("leak", instance, f"pod {owner} no longer exists"))
        elif pod is not None and pod.phase in TERMINAL_PHASES:
            found.append(_finding("leak", instance, f"pod {owner} has {pod.phase}"))
    return found


# --------------------------------------------------------------------------- subnets


def orphans(
    instances: Sequence[IPInstance], subnets: Sequence[Subnet], networks: Sequence[Network]
) -> list[Finding]:
    by_name = {s.name: s for s in subnets}
    network_names = {n.name for n in networks}
    found = []
    for instance in instances:
        subnet = by_name.get(instance.spec.subnet)
        address = _address(instance)
        if ipinstances.owner_of(instance) is None:
            found.append(Finding("orphan", _subject(instance), "names no pod", address))
        elif subnet is None:
            found.append(
                _finding("orphan", instance, f"subnet {instance.spec.subnet} does not exist")
            )
        elif instance.spec.network not in network_names:
            found.append(
                _finding("orphan", instance, f"network {instance.spec.network} does not exist")
            )
        elif subnet.spec.network != instance.spec.network:
            found.append(
                _finding(
                    "orphan",
                    instance,
                    f"says network {instance.spec.network}, its subnet {subnet.name} is of "
                    f"{subnet.spec.network}",
                )
            )
        elif address is None or not _inside(address, subnet.spec.range.cidr):
            found.append(
                _finding("orphan", instance, f"outside {subnet.name} ({subnet.spec.range.cidr})")
            )
    return found


def _inside(address: str, cidr: str) -> bool:
    try:
        return ipaddress.ip_address(address) in ipaddress.ip_network(cidr, strict=False)
    except ValueError:
        return False


def duplicates(instances: Sequence[IPInstance]) -> list[Finding]:
    found = []
    by_address: dict[str, list[IPInstance]] = collections.defaultdict(list)
    by_family: dict[tuple[str, str], list[IPInstance]] = collections.defaultdict(list)
    for instance in instances:
        address = _address(instance)
        if address is not None:
            by_address[address].append(instance)
        owner = ipinstances.owner_of(instance)
        if owner is not None:
            by_family[(owner, instance.spec.address.version)].append(instance)
    for address, holders in sorted(by_address.items()):
        if len(holders) > 1:
            names = ", ".join(sorted(_subject(i) for i in holders))
            for instance in holders:
                found.append(_finding("duplicate", instance, f"{address} is in {names}"))
    for (owner, version), held in sorted(by_family.items()):
        if len(held) > 1:
            addresses = ", ".join(sorted(ipinstances.address_of(i) for i in held))
            for instance in held:
                detail = f"pod {owner} holds {len(held)} IPv{version} addresses: {addresses}"
                found.append(_finding("duplicate", instance, detail))
    return found


# --------------------------------------------------------------------------- nodes


def placement(
    instances: Sequence[IPInstance],
    nodes: Sequence[Node],
    attachments: Mapping[str, NodeAttachments],
    pods: Sequence[Pod] | None,
) -> list[Finding]:
    """IPInstances on no node (store) or not attached on theirs (daemon), and the reverse."""
    found = []
    node_names = {n.name for n in nodes}
    leaving = {
        ipinstances.owner_key(p.namespace or "", p.name)
        for p in pods or ()
        if p.metadata.deletion_timestamp
    }
    for instance in instances:
        node = node_of(instance)
        address = _address(instance)
        if node_names and node and node not in node_names:
            found.append(_finding("not-on-node", instance, f"node {node} does not exist"))
            continue
        report = attachments.get(node or "")
        sandbox = instance.status.sandbox_id
        if report is None or not sandbox or address is None:
            continue
        if ipinstances.owner_of(instance) in leaving:
            continue  # its pod is being torn down: DEL detaches first
        if address not in report.addresses:
            found.append(
                _finding(
                    "not-on-node",
                    instance,
                    f"recorded for sandbox {sandbox[:12]} on {node}, which has no attachment "
                    "with it",
                )
            )
    for node, report in sorted(attachments.items()):
        held = {_address(i) for i in instances if node_of(i) == node}
        for address, holder in sorted(report.addresses.items()):
            if address not in held:
                found.append(
                    Finding(
                        "not-in-store",
                        f"node/{node}",
                        f"attached for {holder}, but no IPInstance of {node} holds it",
                        address=address,
                        node=node,
                    )
                )
    return found


# --------------------------------------------------------------------------- counters


def _capped(usage: Usage) -> tuple[int, int, int]:
    return usage.used, min(usage.available, INT64_MAX), min(usage.total, INT64_MAX)


def _written(count: Count | None) -> bool:
    return count is not None and (count.total, count.used, count.available) != (0, 0, 0)


def counters(
    subnets: Sequence[Subnet], networks: Sequence[Network], instances: Sequence[IPInstance]
) -> list[Finding]:
    found = []
    usages = {s.name: subnet_usage(s, instances) for s in subnets}
    for subnet in sorted(subnets, key=lambda s: s.name):
        status = subnet.status
        stored = Count(status.total, status.used, status.available)
        if not _written(stored):
            continue
        used, available, total = _capped(usages[subnet.name])
        if (stored.used, stored.available, stored.total) != (used, available, total):
            found.append(
                Finding(
                    "counter",
                    f"subnet/{subnet.name}",
                    f"status says used {stored.used}, available {stored.available}, total "
                    f"{stored.total}; the allocations make {used}, {available}, {total}",
                )
            )
    for network in sorted(networks, key=lambda n: n.name):
        per_version = network_usage(network, subnets, usages)
        stats = {4: network.status.statistics, 6: network.status.ipv6_statistics}
        if not any(_written(count) for count in stats.values()):
            continue
        for version, stored_count in stats.items():
            count = stored_count or Count()
            used, available, total = _capped(per_version.get(version, Usage(0, 0, 0)))
            if (count.used, count.available, count.total) != (used, available, total):
                found.append(
                    Finding(
                        "counter",
                        f"network/{network.name}",
                        f"IPv{version} statistics say used {count.used}, available "
                        f"{count.available}, total {count.total}; the allocations make {used}, "
                        f"{available}, {total}",
                    )
                )
    return found


def audit(snapshot: Snapshot) -> list[Finding]:
    found = []
    if snapshot.pods is not None:
        found += leaks(snapshot.instances, snapshot.pods)
    found += orphans(snapshot.instances, snapshot.subnets, snapshot.networks)
    found += duplicates(snapshot.instances)
    found += placement(snapshot.instances, snapshot.nodes, snapshot.attachments, snapshot.pods)
    found += counters(snapshot.subnets, snapshot.networks, snapshot.instances)
    return found


def summary(findings: Sequence[Finding]) -> str:
    if not findings:
        return "no problems found"
    counts = collections.Counter(f.kind for f in findings)
    parts = [f"{counts[k]} {k}" for k in KINDS if counts[k]]
    return f"{len(findings)} problem(s): {', '.join(parts)}"
