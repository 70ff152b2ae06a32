"""``ipam check`` and ``ipam gc``: the audit (hybridnet.ctl.audit) over what the store holds
and what the daemons that can be reached say; gc frees the leaks it finds.

Both only read (list) until gc deletes: nothing is locked or paused, so the manager and the
daemons go on working meanwhile. The IPInstances are read before the pods, so a pod created
during the check cannot look like it has no address's owner; a pod deleted during it can make
its addresses look leaked for a moment (the manager releases them), as a burst makes the
status counters lag: check confirms its findings with a second reading, and gc reads each
such pod again just before it frees, and deletes an IPInstance only as it was read.
"""

from __future__ import annotations

import argparse
import dataclasses
import time

from hybridnet.api.builtin import Node, Pod
from hybridnet.api.resources import IPInstance, Network, Subnet
from hybridnet.ctl import audit, daemons
from hybridnet.ctl.addresses import node_of
from hybridnet.ctl.context import Context
from hybridnet.ctl.errors import EXIT_FOUND, EXIT_OK, CtlError
from hybridnet.ctl.output import Column, Record
from hybridnet.ipamstore import ipinstances
from hybridnet.store.errors import Conflict, NotFound

SETTLE_SECONDS = 3.0
"""Seconds between the two readings of ``ipam check``: the manager writes status counters at
most every second, and the event of its own last write can take a second more."""

COLUMNS = [
    Column("kind", lambda r: r["kind"]),
    Column("address", lambda r: r["address"]),
    Column("pod", lambda r: r["pod"]),
    Column("node", lambda r: r["node"]),
    Column("subject", lambda r: r["subject"], wide=True),
    Column("detail", lambda r: r["detail"]),
]

GC_COLUMNS = [
    Column("address", lambda r: r["address"]),
    Column("pod", lambda r: r["pod"]),
    Column("ipinstance", lambda r: r["ipinstance"]),
    Column("result", lambda r: r["result"]),
    Column("reason", lambda r: r["reason"], wide=True),
]


@dataclasses.dataclass
class Reading:
    """The snapshot and what could not be looked at (said beside the findings)."""

    snapshot: audit.Snapshot
    notes: list[str]


def _pods(ctx: Context, notes: list[str]) -> list[Pod] | None:
    pods = ctx.store().list(Pod).items
    if not pods and ctx.target.store_file:
        notes.append(
            "the embedded store holds no Pod objects: leaks cannot be told from pods here; "
            "--socket compares with what the daemons have attached"
        )
        return None
    return pods


def _attachments(
    template: str | None, nodes: set[str], notes: list[str]
) -> dict[str, audit.NodeAttachments]:
    if template is None:
        notes.append("daemons not asked (give --socket to compare with what nodes attached)")
        return {}
    paths = (
        {daemons.socket_for(template, node): node for node in sorted(nodes)}
        if daemons.per_node(template)
        else {template: None}
    )
    found = {}
    for path, node in paths.items():
        try:
            reply = daemons.diagnose(path, node, lambda: "skipped")
        except CtlError as exc:
            notes.append(f"daemon of {node or 'this node'} not asked: {exc}")
            continue
        addresses = {
            address: f"{pod.container_id}/{pod.ifname}"
            for pod in reply.pods
            for address in pod.addresses
        }
        found[reply.node_name] = audit.NodeAttachments(reply.node_name, addresses)
    return found


def read(ctx: Context, socket_template: str | None) -> Reading:
    """What the audit looks at, IPInstances first (see the module docstring)."""
    store = ctx.store()
    notes: list[str] = []
    instances = store.list(IPInstance, ctx.ipam_namespace).items
    pods = _pods(ctx, notes)
    subnets = store.list(Subnet).items
    networks = store.list(Network).items
    nodes = store.list(Node).items
    named = {n.name for n in nodes} | {node for node in (node_of(i) for i in instances) if node}
    attachments = _attachments(socket_template, named, notes)
    snapshot = audit.Snapshot(networks, subnets, instances, nodes, pods, attachments)
    return Reading(snapshot, notes)


