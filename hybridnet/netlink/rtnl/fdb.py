"""Forwarding entries of a VXLAN device (``bridge fdb ... self``): which remote tunnel
endpoint a destination MAC is sent to. The all-zeros MAC is the flood list: broadcast and
unknown frames go to every endpoint listed under it."""

from __future__ import annotations

import dataclasses

from hybridnet.netlink.rtnl import wire
from hybridnet.netlink.rtnl.neighbours import NDA_DST, NDA_LLADDR, NDMSG, NUD_PERMANENT
from hybridnet.netlink.rtnl.sock import RtnlSocket

NTF_SELF = 0x02
FLOOD_MAC = "00:00:00:00:00:00"


@dataclasses.dataclass(frozen=True, slots=True)
class FdbRecord:
    ifindex: int
    mac: str
    dst: str | None
    """The remote endpoint's address (None for entries that are not a tunnel's)."""
    state: int


def list_entries(sock: RtnlSocket, ifindex: int) -> list[FdbRecord]:
    """The forwarding entries of one link (the kernel dumps every device's; the rest are
    dropped here)."""
    found = []
    for body in sock.dump(wire.RTM_GETNEIGH, NDMSG.pack(wire.AF_BRIDGE, 0, 0, 0, 0)):
        record = parse(body)
        if record is not None and record.ifindex == ifindex:
            found.append(record)
    return found


def parse(body: bytes) -> FdbRecord | None:
    """One dumped entry; None for what is not a bridge-family entry with a MAC."""
    family, index, state, _, _ = NDMSG.unpack_from(body)
    values = wire.attrs(body, NDMSG.size)
    if family != wire.AF_BRIDGE or NDA_LLADDR not in values:
        return None
    dst = wire.ip_text(values[NDA_DST]) if NDA_DST in values else None
    return FdbRecord(index, wire.mac_text(values[NDA_LLADDR]), dst, state)


def _body(ifindex: int, mac: str, dst: str, state: int) -> bytes:
    body = NDMSG.pack(wire.AF_BRIDGE, ifindex, state, NTF_SELF, 0)
    return body + wire.attr(NDA_LLADDR, wire.mac_bytes(mac)) + wire.attr_ip(NDA_DST, dst)


def add(*, ifindex: int, mac: str, dst: str) -> wire.Request:
    """A permanent entry ``mac -> dst``. Entries of the flood MAC are appended (one per
    remote endpoint); any other MAC has one endpoint, so a second add fails (EEXIST)."""
    flags = wire.NLM_F_CREATE | (wire.NLM_F_APPEND if mac == FLOOD_MAC else wire.NLM_F_EXCL)
    return wire.Request(wire.RTM_NEWNEIGH, flags, _body(ifindex, mac, dst, NUD_PERMANENT))


def delete(*, ifindex: int, mac: str, dst: str) -> wire.Request:
    """Remove exactly the ``mac -> dst`` entry (other endpoints of the flood MAC stay)."""
    return wire.Request(wire.RTM_DELNEIGH, 0, _body(ifindex, mac, dst, NUD_PERMANENT))
