"""``node diagnose NODE``: the node's daemon compares its datapath's desired state with the
kernel (the reconciler's own diff, changing nothing) and reports its problems; printed as
what is missing, extra, stale, down or different. Exit 3 when anything is."""

from __future__ import annotations

import argparse

from hybridnet.ctl import daemons
from hybridnet.ctl.context import Context
from hybridnet.ctl.errors import EXIT_FOUND, EXIT_OK, CtlError
from hybridnet.ctl.output import Column, Record
from hybridnet.rpc import messages as m
from hybridnet.store.interface import Store

COLUMNS = [
    Column("state", lambda r: r["state"]),
    Column("kind", lambda r: r["kind"]),
    Column("object", lambda r: r["object"]),
    Column("detail", lambda r: r["detail"]),
]


def state_of(difference: m.DatapathDifference) -> str:
    """A person's word for what the reconciler would do."""
    if difference.action == "create":
        return "missing"
    if difference.action == "delete":
        return "stale" if difference.kind in ("fdb", "neighbour") else "extra"
    if "up False (wanted True)" in difference.current:
        return "down"
    return "differs"


def record(reply: m.DiagnoseReply) -> Record:
    return {
        "node": reply.node_name,
        "differences": [
            {
                "state": state_of(d),
                "kind": d.kind,
                "action": d.action,
                "object": d.object,
                "current": d.current or None,
            }
            for d in reply.differences
        ],
        "problems": [
            {"code": p.code, "subject": p.subject, "message": p.message} for p in reply.problems
        ],
        "pods": [
            {
                "containerID": p.container_id,
                "ifname": p.ifname,
                "hostIfname": p.host_ifname,
                "addresses": list(p.addresses),
            }
            for p in reply.pods
        ],
    }


def rows(found: Record) -> list[Record]:
    """The table's rows: differences, then problems."""
    listed = [
        {"state": d["state"], "kind": d["kind"], "object": d["object"], "detail": d["current"]}
        for d in found["differences"]
    ]
    listed += [
        {"state": "problem", "kind": p["code"], "object": p["subject"], "detail": p["message"]}
        for p in found["problems"]
    ]
    return listed


def run(ctx: Context, args: argparse.Namespace) -> int:
    node = args.node
    path = daemons.socket_for(args.socket, node)
    reply = daemons.diagnose(path, node, lambda: _how_to_reach(ctx, node))
    if not reply.compared:
        raise CtlError(
            f"node {node}'s daemon cannot compare its datapath now: {reply.reason}",
            "try again once it is ready (hybridnet-daemon probe --ready)",
        )
    found = record(reply)
    listed = rows(found)
    if args.output in ("json", "yaml"):
        ctx.show(found, COLUMNS, args.output)
    elif listed:
        ctx.show(listed, COLUMNS, args.output)
    summary = (
        f"node {node}: {len(found['differences'])} difference(s) between the desired datapath "
        f"and the kernel, {len(found['problems'])} problem(s), {len(found['pods'])} pod(s) "
        "attached"
    )
    ctx.note(summary if listed else f"node {node}: datapath as desired, no problems")
    return EXIT_FOUND if listed else EXIT_OK


def _how_to_reach(ctx: Context, node: str) -> str:
    """Where to run instead; on a cluster it names the node's daemon pod when it can (the
    diagnosis itself needs no store)."""
    store: Store | None = None
    if not ctx.target.store_file:
        try:
            store = ctx.store()
        except CtlError:
            store = None
    return daemons.how_to_reach(node, store, ctx.ipam_namespace)
