"""The pod networks a real cluster can be given: what each node's /etc/cni/net.d holds.

:class:`ReferenceBridge` is the reference plugins' chain (``bridge`` + ``host-local``, Debian's
containernetworking-plugins). It is a **stand-in**: until hybridnet's Helm chart is installed by
the tier (issue 14's later step), it is what lets containerd report its network ready and the
real kubelet run pods, and it stays afterwards as the benchmark's baseline. Each node gets its
own /24 from 198.19.128.0/17 (TEST-NET), a ``cni0`` bridge with the first address as the pods'
gateway, and no masquerade (no packet filter rules, not even in the node's namespace). Pods on
different nodes are not routed to each other: the stand-in is for scheduling, sandboxes and the
CNI calls, not for traffic between nodes.

A setup (:class:`CniSetup`) is an object with a ``name``, a per-node ``install`` (before the
node's kubelet starts), a cluster-wide ``after_nodes`` (once every Node is registered: where a
chart's ``helm install`` goes, its DaemonSet then writing the node configs) and
``held_addresses``, so the benchmark takes the CNI setup as a parameter (hybridnet's chart,
when installable, is the second).
"""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from hybridnet.lab.realnode import RealNode

if TYPE_CHECKING:
    from hack.realcluster.cluster import RealCluster

REFERENCE_POD_RANGE = ipaddress.IPv4Network("198.19.128.0/17")
REFERENCE_NETWORK_NAME = "lab-bridge"
REFERENCE_CONF_FILE = "10-lab-bridge.conflist"


class CniSetup(Protocol):
    """How pods on a node get their network: installed on every node before it is Ready."""

    name: str

    def install(self, node: RealNode, index: int) -> None:
        """Prepare ``node`` (0-based ``index``) before its kubelet starts."""
        ...

    def after_nodes(self, cluster: RealCluster) -> None:
        """Once every node is registered, before the cluster waits for them to be Ready."""
        ...

    def held_addresses(self, node: RealNode) -> dict[str, str]:
        """The addresses the setup's IPAM holds on ``node`` now, each with what holds it."""
        ...


class ReferenceBridge:
    """``bridge`` + ``host-local`` on every node, a /24 each; see the module docstring."""

    name = "bridge+host-local"

    def subnet(self, index: int) -> ipaddress.IPv4Network:
        """Node ``index``'s (0-based) pod subnet."""
        first = int(REFERENCE_POD_RANGE.network_address) + index * 256
        subnet = ipaddress.IPv4Network((first, 24))
        if not subnet.subnet_of(REFERENCE_POD_RANGE):
            raise ValueError(f"node index {index} is beyond {REFERENCE_POD_RANGE}")
        return subnet

    def install(self, node: RealNode, index: int) -> None:
        subnet = self.subnet(index)
        node.write_cni_config(
            REFERENCE_CONF_FILE,
            {
                "cniVersion": "1.0.0",
                "name": REFERENCE_NETWORK_NAME,
                "plugins": [
                    {
                        "type": "bridge",
                        "bridge": "cni0",
                        "isGateway": True,
                        "ipMasq": False,
                        "hairpinMode": True,
                        "ipam": {
                            "type": "host-local",
                            "ranges": [[{"subnet": str(subnet)}]],
                            "routes": [{"dst": "0.0.0.0/0"}],
                        },
                    },
                ],
            },
        )

    def after_nodes(self, cluster: RealCluster) -> None:
        """Nothing cluster-wide: each node's file is its whole configuration."""

    def held_addresses(self, node: RealNode) -> dict[str, str]:
        """host-local's reservations on ``node``: address -> the container ID it is held for.

        host-local writes one file per address at ADD and removes it at DEL, so a reservation
        that disappears is a DEL that reached the plugin.
        """
        directory: Path = node.host_path(f"/var/lib/cni/networks/{REFERENCE_NETWORK_NAME}")
        if not directory.is_dir():
            return {}
        found = {}
        for entry in directory.iterdir():
            try:
                ipaddress.ip_address(entry.name)
            except ValueError:
                continue  # last_reserved_ip.0, lock
            held = entry.read_text().split()
            found[entry.name] = held[0] if held else ""
        return found
