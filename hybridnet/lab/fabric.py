"""The lab's topology: a switch, a gateway router, node namespaces on it, and pod namespaces.

Addresses come from TEST-NET 198.18.0.0/15 and the documentation IPv6 prefix, never from the
host's own ranges; :class:`Fabric` draws the layout.
"""

from __future__ import annotations

import dataclasses
import ipaddress

from hybridnet.lab.errors import TestbedError
from hybridnet.lab.netns import Namespace, TestbedRun, connect, create_namespace, ip

# Address plan of the fabric segment that node namespaces share.
FABRIC_V4 = ipaddress.ip_network("198.18.0.0/24")
FABRIC_V6 = ipaddress.ip_network("2001:db8::/64")
GATEWAY_HOST_INDEX = 1
FIRST_NODE_HOST_INDEX = 10


@dataclasses.dataclass(frozen=True)
class NodeAddresses:
    ipv4: ipaddress.IPv4Interface
    ipv6: ipaddress.IPv6Interface


def _host(network: ipaddress.IPv4Network | ipaddress.IPv6Network, index: int) -> str:
    return f"{network.network_address + index}/{network.prefixlen}"


@dataclasses.dataclass
class Node(Namespace):
    """A node namespace: ``eth0`` on the fabric, default routes through the gateway."""

    addresses_on_fabric: NodeAddresses | None = None

    @property
    def ipv4(self) -> str:
        return str(self._on_fabric().ipv4.ip)

    @property
    def ipv6(self) -> str:
        return str(self._on_fabric().ipv6.ip)

    def _on_fabric(self) -> NodeAddresses:
        if self.addresses_on_fabric is None:
            raise TestbedError(f"node {self.name} is not attached to the fabric yet")
        return self.addresses_on_fabric


class Fabric:
    """A switch (bridge ``br0`` in the fabric namespace), a gateway router, nodes and pods.

    Layout, all addresses from the test ranges::

        gateway ns  eth0 198.18.0.1/24, 2001:db8::1/64 (forwarding on)
              |
        fabric ns   br0 (the L2 switch), one port per attached namespace
              |
        node i ns   eth0 198.18.0.(10+i)/24, 2001:db8::(10+i)/64, default via the gateway
    """

    def __init__(self, run: TestbedRun):
        self.run = run
        self.namespaces: list[Namespace] = []
        self.nodes: list[Node] = []
        self._ports = 0
        try:
            self.switch = self._own(create_namespace(run.unique("fabric")))
            self.switch.ip("link", "add", "br0", "type", "bridge")
            self.switch.ip("link", "set", "br0", "up")
            self.gateway = self._own(create_namespace(run.unique("gw")))
            self.attach(self.gateway, "eth0")
            self._assign(self.gateway, "eth0", GATEWAY_HOST_INDEX)
            self.gateway.sysctl("net.ipv4.ip_forward", "1")
            self.gateway.sysctl("net.ipv6.conf.all.forwarding", "1")
        except BaseException:
            self.teardown()
            raise

    @property
    def gateway_ipv4(self) -> str:
        return str(FABRIC_V4.network_address + GATEWAY_HOST_INDEX)

    @property
    def gateway_ipv6(self) -> str:
        return str(FABRIC_V6.network_address + GATEWAY_HOST_INDEX)

    def _own(self, namespace: Namespace) -> Namespace:
        self.namespaces.append(namespace)
        return namespace

    def attach(self, namespace: Namespace, ifname: str) -> None:
        """Plug ``ifname`` of ``namespace`` into a new port of the fabric switch."""
        self._ports += 1
        port = f"port{self._ports}"
        connect(namespace, ifname, self.switch, port)
        self.switch.ip("link", "set", port, "master", "br0")

    def _assign(self, namespace: Namespace, ifname: str, host_index: int) -> NodeAddresses:
        v4, v6 = _host(FABRIC_V4, host_index), _host(FABRIC_V6, host_index)
        namespace.ip("addr", "add", v4, "dev", ifname)
        # nodad: the address is usable at once instead of after duplicate address detection.
        namespace.ip("-6", "addr", "add", v6, "dev", ifname, "nodad")
        return NodeAddresses(ipaddress.IPv4Interface(v4), ipaddress.IPv6Interface(v6))

    def add_node(self) -> Node:
        """Add a node namespace with ``eth0`` on the fabric and default routes via the gateway."""
        index = len(self.nodes) + 1
        node = Node(self.run.name(f"node{index}"))
        ip("netns", "add", node.name)
        self._own(node)
        node.ip("link", "set", "lo", "up")
        self.attach(node, "eth0")
        node.addresses_on_fabric = self._assign(node, "eth0", FIRST_NODE_HOST_INDEX + index - 1)
        node.ip("route", "add", "default", "via", self.gateway_ipv4)
        node.ip("-6", "route", "add", "default", "via", self.gateway_ipv6)
        self.nodes.append(node)
        return node

    def add_pod(self, role: str = "pod") -> Namespace:
        """An empty pod namespace (only ``lo``), for a CNI plugin to attach."""
        return self._own(create_namespace(self.run.unique(role)))

    def teardown(self) -> None:
        """Delete everything the fabric made, in reverse order; safe to call twice."""
        while self.namespaces:
            self.namespaces.pop().delete()
