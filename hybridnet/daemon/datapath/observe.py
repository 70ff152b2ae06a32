"""Read the kernel: host facts for ``desired``, and the objects that are hybridnet's.

Ours is recognised by marks, and nothing else is ever returned as ours:

* links whose alias starts with ``hybridnet-datapath:``;
* routes and neighbour entries (permanent and proxy) whose protocol is the configured route
  protocol;
* rules whose priority lies in the configured range;
* FDB entries on our VXLAN device (the device is ours; learning is off);
* the nftables tables of the configured names (family inet): masquerade and NetworkPolicy;
* sysctls: only the ones desired, read to compare (never deleted).

Runs in the calling thread's network namespace.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from pathlib import Path

from hybridnet.daemon.datapath import packetfilter, policy_table
from hybridnet.daemon.datapath.config import NodeConfig
from hybridnet.daemon.datapath.errors import ObserveError
from hybridnet.daemon.datapath.model import (
    LINK_ALIAS_PREFIX,
    FdbEntry,
    KernelObject,
    Link,
    Neighbour,
    OtherLink,
    Route,
    Rule,
    Sysctl,
    VlanLink,
    VxlanLink,
)
from hybridnet.daemon.datapath.view import HostFacts, HostLink
from hybridnet.netlink import nftables, sysctl
from hybridnet.netlink.rtnl import devices, fdb, neighbours, routes, rules, wire
from hybridnet.netlink.rtnl.sock import NetlinkError, RtnlSocket

IPV6_PROC = Path("/proc/sys/net/ipv6")
VERSION_OF: dict[int, int] = {wire.AF_INET: 4, wire.AF_INET6: 6}


@dataclasses.dataclass(frozen=True)
class Snapshot:
    host: HostFacts
    objects: tuple[KernelObject, ...]
    """Ours, sysctls left out (see :func:`sysctls`)."""


def snapshot(config: NodeConfig, forms: policy_table.KernelForms | None = None) -> Snapshot:
    """One read of everything but sysctls. Raises ObserveError. ``forms``: how the policy
    table's chains the daemon wrote are listed (without: every chain reads as unknown)."""
    try:
        with RtnlSocket() as sock:
            records = devices.list_links(sock)
            names = {record.index: record.name for record in records}
            host = _host(sock, records, names)
            objects: list[KernelObject] = []
            families = (wire.AF_INET, wire.AF_INET6) if host.ipv6 else (wire.AF_INET,)
            links = [record for record in records if _ours(record.alias)]
            objects += [_link(record, names) for record in links]
            objects += _fdb(sock, links)
            for family in families:
                objects += _neighbours(sock, family, config, names)
                objects += _routes(sock, family, config, names)
                objects += _rules(sock, family, config)
        try:
            table = nftables.list_table(packetfilter.FAMILY, config.nft_table)
            policy = nftables.list_table(policy_table.FAMILY, config.policy_table)
        except nftables.NftUnavailable:
            table = policy = None
            host = dataclasses.replace(host, packet_filter=False)
    except (NetlinkError, nftables.NftError) as exc:
        raise ObserveError(f"cannot read the kernel's state: {exc}") from exc
    if table is not None:
        objects.append(packetfilter.from_nft(packetfilter.FAMILY, config.nft_table, table))
    if policy is not None:
        objects.append(policy_table.observed(config.policy_table, policy, forms or _NO_FORMS))
    return Snapshot(host, tuple(objects))


_NO_FORMS = policy_table.KernelForms()
"""Never taught: every chain of a listed policy table reads as unknown."""


def sysctls(wanted: Iterable[KernelObject]) -> tuple[Sysctl, ...]:
    """The current values of the desired sysctls that exist."""
    found = []
    for obj in wanted:
        if isinstance(obj, Sysctl):
            value = sysctl.read_path(obj.path)
            if value is not None:
                found.append(dataclasses.replace(obj, value=value))
    return tuple(found)


def _ours(alias: str | None) -> bool:
    return (alias or "").startswith(LINK_ALIAS_PREFIX)


