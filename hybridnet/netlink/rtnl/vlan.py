"""802.1Q VLAN device configuration (``IFLA_INFO_DATA`` of kind ``vlan``); the parent link
is the request's ``IFLA_LINK``."""

from __future__ import annotations

import dataclasses

from hybridnet.netlink.rtnl import wire

IFLA_VLAN_ID = 1


@dataclasses.dataclass(frozen=True, slots=True)
class VlanInfo:
    vlan_id: int


def encode(*, vlan_id: int) -> bytes:
    return wire.attr_u16(IFLA_VLAN_ID, vlan_id)


def decode(data: dict[int, bytes]) -> VlanInfo:
    return VlanInfo(vlan_id=wire.u16(data[IFLA_VLAN_ID]) if IFLA_VLAN_ID in data else -1)
