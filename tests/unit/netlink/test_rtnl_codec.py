"""The rtnetlink codec without a kernel: every request the datapath sends decodes back (with
the same parsers that read the kernel's dumps) to what was asked, and the kernel's error
messages, extended acknowledgement included, become NetlinkError."""

from __future__ import annotations

import errno
import struct

from hybridnet.netlink.rtnl import devices, fdb, neighbours, routes, rules, sock, vlan, vxlan, wire


def test_attributes_round_trip_with_padding_and_nesting() -> None:
    data = wire.attr_str(3, "eth0") + wire.attr_nested(18, wire.attr_u8(1, 7), wire.attr_u32(2, 9))
    found = wire.attrs(data)
    assert wire.text(found[3]) == "eth0"
    inner = wire.attrs(found[18])
    assert (wire.u8(inner[1]), wire.u32(inner[2])) == (7, 9)


def test_a_truncated_attribute_stops_parsing_instead_of_reading_past_the_end() -> None:
    data = wire.attr_u32(1, 5) + struct.pack("=HH", 2, 9)  # a length below the header's own
    assert list(wire.attrs(data)) == [1]


def test_route_requests_decode_to_what_was_asked() -> None:
    request = routes.add(
        dst="198.19.0.0/24", table=40000, protocol=104, scope=253, oif=7, prefsrc="198.18.0.10"
    )
    assert request.msg_type == wire.RTM_NEWROUTE
    assert request.flags == wire.NLM_F_CREATE | wire.NLM_F_EXCL
    assert routes.parse(request.body) == routes.RouteRecord(
        family=wire.AF_INET,
        table=40000,
        dst="198.19.0.0/24",
        protocol=104,
        scope=253,
        type=routes.RTN_UNICAST,
        oif=7,
        gateway=None,
        prefsrc="198.18.0.10",
        onlink=False,
    )
    default = routes.add(
        dst="::/0",
        table=15,
        protocol=104,
        scope=0,
        oif=3,
        gateway="2001:db8::1",
        onlink=True,
        replace=True,
    )
    assert default.flags == wire.NLM_F_CREATE | wire.NLM_F_REPLACE
    parsed = routes.parse(default.body)
    assert parsed is not None
    assert (parsed.family, parsed.dst, parsed.gateway, parsed.onlink, parsed.table) == (
        wire.AF_INET6,
        "::/0",
        "2001:db8::1",
        True,
        15,
    )


def test_a_route_delete_names_the_protocol_so_only_ours_can_match() -> None:
    request = routes.delete(dst="198.19.0.0/24", table=40000, protocol=104)
    family, dst_len, _, _, table, protocol, scope, _, _ = routes.RTMSG.unpack_from(request.body)
    assert (family, dst_len, table, protocol, scope) == (wire.AF_INET, 24, 0, 104, 255)
    assert wire.u32(wire.attrs(request.body, routes.RTMSG.size)[routes.RTA_TABLE]) == 40000


def test_rule_requests_decode_to_what_was_asked() -> None:
    rule = rules.RuleRecord(
        family=wire.AF_INET6, priority=20001, table=31964, src="2001:db8:10::/64"
    )
    assert rules.parse(rules.add(rule, protocol=104).body) == rule
    selective = rules.RuleRecord(
        family=wire.AF_INET,
        priority=20000,
        table=7,
        dst="10.0.0.0/8",
        iifname="eth1",
        oifname="eth2",
        fwmark=4,
        fwmask=255,
        invert=True,
    )
    assert rules.parse(rules.delete(selective).body) == selective