def _parent(record: devices.LinkRecord) -> int | None:
    """The link a VXLAN sends by or a VLAN sits on."""
    return record.vxlan.parent_index if record.vxlan else record.parent_index


def _host(sock: RtnlSocket, records: list[devices.LinkRecord], names: dict[int, str]) -> HostFacts:
    addresses: dict[int, list[str]] = {}
    for address in devices.list_addresses(sock):
        if address.scope == devices.RT_SCOPE_UNIVERSE:
            addresses.setdefault(address.index, []).append(f"{address.address}/{address.prefixlen}")
    links = {}
    for record in records:
        parent_index = _parent(record)
        links[record.name] = HostLink(
            name=record.name,
            index=record.index,
            kind=record.kind,
            mtu=record.mtu,
            mac=record.mac,
            up=record.up,
            alias=record.alias,
            addresses=tuple(addresses.get(record.index, ())),
            parent=names.get(parent_index) if parent_index else None,
            vlan_id=record.vlan.vlan_id if record.vlan else None,
        )
    return HostFacts(links=links, ipv6=IPV6_PROC.is_dir())


def _link(record: devices.LinkRecord, names: dict[int, str]) -> Link:
    parent = _link_name(_parent(record), names) or ""
    if record.vxlan is not None:
        return VxlanLink(
            name=record.name,
            vni=record.vxlan.vni,
            local=record.vxlan.local or "",
            parent=parent,
            port=record.vxlan.port,
            mtu=record.mtu,
            mac=record.mac or "",
            learning=record.vxlan.learning,
            up=record.up,
        )
    if record.vlan is not None:
        return VlanLink(name=record.name, parent=parent, vlan_id=record.vlan.vlan_id, up=record.up)
    return OtherLink(name=record.name, found_kind=record.kind)


def _fdb(sock: RtnlSocket, links: list[devices.LinkRecord]) -> list[KernelObject]:
    found: list[KernelObject] = []
    for link in links:
        if link.kind != "vxlan":
            continue
        for entry in fdb.list_entries(sock, link.index):
            if entry.dst is not None and entry.state & neighbours.NUD_PERMANENT:
                found.append(FdbEntry(link.name, entry.mac, entry.dst))
    return found


def _link_name(index: int | None, names: dict[int, str]) -> str | None:
    if index is None:
        return None
    return names.get(index, f"#{index}")


def _neighbours(
    sock: RtnlSocket, family: int, config: NodeConfig, names: dict[int, str]
) -> list[KernelObject]:
    protocol = config.numbers.route_protocol
    found: list[KernelObject] = []
    for proxy in (False, True):
        for entry in neighbours.list_neighbours(sock, family, proxy=proxy):
            if entry.protocol != protocol:
                continue
            link = _link_name(entry.ifindex, names) or ""
            # A non-proxy entry without an address (failed) still is one: "" keeps it apart.
            lladdr = None if proxy else (entry.lladdr or "")
            found.append(Neighbour(link, entry.address, lladdr))
    return found


def _routes(
    sock: RtnlSocket, family: int, config: NodeConfig, names: dict[int, str]
) -> list[KernelObject]:
    protocol = config.numbers.route_protocol
    return [
        Route(
            family=VERSION_OF[family],
            table=route.table,
            dst=route.dst,
            oif=_link_name(route.oif, names),
            gateway=route.gateway,
            prefsrc=route.prefsrc,
            onlink=route.onlink,
            scope=route.scope,
            type=route.type,
        )
        for route in routes.list_routes(sock, family)
        if route.protocol == protocol
    ]


def _rules(sock: RtnlSocket, family: int, config: NodeConfig) -> list[KernelObject]:
    owned = config.numbers.owned_priorities
    return [
        Rule(
            family=VERSION_OF[family],
            priority=rule.priority,
            table=rule.table,
            src=rule.src,
            dst=rule.dst,
            iifname=rule.iifname,
            oifname=rule.oifname,
            fwmark=rule.fwmark,
            fwmask=rule.fwmask,
            tos=rule.tos,
            invert=rule.invert,
            action=rule.action,
        )
        for rule in rules.list_rules(sock, family)
        if rule.priority in owned
    ]
