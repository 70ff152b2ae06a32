"""plan() as table tests: desired and observed objects -> the exact, ordered operations."""

from __future__ import annotations

import dataclasses
from typing import TypeVar

import pytest

from hybridnet.daemon.datapath.desired import desired_state
from hybridnet.daemon.datapath.model import (
    SCOPE_LINK,
    FdbEntry,
    KernelObject,
    Kind,
    Neighbour,
    NftChain,
    NftSet,
    OtherLink,
    PacketFilter,
    Route,
    Rule,
    Sysctl,
    VlanLink,
    VxlanLink,
)
from hybridnet.daemon.datapath.plan import Action, Operation, plan
from tests.unit.daemon.datapath.builders import (
    CONFIG,
    DEFAULT_HOST,
    node_info,
    overlay,
    pod_ip,
    subnet,
    underlay,
    view,
)

VX = "eth0.vxlan4"
T = TypeVar("T", bound=KernelObject)
DEVICE = VxlanLink(
    name=VX, vni=4, local="198.18.0.10", parent="eth0", port=8472, mtu=1450, mac="52:54:00:00:00:0a"
)
ROUTE = Route(4, 40000, "198.19.0.0/24", VX, prefsrc="198.18.0.10", scope=SCOPE_LINK)
NODE_ROUTE = Route(4, 15005, "198.18.0.11/32", VX, scope=SCOPE_LINK)
RULE = Rule(4, 20001, 15005, src="198.19.0.0/24")
FLOOD = FdbEntry(VX, "00:00:00:00:00:00", "198.18.0.11")
UNICAST = FdbEntry(VX, "52:54:00:00:00:0b", "198.18.0.11")
NEIGHBOUR = Neighbour(VX, "198.18.0.11", "52:54:00:00:00:0b")
PROXY = Neighbour(VX, "2001:db8:10::5")
SYSCTL = Sysctl(f"net/ipv4/conf/{VX}/proxy_arp", "0", VX)
FORWARD = Sysctl("net/ipv4/ip_forward", "1")
TABLE = PacketFilter(
    "inet",
    "hybridnet",
    (NftSet("nat-v4", "ipv4_addr", ("interval",), ("198.19.0.0/24",)),),
    (NftChain("postrouting", "nat", "postrouting", 100, "accept", ("[]",)),),
)
EVERYTHING: tuple[KernelObject, ...] = (
    DEVICE,
    SYSCTL,
    FORWARD,
    FLOOD,
    UNICAST,
    NEIGHBOUR,
    PROXY,
    ROUTE,
    NODE_ROUTE,
    RULE,
    TABLE,
)


def ops(*pairs: tuple[Action, KernelObject]) -> list[tuple[Action, KernelObject]]:
    return list(pairs)


def summary(operations: tuple[Operation, ...]) -> list[tuple[Action, KernelObject]]:
    return [(op.action, op.target) for op in operations]


C, U, D = Action.CREATE, Action.UPDATE, Action.DELETE


@pytest.mark.parametrize(
    ("desired", "observed", "expected"),
    [
        pytest.param(EVERYTHING, EVERYTHING, [], id="in-sync"),
        pytest.param((), (), [], id="nothing-anywhere"),
        pytest.param(
            EVERYTHING,
            (),
            ops(
                (C, DEVICE),
                (C, SYSCTL),
                (C, FORWARD),
                (C, FLOOD),
                (C, UNICAST),
                (C, NEIGHBOUR),
                (C, PROXY),
                (C, ROUTE),
                (C, NODE_ROUTE),
                (C, RULE),
                (C, TABLE),
            ),
            id="from-scratch-parents-first",
        ),
        pytest.param(
            (FORWARD,),
            EVERYTHING,
            ops((D, TABLE), (D, RULE), (D, DEVICE)),
            # The link's FDB entries, neighbours, routes and sysctls go with it in the kernel:
            # deleting them first would only fail. Rules are not on a link.
            id="tear-down-children-first-and-nothing-the-link-takes-along",
        ),
        pytest.param(
            EVERYTHING,
            tuple(o for o in EVERYTHING if o is not NODE_ROUTE),
            ops((C, NODE_ROUTE)),
            id="one-route-missing",
        ),
        pytest.param(
            EVERYTHING,
            tuple(o for o in EVERYTHING if o is not RULE),
            ops((C, RULE)),
            id="one-rule-missing",
        ),
        pytest.param(
            EVERYTHING,
            tuple(o for o in EVERYTHING if o is not FLOOD),
            ops((C, FLOOD)),
            id="one-fdb-entry-missing",
        ),
        pytest.param(
            EVERYTHING,
            tuple(o for o in EVERYTHING if o is not NEIGHBOUR),
            ops((C, NEIGHBOUR)),
            id="one-neighbour-missing",
        ),
        pytest.param(
            EVERYTHING,
            (*EVERYTHING, Route(4, 15005, "198.18.0.99/32", VX, scope=SCOPE_LINK)),
            ops((D, Route(4, 15005, "198.18.0.99/32", VX, scope=SCOPE_LINK))),
            id="an-owned-route-no-longer-wanted",
        ),
    ],
)
def test_plan(
    desired: tuple[KernelObject, ...],
    observed: tuple[KernelObject, ...],
    expected: list[tuple[Action, KernelObject]],
) -> None:
    assert summary(plan(desired, observed).operations) == expected


