"""Policy-routing rules: dump, add, delete."""

from __future__ import annotations

import dataclasses
import ipaddress
import struct

from hybridnet.netlink.rtnl import wire
from hybridnet.netlink.rtnl.sock import RtnlSocket

FIB_RULE_HDR = struct.Struct("=BBBBBBBBI")
FRA_DST = 1
FRA_SRC = 2
FRA_IIFNAME = 3
FRA_PRIORITY = 6
FRA_FWMARK = 10
FRA_TABLE = 15
FRA_FWMASK = 16
FRA_OIFNAME = 17
FRA_PROTOCOL = 21
FR_ACT_TO_TBL = 1
FIB_RULE_INVERT = 0x2


@dataclasses.dataclass(frozen=True, slots=True)
class RuleRecord:
    """A rule with every selector the datapath can tell apart (so deleting one names it
    exactly: the kernel deletes the first rule matching the selectors a request gives)."""

    family: int
    priority: int
    table: int
    action: int = FR_ACT_TO_TBL
    src: str | None = None
    dst: str | None = None
    iifname: str | None = None
    oifname: str | None = None
    fwmark: int | None = None
    fwmask: int | None = None
    tos: int = 0
    invert: bool = False


def list_rules(sock: RtnlSocket, family: int) -> list[RuleRecord]:
    request = FIB_RULE_HDR.pack(family, 0, 0, 0, 0, 0, 0, 0, 0)
    return [parse(body) for body in sock.dump(wire.RTM_GETRULE, request)]


def parse(body: bytes) -> RuleRecord:
    family, dst_len, src_len, tos, table, _, _, action, flags = FIB_RULE_HDR.unpack_from(body)
    found = wire.attrs(body, FIB_RULE_HDR.size)

    def prefix(kind: int, length: int) -> str | None:
        return f"{wire.ip_text(found[kind])}/{length}" if kind in found else None

    return RuleRecord(
        family=family,
        priority=wire.u32(found[FRA_PRIORITY]) if FRA_PRIORITY in found else 0,
        table=wire.u32(found[FRA_TABLE]) if FRA_TABLE in found else table,
        action=action,
        src=prefix(FRA_SRC, src_len),
        dst=prefix(FRA_DST, dst_len),
        iifname=wire.text(found[FRA_IIFNAME]) if FRA_IIFNAME in found else None,
        oifname=wire.text(found[FRA_OIFNAME]) if FRA_OIFNAME in found else None,
        fwmark=wire.u32(found[FRA_FWMARK]) if FRA_FWMARK in found else None,
        fwmask=wire.u32(found[FRA_FWMASK]) if FRA_FWMASK in found else None,
        tos=tos,
        invert=bool(flags & FIB_RULE_INVERT),
    )


def _body(rule: RuleRecord, protocol: int | None) -> bytes:
    def length(cidr: str | None) -> int:
        return ipaddress.ip_network(cidr).prefixlen if cidr else 0

    header_table = rule.table if rule.table < 256 else 0
    flags = FIB_RULE_INVERT if rule.invert else 0
    body = FIB_RULE_HDR.pack(
        rule.family,
        length(rule.dst),
        length(rule.src),
        rule.tos,
        header_table,
        0,
        0,
        rule.action,
        flags,
    )
    body += wire.attr_u32(FRA_PRIORITY, rule.priority)
    body += wire.attr_u32(FRA_TABLE, rule.table)
    for kind, cidr in ((FRA_SRC, rule.src), (FRA_DST, rule.dst)):
        if cidr is not None:
            body += wire.attr(kind, ipaddress.ip_network(cidr).network_address.packed)
    for kind, name in ((FRA_IIFNAME, rule.iifname), (FRA_OIFNAME, rule.oifname)):
        if name is not None:
            body += wire.attr_str(kind, name)
    for kind, number in ((FRA_FWMARK, rule.fwmark), (FRA_FWMASK, rule.fwmask)):
        if number is not None:
            body += wire.attr_u32(kind, number)
    if protocol is not None:
        body += wire.attr_u8(FRA_PROTOCOL, protocol)
    return body


def add(rule: RuleRecord, *, protocol: int) -> wire.Request:
    """Add the rule (fails with EEXIST when an identical one exists), marked with
    ``protocol`` so people can list it (``ip rule show proto N``)."""
    return wire.Request(
        wire.RTM_NEWRULE, wire.NLM_F_CREATE | wire.NLM_F_EXCL, _body(rule, protocol)
    )


def delete(rule: RuleRecord) -> wire.Request:
    return wire.Request(wire.RTM_DELRULE, 0, _body(rule, None))
