"""802.1Q on the real kernel: VLAN sub-interfaces connect equal tags and isolate different ones.

Runs natively where the kernel has 8021q, otherwise inside user-mode-linux (tests/netns/uml.py).
"""

from __future__ import annotations

import pytest

from hybridnet import lab as testbed


@pytest.mark.requires_8021q
def test_vlan_100_carries_traffic_and_vlan_200_is_isolated(
    testbed_run: testbed.TestbedRun,
) -> None:
    left = testbed.create_namespace(testbed_run.unique("vlan-left"))
    right = testbed.create_namespace(testbed_run.unique("vlan-right"))
    try:
        testbed.connect(left, "trunk", right, "trunk")
        for namespace, address in ((left, "198.18.100.1/24"), (right, "198.18.100.2/24")):
            namespace.ip(
                "link", "add", "link", "trunk", "name", "trunk.100", "type", "vlan", "id", "100"
            )
            namespace.ip("addr", "add", address, "dev", "trunk.100")
            namespace.ip("link", "set", "trunk.100", "up")
        assert "vlan" in left.ip("-d", "link", "show", "trunk.100").stdout
        assert testbed.ping(left, "198.18.100.2")

        # Same addresses, but the right end now tags with 200: the frames no longer meet.
        right.ip("link", "del", "trunk.100")
        right.ip("link", "add", "link", "trunk", "name", "trunk.200", "type", "vlan", "id", "200")
        right.ip("addr", "add", "198.18.100.2/24", "dev", "trunk.200")
        right.ip("link", "set", "trunk.200", "up")
        left.ip("neigh", "flush", "dev", "trunk.100")
        assert not testbed.ping(left, "198.18.100.2", count=2)
    finally:
        left.delete()
        right.delete()