def replaced(obj: T, **changes: object) -> T:
    return dataclasses.replace(obj, **changes)


@pytest.mark.parametrize(
    ("old", "new", "expected_actions"),
    [
        pytest.param(
            ROUTE, replaced(ROUTE, prefsrc="198.18.0.99"), [U], id="route-changed-in-place"
        ),
        pytest.param(
            NEIGHBOUR, replaced(NEIGHBOUR, lladdr="52:54:00:00:00:ff"), [U], id="neighbour-new-mac"
        ),
        pytest.param(FORWARD, replaced(FORWARD, value="0"), [U], id="sysctl-value"),
        pytest.param(DEVICE, replaced(DEVICE, mtu=1400), [U], id="vxlan-mtu-in-place"),
        pytest.param(DEVICE, replaced(DEVICE, up=False), [U], id="vxlan-down-brought-up"),
        pytest.param(TABLE, replaced(TABLE, sets=()), [U], id="packet-filter-replaced-atomically"),
    ],
)
def test_a_changed_attribute_is_updated_in_place_where_the_kernel_can(
    old: KernelObject, new: KernelObject, expected_actions: list[Action]
) -> None:
    result = plan([new], [old])
    assert [op.action for op in result.operations] == expected_actions
    assert result.operations[0].target == new
    assert result.operations[0].current == old


def test_a_rule_pointing_at_another_table_is_deleted_then_the_right_one_created() -> None:
    wrong = replaced(RULE, table=15006)
    assert summary(plan([RULE], [wrong]).operations) == ops((D, wrong), (C, RULE))


def test_an_fdb_entry_pointing_at_a_moved_vtep_is_deleted_before_the_new_one() -> None:
    moved = replaced(UNICAST, dst="198.18.0.77")
    assert summary(plan([DEVICE, moved], [DEVICE, UNICAST]).operations) == ops(
        (D, UNICAST), (C, moved)
    )


def test_a_vxlan_with_another_vni_is_replaced_with_everything_on_it() -> None:
    old_device = replaced(DEVICE, vni=5)
    observed = (old_device, SYSCTL, FLOOD, UNICAST, NEIGHBOUR, ROUTE, RULE)
    desired = (DEVICE, SYSCTL, FLOOD, UNICAST, NEIGHBOUR, ROUTE, RULE)
    assert summary(plan(desired, observed).operations) == ops(
        (D, old_device),
        (C, DEVICE),
        (C, SYSCTL),
        (C, FLOOD),
        (C, UNICAST),
        (C, NEIGHBOUR),
        (C, ROUTE),
        # the rule is not on the link: it survives and is left alone
    )


@pytest.mark.parametrize(
    "old",
    [
        pytest.param(replaced(DEVICE, local="198.18.0.99"), id="local"),
        pytest.param(replaced(DEVICE, port=4789), id="port"),
        pytest.param(replaced(DEVICE, parent="eth1"), id="parent"),
        pytest.param(replaced(DEVICE, learning=True), id="learning"),
        pytest.param(OtherLink(name=VX, found_kind="dummy"), id="our-alias-on-another-kind"),
    ],
)
def test_a_link_the_kernel_cannot_change_in_place_is_replaced(old: KernelObject) -> None:
    assert summary(plan([DEVICE], [old]).operations) == ops((D, old), (C, DEVICE))


def test_a_vlan_with_another_id_is_replaced() -> None:
    wanted = VlanLink(name="eth0.100", parent="eth0", vlan_id=100)
    found = VlanLink(name="eth0.100", parent="eth0", vlan_id=101)
    assert summary(plan([wanted], [found]).operations) == ops((D, found), (C, wanted))


