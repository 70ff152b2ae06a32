"""How the reconciler's pending operations read: missing, extra, stale, down, differs."""

from __future__ import annotations

from hybridnet.ctl.diagnose import state_of
from hybridnet.daemon.datapath.model import VlanLink
from hybridnet.daemon.datapath.plan import Action, Operation
from hybridnet.rpc import messages as m


def test_a_link_down_reads_down() -> None:
    wanted = VlanLink(name="eth0.10", parent="eth0", vlan_id=10, up=True)
    current = VlanLink(name="eth0.10", parent="eth0", vlan_id=10, up=False)
    operation = Operation(Action.UPDATE, wanted, current)
    assert operation.changes() == "up False (wanted True)"
    difference = m.DatapathDifference("link", "update", wanted.describe(), operation.changes())
    assert state_of(difference) == "down"
    assert state_of(m.DatapathDifference("route", "update", "r", "mtu 1 (wanted 2)")) == "differs"


def test_creates_and_deletes() -> None:
    assert state_of(m.DatapathDifference("route", "create", "route x")) == "missing"
    assert state_of(m.DatapathDifference("rule", "delete", "rule x")) == "extra"
    assert state_of(m.DatapathDifference("fdb", "delete", "fdb x")) == "stale"
    assert state_of(m.DatapathDifference("neighbour", "delete", "neighbour x")) == "stale"
