"""``subnet create|list|get|delete``: Subnets, checked by the webhook's own rules (a canonical
CIDR, addresses inside it, no overlap with any other subnet, an existing network) before
anything is sent, listed with their address usage from the real allocations."""

from __future__ import annotations

import argparse
import contextlib
import ipaddress

from hybridnet.api import admission
from hybridnet.api import constants as c
from hybridnet.api.meta import ObjectMeta
from hybridnet.api.resources import (
    AddressRange,
    IPInstance,
    Network,
    Subnet,
    SubnetConfig,
    SubnetSpec,
)
from hybridnet.ctl.context import Context
from hybridnet.ctl.creation import create_checked
from hybridnet.ctl.errors import CtlError
from hybridnet.ctl.output import Column, Record
from hybridnet.ctl.usage import Usage, subnet_usage
from hybridnet.ctl.values import flatten
from hybridnet.store.errors import NotFound

COLUMNS = [
    Column("name", lambda r: r["name"]),
    Column("network", lambda r: r["network"]),
    Column("cidr", lambda r: r["cidr"]),
    Column("gateway", lambda r: r["gateway"]),
    Column("used", lambda r: r["usage"]["used"]),
    Column("available", lambda r: r["usage"]["available"]),
    Column("total", lambda r: r["usage"]["total"]),
    Column("%", lambda r: r["usage"]["percent"]),
    Column("start", lambda r: r["start"], wide=True),
    Column("end", lambda r: r["end"], wide=True),
    Column("reserved", lambda r: r["reservedIPs"], wide=True),
    Column("excluded", lambda r: r["excludeIPs"], wide=True),
    Column("net-id", lambda r: r["netID"], wide=True),
    Column("private", lambda r: r["private"], wide=True),
    Column("nat", lambda r: r["autoNatOutgoing"], wide=True),
    Column("status-used", lambda r: r["status"]["used"], wide=True),
]

FLAG_OF_FIELD = {
    "spec.network": "--network",
    "spec.netID": "--net-id",
    "spec.range.cidr": "--cidr",
    "spec.range.gateway": "--gateway",
    "spec.range.start": "--start",
    "spec.range.end": "--end",
    "spec.range.reservedIPs": "--reserved",
    "spec.range.excludeIPs": "--exclude",
    "metadata.name": "the name",
}


def record(subnet: Subnet, usage: Usage) -> Record:
    spec = subnet.spec
    config = spec.config or SubnetConfig()
    return {
        "name": subnet.name,
        "network": spec.network,
        "version": spec.range.version,
        "cidr": spec.range.cidr,
        "gateway": spec.range.gateway,
        "start": spec.range.start,
        "end": spec.range.end,
        "reservedIPs": list(spec.range.reserved_ips),
        "excludeIPs": list(spec.range.exclude_ips),
        "netID": spec.net_id,
        "private": bool(config.private),
        "autoNatOutgoing": bool(config.auto_nat_outgoing),
        "usage": usage.record(),
        "status": {
            "used": subnet.status.used,
            "available": subnet.status.available,
            "total": subnet.status.total,
        },
    }


def get_subnet(ctx: Context, name: str) -> Subnet:
    try:
        return ctx.store().get(Subnet, name)
    except NotFound:
        raise CtlError(
            f"subnet {name!r} does not exist", "hybridnet-ctl subnet list shows the subnets"
        ) from None


def _records(ctx: Context, subnets: list[Subnet]) -> list[Record]:
    instances = ctx.store().list(IPInstance, ctx.ipam_namespace).items
    ordered = sorted(subnets, key=lambda s: (s.spec.network, s.name))
    return [record(s, subnet_usage(s, instances)) for s in ordered]


def list_(ctx: Context, args: argparse.Namespace) -> int:
    subnets = ctx.store().list(Subnet).items
    if args.network:
        subnets = [s for s in subnets if s.spec.network == args.network]
    records = _records(ctx, subnets)
    if not records and args.output in ("table", "wide"):
        ctx.note("No subnets found.")
        return 0
    ctx.show(records, COLUMNS, args.output)
    return 0


def get(ctx: Context, args: argparse.Namespace) -> int:
    (found,) = _records(ctx, [get_subnet(ctx, args.name)])
    ctx.show(found, COLUMNS, args.output)
    return 0


def _version(cidr: str) -> str:
    """The CIDR's family; a malformed CIDR is left to validation, which names the field."""
    try:
        return c.IPV6 if ipaddress.ip_network(cidr, strict=False).version == 6 else c.IPV4
    except ValueError:
        return c.IPV4


def build(args: argparse.Namespace) -> Subnet:
    address_range = AddressRange(
        version=_version(args.cidr),
        cidr=args.cidr,
        gateway=args.gateway,
        start=args.start,
        end=args.end,
        reserved_ips=flatten(args.reserved),
        exclude_ips=flatten(args.exclude),
    )
    config = SubnetConfig(
        private=True if args.private else None,
        auto_nat_outgoing=True if args.auto_nat_outgoing else None,
        gateway_type=args.gateway_type,
        gateway_node=args.gateway_node,
        allow_subnets=flatten(args.allow_subnet),
    )
    spec = SubnetSpec(
        network=args.network,
        range=address_range,
        net_id=args.net_id,
        config=None if config == SubnetConfig() else config,
    )
    return Subnet(ObjectMeta(name=args.name), spec)


def create(ctx: Context, args: argparse.Namespace) -> int:
    subnet = build(args)
    store = ctx.store()
    existing = store.list(Subnet).items
    problems = admission.subnet_problems(subnet, None, store.list(Network).items, existing)
    if any(s.name == subnet.name for s in existing):
        problems.append(f'subnet "{subnet.name}" already exists')
    return create_checked(ctx, subnet, problems, FLAG_OF_FIELD, args.dry_run)


def delete(ctx: Context, args: argparse.Namespace) -> int:
    subnet = get_subnet(ctx, args.name)
    instances = ctx.store().list(IPInstance, ctx.ipam_namespace).items
    problems = admission.subnet_delete_problems(subnet, instances)
    if problems:
        raise CtlError(
            "; ".join(problems),
            "delete the pods using it first (hybridnet-ctl ip list --subnet shows them); "
            "nothing was deleted",
        )
    with contextlib.suppress(NotFound):
        ctx.store().delete(Subnet, subnet.name, resource_version=subnet.resource_version)
    ctx.say(f"subnet/{subnet.name} deleted")
    return 0