def test_a_sysctl_no_longer_wanted_is_left_as_it_is() -> None:
    assert plan([], [FORWARD]).empty


def test_proxy_and_permanent_entries_for_one_address_are_different_objects() -> None:
    proxy = Neighbour(VX, "198.18.0.11")
    assert summary(plan([NEIGHBOUR], [proxy]).operations) == ops((D, proxy), (C, NEIGHBOUR))


def test_counts_group_by_kind_and_action() -> None:
    result = plan(EVERYTHING, (replaced(FORWARD, value="0"), Route(4, 1, "10.0.0.0/8", None)))
    assert result.counts() == {
        (Kind.ROUTE, D): 1,
        (Kind.LINK, C): 1,
        (Kind.SYSCTL, C): 1,
        (Kind.SYSCTL, U): 1,
        (Kind.FDB, C): 2,
        (Kind.NEIGHBOUR, C): 2,
        (Kind.ROUTE, C): 2,
        (Kind.RULE, C): 1,
        (Kind.PACKET_FILTER, C): 1,
    }


def test_deletes_always_come_before_creates() -> None:
    result = plan(
        [DEVICE, replaced(RULE, table=1), FLOOD],
        [DEVICE, RULE, replaced(FLOOD, dst="198.18.0.12")],
    )
    actions = [op.action for op in result.operations]
    assert actions == sorted(actions, key=lambda a: a is not Action.DELETE)


def test_the_plan_for_a_desired_state_against_itself_is_empty() -> None:
    """What desired builds is self-consistent: unique keys, nothing that diffs with itself."""
    state = desired_state(
        view(
            networks=(overlay(), underlay(vlan=100)),
            subnets=(
                subnet("ov4", "overlay", "198.19.0.0/24", nat=True),
                subnet("ov6", "overlay", "2001:db8:10::/64"),
                subnet("u", "underlay", "198.19.8.0/24", gateway="198.19.8.1"),
            ),
            node_infos=tuple(
                node_info(f"n{i}", f"198.18.1.{i}", f"52:54:00:00:02:{i:02x}") for i in range(1, 40)
            ),
            local_ips=(pod_ip("p", "ov6", "2001:db8:10::5/64"),),
        ),
        CONFIG,
        DEFAULT_HOST,
    )
    assert plan(state.objects, state.objects).empty
    assert len({o.key for o in state.objects}) == len(state.objects)


def test_one_remote_node_changing_touches_only_its_own_objects() -> None:
    def state_with(vtep: str) -> tuple[KernelObject, ...]:
        infos = (
            node_info("node2", "198.18.0.11", "52:54:00:00:00:0b"),
            node_info("node3", vtep, "52:54:00:00:00:0c"),
            node_info("node4", "198.18.0.13", "52:54:00:00:00:0d"),
        )
        v = view(
            networks=(overlay(),),
            subnets=(subnet("ov4", "overlay", "198.19.0.0/24", nat=True),),
            node_infos=infos,
        )
        return desired_state(v, CONFIG, DEFAULT_HOST).objects

    before, after = state_with("198.18.0.12"), state_with("198.18.0.99")
    result = plan(after, before)
    touched = {op.target.describe() for op in result.operations}
    assert touched == {
        "fdb 00:00:00:00:00:00 dst 198.18.0.12 dev eth0.vxlan4",
        "fdb 52:54:00:00:00:0c dst 198.18.0.12 dev eth0.vxlan4",
        "neighbour 198.18.0.12 lladdr 52:54:00:00:00:0c dev eth0.vxlan4",
        f"route 198.18.0.12/32 dev eth0.vxlan4 table {_table(after)}",
        "fdb 00:00:00:00:00:00 dst 198.18.0.99 dev eth0.vxlan4",
        "fdb 52:54:00:00:00:0c dst 198.18.0.99 dev eth0.vxlan4",
        "neighbour 198.18.0.99 lladdr 52:54:00:00:00:0c dev eth0.vxlan4",
        f"route 198.18.0.99/32 dev eth0.vxlan4 table {_table(after)}",
        "nftables table inet hybridnet",  # the node address sets list every VTEP
    }


def _table(objects: tuple[KernelObject, ...]) -> int:
    return next(o.table for o in objects if isinstance(o, Rule) and o.src == "198.19.0.0/24")
