"""The underlay VLAN sub-interface on a kernel with 802.1Q: created as ``<parent>.<vlan>``,
observed as desired, and healed after someone deletes it.

Runs natively where the kernel has 8021q, otherwise inside user-mode-linux (see
tests/netns/uml.py), where every syscall costs about 30 times more: kept to one test.
"""

from __future__ import annotations

import json

import pytest

from hybridnet import lab as testbed
from hybridnet.daemon.datapath.config import NodeConfig
from hybridnet.daemon.datapath.model import Kind, VlanLink
from hybridnet.daemon.datapath.plan import Action
from hybridnet.daemon.datapath.view import NodeView
from tests.netns.test_datapath import pending, reconcile
from tests.unit.daemon.datapath.builders import subnet, underlay

CONFIG = NodeConfig(underlay_interface="eth0")


@pytest.mark.root
@pytest.mark.requires_8021q
def test_vlan_sub_interface_is_created_observed_and_healed(testbed_run: testbed.TestbedRun) -> None:
    node = testbed.create_namespace(testbed_run.unique("vlan-node"))
    try:
        node.ip("link", "add", "eth0", "type", "veth", "peer", "name", "trunk")
        node.ip("link", "set", "eth0", "up")
        view = NodeView(
            node_name="node1",
            node_labels={"rack": "a"},
            networks=(underlay(vlan=100),),
            subnets=(subnet("u", "underlay", "198.19.8.0/24", gateway="198.19.8.1"),),
        )
        first = reconcile(node, view, CONFIG)
        assert first.failures == ()
        assert first.problems == ()
        assert [o for o in first.desired.objects if isinstance(o, VlanLink)] == [
            VlanLink(name="eth0.100", parent="eth0", vlan_id=100)
        ]
        device = json.loads(node.ip("-j", "-d", "link", "show", "eth0.100").stdout)[0]
        assert device["linkinfo"]["info_kind"] == "vlan"
        assert device["linkinfo"]["info_data"]["id"] == 100
        assert device["link"] == "eth0"
        assert device["ifalias"] == "hybridnet-datapath:vlan"
        table = first.desired.subnet_tables["u"]
        routes = node.ip("route", "show", "table", str(table)).stdout
        assert "default via 198.19.8.1 dev eth0.100 proto 104 onlink" in routes
        assert pending(node, view, CONFIG).empty

        node.ip("link", "del", "eth0.100")  # takes its routes and sysctls along
        healed = reconcile(node, view, CONFIG)
        assert healed.failures == ()
        counts = healed.plan.counts()
        assert counts[(Kind.LINK, Action.CREATE)] == 1
        assert counts[(Kind.ROUTE, Action.CREATE)] == 2
        assert (Kind.RULE, Action.CREATE) not in counts  # rules do not live on a link
        assert (
            "default via 198.19.8.1 dev eth0.100"
            in node.ip("route", "show", "table", str(table)).stdout
        )
        assert pending(node, view, CONFIG).empty
    finally:
        node.delete()
