"""Neighbour entries (ARP / NDP cache) and proxy entries (answered on behalf of others)."""

from __future__ import annotations

import dataclasses
import struct

from hybridnet.netlink.rtnl import wire
from hybridnet.netlink.rtnl.sock import RtnlSocket

NDMSG = struct.Struct("=BxxxiHBB")
NDA_DST = 1
NDA_LLADDR = 2
NDA_PROTOCOL = 12
NUD_PERMANENT = 0x80
NTF_PROXY = 0x08


@dataclasses.dataclass(frozen=True, slots=True)
class NeighbourRecord:
    family: int
    ifindex: int
    address: str
    lladdr: str | None
    state: int
    proxy: bool
    protocol: int


def list_neighbours(sock: RtnlSocket, family: int, *, proxy: bool) -> list[NeighbourRecord]:
    """Every neighbour entry of the family, or every proxy entry when ``proxy``."""
    request = NDMSG.pack(family, 0, 0, NTF_PROXY if proxy else 0, 0)
    found = []
    for body in sock.dump(wire.RTM_GETNEIGH, request):
        record = parse(body, proxy)
        if record is not None:
            found.append(record)
    return found


def parse(body: bytes, proxy: bool) -> NeighbourRecord | None:
    family, ifindex, state, flags, _ = NDMSG.unpack_from(body)
    found = wire.attrs(body, NDMSG.size)
    if NDA_DST not in found or bool(flags & NTF_PROXY) != proxy:
        return None
    lladdr = found.get(NDA_LLADDR)
    return NeighbourRecord(
        family=family,
        ifindex=ifindex,
        address=wire.ip_text(found[NDA_DST]),
        lladdr=wire.mac_text(lladdr) if lladdr and len(lladdr) == 6 else None,
        state=state,
        proxy=proxy,
        protocol=wire.u8(found[NDA_PROTOCOL]) if NDA_PROTOCOL in found else 0,
    )


def add(
    *, ifindex: int, address: str, lladdr: str | None, protocol: int, replace: bool = False
) -> wire.Request:
    """A permanent entry ``address -> lladdr`` on the link, or a proxy entry for ``address``
    when ``lladdr`` is None. ``replace`` changes an existing entry in place."""
    family = wire.family_of(address)
    if lladdr is None:
        body = NDMSG.pack(family, ifindex, 0, NTF_PROXY, 0) + wire.attr_ip(NDA_DST, address)
    else:
        body = NDMSG.pack(family, ifindex, NUD_PERMANENT, 0, 0) + wire.attr_ip(NDA_DST, address)
        body += wire.attr(NDA_LLADDR, wire.mac_bytes(lladdr))
    body += wire.attr_u8(NDA_PROTOCOL, protocol)
    flags = wire.NLM_F_CREATE | (wire.NLM_F_REPLACE if replace else wire.NLM_F_EXCL)
    return wire.Request(wire.RTM_NEWNEIGH, flags, body)


def delete(*, ifindex: int, address: str, proxy: bool) -> wire.Request:
    family = wire.family_of(address)
    body = NDMSG.pack(family, ifindex, 0, NTF_PROXY if proxy else 0, 0)
    return wire.Request(wire.RTM_DELNEIGH, 0, body + wire.attr_ip(NDA_DST, address))
