"""Routes in any table: dump, add, replace, delete."""

from __future__ import annotations

import dataclasses
import ipaddress
import struct

from hybridnet.netlink.rtnl import wire
from hybridnet.netlink.rtnl.sock import RtnlSocket

RTMSG = struct.Struct("=BBBBBBBBI")
RTA_DST = 1
RTA_OIF = 4
RTA_GATEWAY = 5
RTA_PRIORITY = 6
RTA_PREFSRC = 7
RTA_TABLE = 15
RTM_F_CLONED = 0x200
RTNH_F_ONLINK = 0x4
RT_TABLE_UNSPEC = 0
RT_SCOPE_NOWHERE = 255
RTN_UNICAST = 1
RTN_THROW = 9


@dataclasses.dataclass(frozen=True, slots=True)
class RouteRecord:
    family: int
    table: int
    dst: str
    """CIDR, ``0.0.0.0/0`` / ``::/0`` for a default route."""
    protocol: int
    scope: int
    type: int
    oif: int | None
    gateway: str | None
    prefsrc: str | None
    onlink: bool


def list_routes(sock: RtnlSocket, family: int) -> list[RouteRecord]:
    """Every route of the family in every table (cloned cache entries left out)."""
    request = RTMSG.pack(family, 0, 0, 0, 0, 0, 0, 0, 0)
    found = []
    for body in sock.dump(wire.RTM_GETROUTE, request):
        record = parse(body)
        if record is not None:
            found.append(record)
    return found


def parse(body: bytes) -> RouteRecord | None:
    family, dst_len, _, _, table, protocol, scope, kind, flags = RTMSG.unpack_from(body)
    if flags & RTM_F_CLONED or family not in (wire.AF_INET, wire.AF_INET6):
        return None
    found = wire.attrs(body, RTMSG.size)
    if RTA_DST in found:
        dst = f"{wire.ip_text(found[RTA_DST])}/{dst_len}"
    else:
        dst = "0.0.0.0/0" if family == wire.AF_INET else "::/0"
    return RouteRecord(
        family=family,
        table=wire.u32(found[RTA_TABLE]) if RTA_TABLE in found else table,
        dst=dst,
        protocol=protocol,
        scope=scope,
        type=kind,
        oif=wire.u32(found[RTA_OIF]) if RTA_OIF in found else None,
        gateway=wire.ip_text(found[RTA_GATEWAY]) if RTA_GATEWAY in found else None,
        prefsrc=wire.ip_text(found[RTA_PREFSRC]) if RTA_PREFSRC in found else None,
        onlink=bool(flags & RTNH_F_ONLINK),
    )


def _body(
    *,
    dst: str,
    table: int,
    protocol: int,
    scope: int,
    kind: int,
    oif: int | None,
    gateway: str | None,
    prefsrc: str | None,
    onlink: bool,
) -> bytes:
    network = ipaddress.ip_network(dst)
    family = wire.AF_INET6 if network.version == 6 else wire.AF_INET
    header_table = table if table < 256 else RT_TABLE_UNSPEC
    flags = RTNH_F_ONLINK if onlink else 0
    body = RTMSG.pack(family, network.prefixlen, 0, 0, header_table, protocol, scope, kind, flags)
    body += wire.attr_u32(RTA_TABLE, table)
    if network.prefixlen:
        body += wire.attr(RTA_DST, network.network_address.packed)
    if oif is not None:
        body += wire.attr_u32(RTA_OIF, oif)
    if gateway is not None:
        body += wire.attr_ip(RTA_GATEWAY, gateway)
    if prefsrc is not None:
        body += wire.attr_ip(RTA_PREFSRC, prefsrc)
    return body


def add(
    *,
    dst: str,
    table: int,
    protocol: int,
    scope: int,
    kind: int = RTN_UNICAST,
    oif: int | None = None,
    gateway: str | None = None,
    prefsrc: str | None = None,
    onlink: bool = False,
    replace: bool = False,
) -> wire.Request:
    """Add a route; fails (EEXIST) when the table already has one for ``dst``, unless
    ``replace``, which changes that route in place."""
    flags = wire.NLM_F_CREATE | (wire.NLM_F_REPLACE if replace else wire.NLM_F_EXCL)
    body = _body(
        dst=dst,
        table=table,
        protocol=protocol,
        scope=scope,
        kind=kind,
        oif=oif,
        gateway=gateway,
        prefsrc=prefsrc,
        onlink=onlink,
    )
    return wire.Request(wire.RTM_NEWROUTE, flags, body)


def delete(*, dst: str, table: int, protocol: int) -> wire.Request:
    """Delete the route to ``dst`` in ``table`` only if it carries ``protocol``."""
    network = ipaddress.ip_network(dst)
    family = wire.AF_INET6 if network.version == 6 else wire.AF_INET
    header_table = table if table < 256 else RT_TABLE_UNSPEC
    body = RTMSG.pack(
        family, network.prefixlen, 0, 0, header_table, protocol, RT_SCOPE_NOWHERE, 0, 0
    )
    body += wire.attr_u32(RTA_TABLE, table)
    if network.prefixlen:
        body += wire.attr(RTA_DST, network.network_address.packed)
    return wire.Request(wire.RTM_DELROUTE, 0, body)
