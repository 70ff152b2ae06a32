"""``migrate from-reference``: a cluster run by alibaba/hybridnet keeps each allocation as an
IPInstance in its pod's namespace, named after the address, with the labels network, subnet,
node, pod (and pod-uid), the finalizer ``networking.alibaba.com/ip-allocated`` and, in newer
releases, ``spec.binding``. This project keeps them in one IPAM namespace with the pod's
namespace in a label as well (hybridnet.ipamstore.ipinstances). The migration writes, for each
reference IPInstance, the same allocation (address, MAC, gateway, netID, binding, the
daemon's status) in this layout; nothing of the reference's is changed, except an object that
already sits where this layout wants it (a pod of the IPAM namespace itself), which is
rewritten in place and loses the reference's finalizer (no reference controller removes it
any more). Running pods are not touched: their addresses stay theirs.

Idempotent: an allocation already migrated for the same pod is left alone; one whose address
this layout already gives another pod is a conflict, reported and skipped.
"""

from __future__ import annotations

import argparse
import collections
import copy
import ipaddress

from hybridnet.api import constants as c
from hybridnet.api.meta import ObjectMeta
from hybridnet.api.naming import LABEL_POD_NAMESPACE, instance_name, label_value
from hybridnet.api.resources import Binding, IPInstance, ReferredObject, Subnet
from hybridnet.ctl.context import Context
from hybridnet.ctl.errors import EXIT_FOUND, EXIT_OK
from hybridnet.ctl.output import Column, Record
from hybridnet.ipamstore import ipinstances
from hybridnet.store.errors import AlreadyExists, NotFound

REFERENCE_FINALIZER = f"{c.GROUP}/ip-allocated"

COLUMNS = [
    Column("pod", lambda r: r["pod"]),
    Column("address", lambda r: r["address"]),
    Column("from", lambda r: r["from"]),
    Column("to", lambda r: r["to"]),
    Column("result", lambda r: r["result"]),
    Column("detail", lambda r: r["detail"], wide=True),
]


def is_reference(instance: IPInstance) -> bool:
    """Written by the reference: it never sets the pod-namespace label this layout has."""
    return LABEL_POD_NAMESPACE not in instance.metadata.labels


def pod_of(instance: IPInstance) -> tuple[str, str] | None:
    """(namespace, name) of the reference IPInstance's pod, from wherever it says it."""
    binding = instance.spec.binding
    name = (
        (binding.pod_name if binding else None)
        or instance.metadata.labels.get(c.LABEL_POD)
        or instance.status.pod_name
    )
    namespace = instance.namespace or instance.status.pod_namespace
    return (namespace, name) if name and namespace else None


def _cidr(instance: IPInstance, subnets: dict[str, Subnet]) -> str:
    """``spec.address.ip`` with its prefix length (older writers may have left it out)."""
    text = instance.spec.address.ip
    subnet = subnets.get(instance.spec.subnet)
    if "/" in text or subnet is None:
        return text
    return f"{text}/{ipaddress.ip_network(subnet.spec.range.cidr).prefixlen}"


def converted(
    reference: IPInstance, ipam_namespace: str, families: str, subnets: dict[str, Subnet]
) -> IPInstance:
    """The same allocation in this project's layout."""
    pod = pod_of(reference)
    assert pod is not None  # noqa: S101 - the caller skipped those without one
    namespace, name = pod
    old = reference.spec.binding or Binding()
    node = (
        old.node_name or reference.metadata.labels.get(c.LABEL_NODE) or reference.status.node_name
    )
    uid = old.pod_uid or reference.metadata.labels.get(c.LABEL_POD_UID)
    spec = copy.deepcopy(reference.spec)
    spec.address.ip = _cidr(reference, subnets)
    spec.binding = Binding(
        referred_object=old.referred_object or ReferredObject(kind="Pod", name=name, uid=uid),
        node_name=node,
        pod_uid=uid,
        pod_name=name,
        stateful=old.stateful,
    )
    labels = {
        c.LABEL_NETWORK: label_value(spec.network),
        c.LABEL_SUBNET: label_value(spec.subnet),
        c.LABEL_POD: label_value(name),
        LABEL_POD_NAMESPACE: label_value(namespace),
    }
    if node:
        labels[c.LABEL_NODE] = label_value(node)
    if uid:
        labels[c.LABEL_POD_UID] = label_value(uid)
    address = str(ipaddress.ip_interface(spec.address.ip).ip)
    meta = ObjectMeta(
        name=instance_name(address),
        namespace=ipam_namespace,
        labels=labels,
        annotations={ipinstances.ANNOTATION_FAMILIES: families},
    )
    status = copy.deepcopy(reference.status)
    status.pod_name, status.pod_namespace = name, namespace
    status.node_name = status.node_name or node
    return IPInstance(meta, spec, status)


