"""``network create|list|get|delete``: Networks, checked by the webhook's own rules before
anything is sent, listed with their address usage and the nodes they attach."""

from __future__ import annotations

import argparse
import contextlib

from hybridnet.api import admission
from hybridnet.api.builtin import Node
from hybridnet.api.meta import ObjectMeta
from hybridnet.api.resources import BGPPeer, IPInstance, Network, NetworkConfig, NetworkSpec, Subnet
from hybridnet.api.validation import effective_mode
from hybridnet.ctl.context import Context
from hybridnet.ctl.creation import create_checked
from hybridnet.ctl.errors import CtlError
from hybridnet.ctl.output import Column, Record
from hybridnet.ctl.usage import Usage, network_usage, nodes_of, subnet_usage
from hybridnet.store.errors import NotFound


def _family(record: Record, version: str, key: str) -> object:
    usage = record["usage"].get(version)
    return usage[key] if usage else None


def _usage_columns(version: str) -> list[Column]:
    label = f"V{version[-1]}"
    return [
        Column(f"{label}-used", lambda r: _family(r, version, "used")),
        Column(f"{label}-available", lambda r: _family(r, version, "available")),
        Column(f"{label}-total", lambda r: _family(r, version, "total")),
        Column(f"{label}-%", lambda r: _family(r, version, "percent")),
    ]


COLUMNS = [
    Column("name", lambda r: r["name"]),
    Column("type", lambda r: r["type"]),
    Column("mode", lambda r: r["mode"]),
    Column("net-id", lambda r: r["netID"]),
    Column("nodes", lambda r: r["nodes"]),
    Column("subnets", lambda r: len(r["subnets"])),
    *_usage_columns("ipv4"),
    *_usage_columns("ipv6"),
    Column("node-selector", lambda r: r["nodeSelector"], wide=True),
    Column("subnet-names", lambda r: r["subnets"], wide=True),
    Column("bgp-peers", lambda r: [f"{p['address']}/{p['asn']}" for p in r["bgpPeers"]], wide=True),
]

FLAG_OF_FIELD = {
    "metadata.name": "the name",
    "spec.type": "--type",
    "spec.mode": "--mode",
    "spec.netID": "--net-id",
    "spec.nodeSelector": "--node-selector",
    "spec.config.bgpPeers": "--bgp-peer",
}


def _peer(peer: BGPPeer) -> Record:
    found = {
        "address": peer.address,
        "asn": peer.asn,
        "holdTime": peer.hold_time,
        "gracefulRestartSeconds": peer.graceful_restart_seconds,
    }
    return {k: v for k, v in found.items() if v is not None}


def record(
    network: Network, subnets: list[Subnet], nodes: list[Node], usages: dict[str, Usage]
) -> Record:
    attached = nodes_of(network, nodes)
    per_version = network_usage(network, subnets, usages)
    peers = network.spec.config.bgp_peers if network.spec.config else []
    return {
        "name": network.name,
        "type": network.spec.type,
        "mode": effective_mode(network),
        "netID": network.spec.net_id,
        "nodeSelector": dict(network.spec.node_selector),
        "bgpPeers": [_peer(p) for p in peers],
        "subnets": sorted(s.name for s in subnets if s.spec.network == network.name),
        "nodes": len(attached),
        "nodeNames": attached,
        "usage": {f"ipv{v}": u.record() for v, u in sorted(per_version.items())},
    }


def _records(ctx: Context, wanted: list[Network]) -> list[Record]:
    store = ctx.store()
    subnets = store.list(Subnet).items
    nodes = store.list(Node).items
    instances = store.list(IPInstance, ctx.ipam_namespace).items
    usages = {s.name: subnet_usage(s, instances) for s in subnets}
    return [record(n, subnets, nodes, usages) for n in sorted(wanted, key=lambda n: n.name)]


def get_network(ctx: Context, name: str) -> Network:
    try:
        return ctx.store().get(Network, name)
    except NotFound:
        raise CtlError(
            f"network {name!r} does not exist", "hybridnet-ctl network list shows the networks"
        ) from None


def list_(ctx: Context, args: argparse.Namespace) -> int:
    records = _records(ctx, ctx.store().list(Network).items)
    if not records and args.output in ("table", "wide"):
        ctx.note("No networks found.")
        return 0
    ctx.show(records, COLUMNS, args.output)
    return 0


def get(ctx: Context, args: argparse.Namespace) -> int:
    (found,) = _records(ctx, [get_network(ctx, args.name)])
    ctx.show(found, COLUMNS, args.output)
    return 0


def build(args: argparse.Namespace) -> Network:
    config = NetworkConfig(bgp_peers=list(args.bgp_peer)) if args.bgp_peer else None
    spec = NetworkSpec(
        type=args.type,
        mode=args.mode,
        net_id=args.net_id,
        node_selector=dict(args.node_selector or []),
        config=config,
    )
    return Network(ObjectMeta(name=args.name), spec)


def create(ctx: Context, args: argparse.Namespace) -> int:
    network = build(args)
    store = ctx.store()
    problems = admission.network_problems(
        network, None, store.list(Network).items, store.list(Node).items
    )
    if any(n.name == network.name for n in store.list(Network).items):
        problems.append(f'network "{network.name}" already exists')
    return create_checked(ctx, network, problems, FLAG_OF_FIELD, args.dry_run)


def delete(ctx: Context, args: argparse.Namespace) -> int:
    network = get_network(ctx, args.name)
    problems = admission.network_delete_problems(network, ctx.store().list(Subnet).items)
    if problems:
        raise CtlError("; ".join(problems), "delete its subnets first; nothing was deleted")
    with contextlib.suppress(NotFound):
        ctx.store().delete(Network, network.name, resource_version=network.resource_version)
    ctx.say(f"network/{network.name} deleted")
    return 0
