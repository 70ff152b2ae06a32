"""``ip list`` and ``ip get``: which pod, node and subnet hold an address, or why nobody can
(free, reserved, excluded, the gateway, outside the subnet's range or every subnet)."""

from __future__ import annotations

import argparse
import ipaddress

from hybridnet.api.naming import LABEL_POD_NAMESPACE
from hybridnet.api.resources import IPInstance, Subnet
from hybridnet.ctl.context import Context
from hybridnet.ctl.errors import CtlError
from hybridnet.ctl.output import Column, Record
from hybridnet.ctl.usage import pool_of
from hybridnet.ipamstore import ipinstances

COLUMNS = [
    Column("address", lambda r: r["address"]),
    Column("network", lambda r: r["network"]),
    Column("subnet", lambda r: r["subnet"]),
    Column("namespace", lambda r: r["namespace"]),
    Column("pod", lambda r: r["pod"]),
    Column("node", lambda r: r["node"]),
    Column("mac", lambda r: r["mac"], wide=True),
    Column("gateway", lambda r: r["gateway"], wide=True),
    Column("phase", lambda r: r["phase"], wide=True),
    Column("sandbox", lambda r: (r["sandbox"] or "")[:12], wide=True),
    Column("ipinstance", lambda r: r["ipinstance"], wide=True),
]

GET_COLUMNS = [
    Column("address", lambda r: r["address"]),
    Column("state", lambda r: r["state"]),
    Column("subnet", lambda r: r["subnet"]),
    Column("network", lambda r: r["network"]),
    Column("namespace", lambda r: [h["namespace"] for h in r["holders"]]),
    Column("pod", lambda r: [h["pod"] for h in r["holders"]]),
    Column("node", lambda r: [h["node"] for h in r["holders"]]),
    Column("detail", lambda r: r["detail"], wide=True),
]


def pod_namespace(instance: IPInstance) -> str | None:
    return instance.metadata.labels.get(LABEL_POD_NAMESPACE) or instance.status.pod_namespace


def node_of(instance: IPInstance) -> str | None:
    binding = instance.spec.binding
    return (binding.node_name if binding else None) or instance.status.node_name


def record(instance: IPInstance) -> Record:
    binding = instance.spec.binding
    return {
        "address": ipinstances.address_of(instance),
        "cidr": instance.spec.address.ip,
        "version": instance.spec.address.version,
        "network": instance.spec.network,
        "subnet": instance.spec.subnet,
        "namespace": pod_namespace(instance),
        "pod": binding.pod_name if binding else None,
        "podUID": binding.pod_uid if binding else None,
        "node": node_of(instance),
        "mac": instance.spec.address.mac,
        "gateway": instance.spec.address.gateway,
        "phase": instance.status.phase,
        "sandbox": instance.status.sandbox_id,
        "ipinstance": f"{instance.namespace}/{instance.name}",
    }


def _sort_key(record: Record) -> tuple[int, int]:
    address = ipaddress.ip_address(record["address"])
    return address.version, int(address)


def list_(ctx: Context, args: argparse.Namespace) -> int:
    instances = ctx.store().list(IPInstance, ctx.ipam_namespace).items
    records = sorted((record(i) for i in instances), key=_sort_key)
    for key in ("network", "subnet", "node", "namespace"):
        wanted = getattr(args, key)
        if wanted:
            records = [r for r in records if r[key] == wanted]
    if not records and args.output in ("table", "wide"):
        ctx.note("No addresses found.")
        return 0
    ctx.show(records, COLUMNS, args.output)
    return 0


def parse_address(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    try:
        return ipaddress.ip_address(text.strip())
    except ValueError:
        raise CtlError(
            f"{text!r} is not an IP address", "give one address, e.g. 198.19.0.5 or 2001:db8::5"
        ) from None


def why_unheld(
    address: ipaddress.IPv4Address | ipaddress.IPv6Address,
    subnet: Subnet,
    instances: list[IPInstance],
) -> tuple[str, str]:
    """(state, detail) of an address of ``subnet`` that no IPInstance holds."""
    pool = pool_of(subnet, instances)
    value = int(address)
    if pool.gateway == value:
        return "gateway", f"the gateway of subnet {subnet.name}"
    if value in pool.blocked:
        return "excluded", f"in excludeIPs of subnet {subnet.name}: never allocated"
    if not pool.first <= value <= pool.last:
        low, high = ipaddress.ip_address(pool.first), ipaddress.ip_address(pool.last)
        return "unallocatable", f"outside the allocatable range {low}-{high} of {subnet.name}"
    if value in pool.reserved:
        return "reserved", f"in reservedIPs of subnet {subnet.name}: only a pod that asks gets it"
    return "free", f"free in subnet {subnet.name}"


def describe(address_text: str, subnets: list[Subnet], instances: list[IPInstance]) -> Record:
    address = parse_address(address_text)
    holders = [i for i in instances if ipinstances.address_of(i) == str(address)]
    containing = [s for s in subnets if _contains(s.spec.range.cidr, address)]
    found: Record = {
        "address": str(address),
        "subnet": containing[0].name if containing else None,
        "network": containing[0].spec.network if containing else None,
        "holders": [record(i) for i in holders],
    }
    if len(holders) > 1:
        detail = f"held by {len(holders)} IPInstances: run hybridnet-ctl ipam check"
        return {**found, "state": "duplicate", "detail": detail}
    if holders:
        held = holders[0]
        return {
            **found,
            "subnet": held.spec.subnet,
            "network": held.spec.network,
            "state": "allocated",
            "detail": f"IPInstance {held.namespace}/{held.name}",
        }
    if not containing:
        return {**found, "state": "outside", "detail": "outside every subnet"}
    state, detail = why_unheld(address, containing[0], instances)
    return {**found, "state": state, "detail": detail}


def _contains(cidr: str, address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    try:
        return address in ipaddress.ip_network(cidr, strict=False)
    except ValueError:
        return False


def get(ctx: Context, args: argparse.Namespace) -> int:
    parse_address(args.address)  # before any request
    store = ctx.store()
    found = describe(
        args.address,
        store.list(Subnet).items,
        store.list(IPInstance, ctx.ipam_namespace).items,
    )
    ctx.show(found, GET_COLUMNS, args.output)
    return 0
