"""Links (network devices) and their addresses: dumps, and create / set / delete requests.

Kind-specific configuration (VXLAN, VLAN) is encoded and decoded by ``vxlan`` and ``vlan``;
this module frames it as ``IFLA_LINKINFO``.
"""

from __future__ import annotations

import dataclasses
import struct

from hybridnet.netlink.rtnl import vlan, vxlan, wire
from hybridnet.netlink.rtnl.sock import RtnlSocket

IFINFO = struct.Struct("=BxHiII")
IFADDR = struct.Struct("=BBBBI")
IFF_UP = 0x1

IFLA_ADDRESS = 1
IFLA_IFNAME = 3
IFLA_MTU = 4
IFLA_LINK = 5
IFLA_LINKINFO = 18
IFLA_IFALIAS = 20
IFLA_LINK_NETNSID = 37
IFLA_INFO_KIND = 1
IFLA_INFO_DATA = 2

IFA_ADDRESS = 1
IFA_LOCAL = 2
IFA_FLAGS = 8
RT_SCOPE_UNIVERSE = 0


@dataclasses.dataclass(frozen=True, slots=True)
class LinkRecord:
    index: int
    name: str
    kind: str | None
    """``IFLA_INFO_KIND`` (vxlan, vlan, veth, bridge...); None for plain hardware devices."""
    mtu: int
    mac: str | None
    up: bool
    alias: str | None
    parent_index: int | None
    """``IFLA_LINK`` when it names a link in this namespace (a VLAN's parent)."""
    vxlan: vxlan.VxlanInfo | None = None
    vlan: vlan.VlanInfo | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class AddressRecord:
    index: int
    family: int
    address: str
    prefixlen: int
    scope: int


def list_links(sock: RtnlSocket) -> list[LinkRecord]:
    """Every link of the namespace."""
    request = IFINFO.pack(0, 0, 0, 0, 0)
    return [parse_link(body) for body in sock.dump(wire.RTM_GETLINK, request)]


def parse_link(body: bytes) -> LinkRecord:
    _, _, index, flags, _ = IFINFO.unpack_from(body)
    found = wire.attrs(body, IFINFO.size)
    kind = None
    info_data: dict[int, bytes] = {}
    if IFLA_LINKINFO in found:
        info = wire.attrs(found[IFLA_LINKINFO])
        kind = wire.text(info[IFLA_INFO_KIND]) if IFLA_INFO_KIND in info else None
        if IFLA_INFO_DATA in info:
            info_data = wire.attrs(info[IFLA_INFO_DATA])
    parent = None
    if IFLA_LINK in found and IFLA_LINK_NETNSID not in found:
        parent = wire.u32(found[IFLA_LINK])
    alias = wire.text(found[IFLA_IFALIAS]) if IFLA_IFALIAS in found else None
    return LinkRecord(
        index=index,
        name=wire.text(found[IFLA_IFNAME]),
        kind=kind,
        mtu=wire.u32(found[IFLA_MTU]) if IFLA_MTU in found else 0,
        mac=wire.mac_text(found[IFLA_ADDRESS]) if len(found.get(IFLA_ADDRESS, b"")) == 6 else None,
        up=bool(flags & IFF_UP),
        alias=alias or None,
        parent_index=parent or None,
        vxlan=vxlan.decode(info_data) if kind == "vxlan" else None,
        vlan=vlan.decode(info_data) if kind == "vlan" else None,
    )


def list_addresses(sock: RtnlSocket) -> list[AddressRecord]:
    """Every address of the namespace, IPv4 and IPv6."""
    found = []
    for body in sock.dump(wire.RTM_GETADDR, IFADDR.pack(0, 0, 0, 0, 0)):
        family, prefixlen, _, scope, index = IFADDR.unpack_from(body)
        values = wire.attrs(body, IFADDR.size)
        # IFA_LOCAL is the address itself; IFA_ADDRESS is the peer on point-to-point links.
        raw = values.get(IFA_LOCAL) or values.get(IFA_ADDRESS)
        if raw is None or family not in (wire.AF_INET, wire.AF_INET6):
            continue
        found.append(AddressRecord(index, family, wire.ip_text(raw), prefixlen, scope))
    return found


def find(sock: RtnlSocket, name: str) -> LinkRecord | None:
    """The link called ``name``, None when there is none."""
    for link in list_links(sock):
        if link.name == name:
            return link
    return None


def create(
    *,
    name: str,
    kind: str,
    info_data: bytes,
    parent_index: int | None = None,
    mtu: int | None = None,
    mac: str | None = None,
) -> wire.Request:
    """Create a link, down; fails (EEXIST) when the name is taken. The kernel ignores an alias
    in this request: set it afterwards with :func:`configure`."""
    body = IFINFO.pack(0, 0, 0, 0, 0) + wire.attr_str(IFLA_IFNAME, name)
    if parent_index is not None:
        body += wire.attr_u32(IFLA_LINK, parent_index)
    if mtu is not None:
        body += wire.attr_u32(IFLA_MTU, mtu)
    if mac is not None:
        body += wire.attr(IFLA_ADDRESS, wire.mac_bytes(mac))
    body += wire.attr_nested(
        IFLA_LINKINFO,
        wire.attr_str(IFLA_INFO_KIND, kind),
        wire.attr(IFLA_INFO_DATA | wire.NLA_F_NESTED, info_data),
    )
    return wire.Request(wire.RTM_NEWLINK, wire.NLM_F_CREATE | wire.NLM_F_EXCL, body)


def configure(
    index: int,
    *,
    up: bool | None = None,
    alias: str | None = None,
    mtu: int | None = None,
    mac: str | None = None,
) -> wire.Request:
    """Change a link in place: administrative state, alias, MTU, MAC (only those given)."""
    flags, change = (IFF_UP if up else 0, IFF_UP) if up is not None else (0, 0)
    body = IFINFO.pack(0, 0, index, flags, change)
    if alias is not None:
        body += wire.attr_str(IFLA_IFALIAS, alias)
    if mtu is not None:
        body += wire.attr_u32(IFLA_MTU, mtu)
    if mac is not None:
        body += wire.attr(IFLA_ADDRESS, wire.mac_bytes(mac))
    return wire.Request(wire.RTM_NEWLINK, 0, body)


def delete(index: int) -> wire.Request:
    return wire.Request(wire.RTM_DELLINK, 0, IFINFO.pack(0, 0, index, 0, 0))
