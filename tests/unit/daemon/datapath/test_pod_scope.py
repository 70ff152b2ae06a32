"""Which pending operations CNI CHECK reports for a pod: those of its own tables and devices."""

from __future__ import annotations

from hybridnet.daemon.datapath.config import RoutingNumbers
from hybridnet.daemon.datapath.desired import DesiredState
from hybridnet.daemon.datapath.model import FdbEntry, KernelObject, Route, Rule, Sysctl, VlanLink
from hybridnet.daemon.datapath.plan import Action, Operation, Plan
from hybridnet.daemon.datapath.pod_scope import concerning

NUMBERS = RoutingNumbers()
VX, VLAN = "eth0.vxlan5", "eth0.101"
OVERLAY_ROUTE = Route(4, NUMBERS.overlay_table, "198.19.60.0/24", VX)
FDB = FdbEntry(VX, "00:00:00:00:00:00", "198.18.0.11")
VLAN_LINK = VlanLink("eth0.101", parent="eth0", vlan_id=101)
VLAN_SYSCTL = Sysctl("net/ipv4/conf/eth0.101/proxy_arp", "0", VLAN)
UNDERLAY_ROUTE = Route(4, 10001, "198.18.101.0/24", VLAN)
UNDERLAY_DEFAULT = Route(4, 10001, "0.0.0.0/0", VLAN, gateway="198.18.101.1", onlink=True)
UNDERLAY_RULE = Rule(4, NUMBERS.subnet_priority, 10001, src="198.18.101.0/24")
OVERLAY_TO_UNDERLAY = Route(4, 10002, "198.18.101.0/24", VX)
OVERLAY_RULE = Rule(4, NUMBERS.subnet_priority, 10002, src="198.19.60.0/24")
LOCAL_RULE = Rule(4, NUMBERS.local_pod_priority, NUMBERS.local_pod_table)
FORWARDING = Sysctl("net/ipv4/ip_forward", "1")
EVERYTHING: tuple[KernelObject, ...] = (
    OVERLAY_ROUTE, FDB, VLAN_LINK, VLAN_SYSCTL, UNDERLAY_ROUTE, UNDERLAY_DEFAULT, UNDERLAY_RULE,
    OVERLAY_TO_UNDERLAY, OVERLAY_RULE, LOCAL_RULE, FORWARDING,
)  # fmt: skip
DESIRED = DesiredState(EVERYTHING, (), {"vlan101-v4": 10001, "vx-v4": 10002})


def reported(subnets: set[str], overlay: bool, missing: tuple[KernelObject, ...]) -> set[str]:
    drift = Plan(tuple(Operation(Action.CREATE, obj) for obj in missing))
    return {op.target.describe() for op in concerning(DESIRED, drift, subnets, NUMBERS, overlay)}


def test_an_overlay_pod_relies_on_the_overlay_table_its_own_table_and_the_vxlan_device() -> None:
    found = reported({"vx-v4"}, True, EVERYTHING)
    assert found == {
        o.describe() for o in (OVERLAY_ROUTE, FDB, OVERLAY_TO_UNDERLAY, OVERLAY_RULE, LOCAL_RULE)
    }


def test_an_underlay_pod_relies_on_its_table_and_its_vlan_device() -> None:
    found = reported({"vlan101-v4"}, False, EVERYTHING)
    assert found == {
        o.describe()
        for o in (VLAN_LINK, VLAN_SYSCTL, UNDERLAY_ROUTE, UNDERLAY_DEFAULT, UNDERLAY_RULE,
                  LOCAL_RULE)
    }  # fmt: skip


def test_nothing_pending_is_nothing_reported() -> None:
    assert reported({"vx-v4"}, True, ()) == set()


def test_a_subnet_without_a_table_here_still_gets_the_shared_tables() -> None:
    """E.g. a subnet the node is not part of: only the local-pod rule (and, overlay, the
    overlay table) concern its pod."""
    assert reported({"elsewhere"}, False, EVERYTHING) == {LOCAL_RULE.describe()}
