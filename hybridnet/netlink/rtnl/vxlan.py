"""VXLAN device configuration (``IFLA_INFO_DATA`` of kind ``vxlan``)."""

from __future__ import annotations

import dataclasses
import ipaddress

from hybridnet.netlink.rtnl import wire

IFLA_VXLAN_ID = 1
IFLA_VXLAN_LINK = 3
IFLA_VXLAN_LOCAL = 4
IFLA_VXLAN_LEARNING = 7
IFLA_VXLAN_PORT = 15
IFLA_VXLAN_LOCAL6 = 17


@dataclasses.dataclass(frozen=True, slots=True)
class VxlanInfo:
    vni: int
    local: str | None
    """The local tunnel endpoint address."""
    parent_index: int | None
    """The link tunnel packets leave by."""
    port: int
    learning: bool


def encode(*, vni: int, local: str, parent_index: int, port: int) -> bytes:
    """A VXLAN without MAC learning: every forwarding entry is programmed explicitly."""
    local_attr = IFLA_VXLAN_LOCAL6 if ipaddress.ip_address(local).version == 6 else IFLA_VXLAN_LOCAL
    return b"".join(
        (
            wire.attr_u32(IFLA_VXLAN_ID, vni),
            wire.attr_u32(IFLA_VXLAN_LINK, parent_index),
            wire.attr_ip(local_attr, local),
            wire.attr(IFLA_VXLAN_PORT, wire.BE16.pack(port)),
            wire.attr_u8(IFLA_VXLAN_LEARNING, 0),
        )
    )


def decode(data: dict[int, bytes]) -> VxlanInfo:
    local = data.get(IFLA_VXLAN_LOCAL) or data.get(IFLA_VXLAN_LOCAL6)
    return VxlanInfo(
        vni=wire.u32(data[IFLA_VXLAN_ID]) if IFLA_VXLAN_ID in data else -1,
        local=wire.ip_text(local) if local else None,
        parent_index=wire.u32(data[IFLA_VXLAN_LINK]) if IFLA_VXLAN_LINK in data else None,
        port=int(wire.BE16.unpack_from(data[IFLA_VXLAN_PORT])[0]) if IFLA_VXLAN_PORT in data else 0,
        learning=bool(wire.u8(data[IFLA_VXLAN_LEARNING])) if IFLA_VXLAN_LEARNING in data else True,
    )