def _families(references: list[IPInstance]) -> dict[tuple[str, str], str]:
    found: dict[tuple[str, str], set[str]] = collections.defaultdict(set)
    for instance in references:
        pod = pod_of(instance)
        if pod is not None:
            found[pod].add(instance.spec.address.version)
    return {pod: ",".join(sorted(versions)) for pod, versions in found.items()}


def _write(ctx: Context, wanted: IPInstance, reference: IPInstance) -> tuple[str, str]:
    """Create ``wanted`` (or rewrite the reference object in its place); (result, detail)."""
    store = ctx.store()
    in_place = (reference.namespace, reference.name) == (wanted.namespace, wanted.name)
    if in_place:
        current = store.get(IPInstance, wanted.name, wanted.namespace)
        rewritten = copy.deepcopy(wanted)
        rewritten.metadata = copy.deepcopy(current.metadata)
        rewritten.metadata.labels = {**current.metadata.labels, **wanted.metadata.labels}
        rewritten.metadata.annotations = {
            **current.metadata.annotations,
            **wanted.metadata.annotations,
        }
        rewritten.metadata.finalizers = [
            f for f in current.metadata.finalizers if f != REFERENCE_FINALIZER
        ]
        store.update(rewritten)
        return "rewritten", "the reference object, in place (its finalizer removed)"
    try:
        created = store.create(wanted)
    except AlreadyExists:
        existing = store.get(IPInstance, wanted.name, wanted.namespace)
        if ipinstances.owner_of(existing) == ipinstances.owner_of(wanted):
            return "exists", "already migrated"
        return "conflict", f"{existing.namespace}/{existing.name} holds it for another pod"
    created.status = wanted.status
    store.update_status(created)
    return "created", ""


def run(ctx: Context, args: argparse.Namespace) -> int:
    store = ctx.store()
    subnets = {s.name: s for s in store.list(Subnet).items}
    everything = store.list(IPInstance).items
    ours = {
        (i.namespace or "", i.name): i
        for i in everything
        if not is_reference(i) and i.namespace == ctx.ipam_namespace
    }
    references = [i for i in everything if is_reference(i)]
    families = _families(references)
    results: list[Record] = []
    for reference in sorted(references, key=lambda i: (i.namespace or "", i.name)):
        pod = pod_of(reference)
        found: Record = {
            "pod": f"{pod[0]}/{pod[1]}" if pod else None,
            "address": reference.spec.address.ip.split("/")[0],
            "from": f"{reference.namespace}/{reference.name}",
        }
        if pod is None:
            results.append({**found, "to": None, "result": "skipped", "detail": "names no pod"})
            continue
        wanted = converted(reference, ctx.ipam_namespace, families[pod], subnets)
        found["to"] = f"{wanted.namespace}/{wanted.name}"
        existing = ours.get((wanted.namespace or "", wanted.name))
        if existing is not None:
            same = ipinstances.owner_of(existing) == ipinstances.owner_of(wanted)
            result = (
                ("exists", "already migrated")
                if same
                else ("conflict", f"{existing.namespace}/{existing.name} holds it for another pod")
            )
        elif args.dry_run:
            result = ("would create", "dry run")
        else:
            try:
                result = _write(ctx, wanted, reference)
            except NotFound:
                result = ("skipped", "the reference object went away meanwhile")
        results.append({**found, "result": result[0], "detail": result[1]})
    if args.output in ("json", "yaml") or results:
        ctx.show(results, COLUMNS, args.output)
    counts = collections.Counter(r["result"] for r in results)
    ctx.note(
        f"{len(results)} reference allocation(s): "
        + (", ".join(f"{n} {what}" for what, n in sorted(counts.items())) or "none found")
        + (" (dry run: nothing written; run again without --dry-run)" if args.dry_run else "")
    )
    return EXIT_FOUND if counts["conflict"] else EXIT_OK
