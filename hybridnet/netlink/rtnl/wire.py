"""Netlink framing: message headers, attributes (TLVs) and the constants the datapath uses."""

from __future__ import annotations

import dataclasses
import ipaddress
import socket
import struct

AF_INET = int(socket.AF_INET)
AF_INET6 = int(socket.AF_INET6)
AF_BRIDGE = 7

# Message types (linux/rtnetlink.h, linux/netlink.h).
NLMSG_ERROR = 2
NLMSG_DONE = 3
RTM_NEWLINK, RTM_DELLINK, RTM_GETLINK = 16, 17, 18
RTM_GETADDR = 22
RTM_NEWROUTE, RTM_DELROUTE, RTM_GETROUTE = 24, 25, 26
RTM_NEWNEIGH, RTM_DELNEIGH, RTM_GETNEIGH = 28, 29, 30
RTM_NEWRULE, RTM_DELRULE, RTM_GETRULE = 32, 33, 34

# Header flags.
NLM_F_REQUEST = 0x1
NLM_F_MULTI = 0x2
NLM_F_ACK = 0x4
NLM_F_DUMP_INTR = 0x10
NLM_F_DUMP = 0x300
NLM_F_REPLACE = 0x100
NLM_F_EXCL = 0x200
NLM_F_CREATE = 0x400
NLM_F_APPEND = 0x800
NLM_F_ACK_TLVS = 0x200  # on an NLMSG_ERROR: extended-ack attributes follow
NLMSGERR_ATTR_MSG = 1

NLA_F_NESTED = 0x8000
NLA_TYPE_MASK = 0x3FFF

HEADER = struct.Struct("=IHHII")
ATTR_HEADER = struct.Struct("=HH")
U8, U16, U32, BE16 = (
    struct.Struct("=B"),
    struct.Struct("=H"),
    struct.Struct("=I"),
    struct.Struct(">H"),
)


@dataclasses.dataclass(frozen=True)
class Request:
    """One request message before framing: the socket adds the header and sequence number."""

    msg_type: int
    flags: int
    body: bytes


def attr(kind: int, payload: bytes) -> bytes:
    """One attribute, padded to 4 bytes."""
    length = ATTR_HEADER.size + len(payload)
    return ATTR_HEADER.pack(length, kind) + payload + b"\0" * (-length % 4)


def attr_u8(kind: int, value: int) -> bytes:
    return attr(kind, U8.pack(value))


def attr_u16(kind: int, value: int) -> bytes:
    return attr(kind, U16.pack(value))


def attr_u32(kind: int, value: int) -> bytes:
    return attr(kind, U32.pack(value))


def attr_str(kind: int, value: str) -> bytes:
    """A NUL-terminated string attribute."""
    return attr(kind, value.encode() + b"\0")


def attr_nested(kind: int, *children: bytes) -> bytes:
    return attr(kind | NLA_F_NESTED, b"".join(children))


def attr_ip(kind: int, address: str) -> bytes:
    return attr(kind, ipaddress.ip_address(address).packed)


def attrs(data: bytes, offset: int = 0, end: int | None = None) -> dict[int, bytes]:
    """Type -> payload of the attributes in ``data[offset:end]`` (a repeated type keeps its
    last value; flags such as NLA_F_NESTED are stripped from the type)."""
    end = len(data) if end is None else end
    found = {}
    while offset + ATTR_HEADER.size <= end:
        length, kind = ATTR_HEADER.unpack_from(data, offset)
        if length < ATTR_HEADER.size:
            break
        found[kind & NLA_TYPE_MASK] = data[offset + ATTR_HEADER.size : offset + length]
        offset += (length + 3) & ~3
    return found


def text(payload: bytes) -> str:
    return payload.split(b"\0", 1)[0].decode(errors="replace")


def u32(payload: bytes) -> int:
    return int(U32.unpack_from(payload)[0])


def u16(payload: bytes) -> int:
    return int(U16.unpack_from(payload)[0])


def u8(payload: bytes) -> int:
    return int(payload[0])


def ip_text(payload: bytes) -> str:
    """An address from its packed form, spelled as ``ipaddress`` spells it (inet_ntop is
    10x faster and agrees, except on IPv4-embedding IPv6 forms)."""
    if len(payload) == 4:
        return socket.inet_ntop(socket.AF_INET, payload)
    text = socket.inet_ntop(socket.AF_INET6, payload)
    return str(ipaddress.IPv6Address(payload)) if "." in text else text


def mac_text(payload: bytes) -> str:
    return payload.hex(":")


def mac_bytes(mac: str) -> bytes:
    parts = mac.split(":")
    if len(parts) != 6:
        raise ValueError(f"not a MAC address: {mac!r}")
    return bytes(int(part, 16) for part in parts)


def family_of(address: str) -> int:
    return AF_INET6 if ipaddress.ip_address(address).version == 6 else AF_INET