def _confirmed(
    ctx: Context, socket: str | None, settle: float, first: list[audit.Finding]
) -> tuple[list[audit.Finding], Reading]:
    """The findings of a second reading ``settle`` seconds after the first that the first
    also had (same kind and subject), as the second found them. What a change under way
    shows for a moment (a deleted pod's addresses until the manager releases them, a status
    counter the manager writes within a second or two) is gone by then."""
    ctx.note(f"{len(first)} problem(s) found; reading again in {settle:g} s to confirm them")
    time.sleep(settle)
    reading = read(ctx, socket)
    seen = {(f.kind, f.subject) for f in first}
    confirmed = [f for f in audit.audit(reading.snapshot) if (f.kind, f.subject) in seen]
    cleared = len(seen - {(f.kind, f.subject) for f in confirmed})
    if cleared:
        reading.notes.append(
            f"{cleared} problem(s) of the first reading were gone {settle:g} s later "
            "(changes under way) and are not reported"
        )
    return confirmed, reading


def check(ctx: Context, args: argparse.Namespace) -> int:
    reading = read(ctx, args.socket)
    findings = audit.audit(reading.snapshot)
    if findings and args.settle > 0:
        findings, reading = _confirmed(ctx, args.socket, args.settle, findings)
    records = [f.record() for f in findings]
    if args.output in ("json", "yaml"):
        ctx.show({"findings": records, "notes": reading.notes}, COLUMNS, args.output)
    elif records:
        ctx.show(records, COLUMNS, args.output)
    for note in reading.notes:
        ctx.note(f"note: {note}")
    ctx.note(audit.summary(findings))
    return EXIT_FOUND if findings else EXIT_OK


# --------------------------------------------------------------------------- gc


def _still_leaked(ctx: Context, owner: str) -> str | None:
    """Why the pod's addresses may go now (read again), None when the pod is back."""
    namespace, name = owner.split("/", 1)
    try:
        pod = ctx.store().get(Pod, name, namespace)
    except NotFound:
        return f"pod {owner} no longer exists"
    if pod.phase in audit.TERMINAL_PHASES:
        return f"pod {owner} has {pod.phase}"
    return None


def _free(ctx: Context, instance: IPInstance, dry_run: bool) -> Record:
    owner = ipinstances.owner_of(instance) or ""
    found: Record = {
        "address": ipinstances.address_of(instance),
        "pod": owner,
        "ipinstance": f"{instance.namespace}/{instance.name}",
    }
    why = _still_leaked(ctx, owner)
    if why is None:
        return {**found, "result": "kept", "reason": f"pod {owner} exists again"}
    if dry_run:
        return {**found, "result": "would free", "reason": why}
    try:
        ctx.store().delete(
            IPInstance,
            instance.name,
            instance.namespace,
            resource_version=instance.resource_version,
        )
    except Conflict:
        return {**found, "result": "kept", "reason": "the IPInstance changed since it was read"}
    except NotFound:
        return {**found, "result": "already gone", "reason": why}
    return {**found, "result": "freed", "reason": why}


def gc(ctx: Context, args: argparse.Namespace) -> int:
    store = ctx.store()
    instances = store.list(IPInstance, ctx.ipam_namespace).items
    notes: list[str] = []
    pods = _pods(ctx, notes)
    if pods is None:
        raise CtlError(
            "the embedded store holds no Pod objects, so no address can be told leaked from "
            "its pod",
            "the daemons' CNI GC frees addresses whose sandbox is gone; nothing was freed",
        )
    leaked = {f.subject for f in audit.leaks(instances, pods)}
    chosen = [i for i in instances if f"{i.namespace}/{i.name}" in leaked]
    results = [_free(ctx, i, args.dry_run) for i in chosen]
    if args.output in ("json", "yaml") or results:
        ctx.show(results, GC_COLUMNS, args.output)
    done = sum(1 for r in results if r["result"] in ("freed", "would free"))
    if args.dry_run:
        ctx.note(
            f"dry run: would free {done} leaked address(es); run again without --dry-run to "
            "free them"
        )
    else:
        ctx.note(f"freed {done} leaked address(es)")
    return EXIT_OK