def test_neighbour_requests_decode_to_what_was_asked() -> None:
    permanent = neighbours.add(
        ifindex=4, address="198.18.0.11", lladdr="02:00:00:00:00:01", protocol=104
    )
    assert neighbours.parse(permanent.body, proxy=False) == neighbours.NeighbourRecord(
        family=wire.AF_INET,
        ifindex=4,
        address="198.18.0.11",
        lladdr="02:00:00:00:00:01",
        state=neighbours.NUD_PERMANENT,
        proxy=False,
        protocol=104,
    )
    proxy = neighbours.add(ifindex=4, address="2001:db8::5", lladdr=None, protocol=104)
    assert neighbours.parse(proxy.body, proxy=True) == neighbours.NeighbourRecord(
        family=wire.AF_INET6,
        ifindex=4,
        address="2001:db8::5",
        lladdr=None,
        state=0,
        proxy=True,
        protocol=104,
    )
    assert neighbours.parse(proxy.body, proxy=False) is None  # a dump asked for the other kind


def test_fdb_flood_entries_append_and_unicast_entries_are_exclusive() -> None:
    flood = fdb.add(ifindex=4, mac=fdb.FLOOD_MAC, dst="198.18.0.11")
    unicast = fdb.add(ifindex=4, mac="02:00:00:00:00:01", dst="198.18.0.11")
    assert flood.flags & wire.NLM_F_APPEND and not flood.flags & wire.NLM_F_EXCL
    assert unicast.flags & wire.NLM_F_EXCL and not unicast.flags & wire.NLM_F_APPEND
    assert fdb.parse(unicast.body) == fdb.FdbRecord(4, "02:00:00:00:00:01", "198.18.0.11", 0x80)
    assert fdb.parse(routes.add(dst="10.0.0.0/8", table=1, protocol=4, scope=0).body) is None


def test_link_create_requests_decode_to_what_was_asked() -> None:
    info = vxlan.encode(vni=4, local="198.18.0.10", parent_index=2, port=8472)
    record = devices.parse_link(
        devices.create(
            name="eth0.vxlan4", kind="vxlan", info_data=info, mtu=1450, mac="02:11:22:33:44:55"
        ).body
    )
    assert (record.name, record.kind, record.mtu, record.mac, record.up) == (
        "eth0.vxlan4",
        "vxlan",
        1450,
        "02:11:22:33:44:55",
        False,
    )
    assert record.vxlan == vxlan.VxlanInfo(
        vni=4, local="198.18.0.10", parent_index=2, port=8472, learning=False
    )
    tagged = devices.parse_link(
        devices.create(
            name="eth0.100", kind="vlan", info_data=vlan.encode(vlan_id=100), parent_index=2
        ).body
    )
    assert (tagged.kind, tagged.parent_index, tagged.vlan) == ("vlan", 2, vlan.VlanInfo(100))


def test_configure_changes_only_the_up_flag_it_is_given() -> None:
    _, _, index, flags, change = devices.IFINFO.unpack_from(devices.configure(9, up=True).body)
    assert (index, flags, change) == (9, devices.IFF_UP, devices.IFF_UP)
    _, _, _, flags, change = devices.IFINFO.unpack_from(devices.configure(9, alias="x").body)
    assert (flags, change) == (0, 0)


def _error_message(code: int, reason: str | None) -> bytes:
    echoed = wire.HEADER.pack(40, wire.RTM_NEWLINK, 0, 5, 0)
    tlvs = wire.attr_str(wire.NLMSGERR_ATTR_MSG, reason) if reason else b""
    body = struct.pack("=i", -code) + echoed + tlvs
    flags = wire.NLM_F_ACK_TLVS if reason else 0
    return wire.HEADER.pack(wire.HEADER.size + len(body), wire.NLMSG_ERROR, flags, 5, 0) + body


def test_an_error_message_carries_errno_and_the_kernels_reason() -> None:
    data = _error_message(errno.EOPNOTSUPP, "Unknown device type")
    failure = sock._error(data, 0, len(data), wire.NLM_F_ACK_TLVS)
    assert failure is not None
    assert (failure.errno, failure.reason) == (errno.EOPNOTSUPP, "Unknown device type")
    assert "Unknown device type" in str(failure)


def test_an_acknowledgement_is_not_an_error() -> None:
    data = _error_message(0, None)
    assert sock._error(data, 0, len(data), 0) is None
