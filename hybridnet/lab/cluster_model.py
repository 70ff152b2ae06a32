"""What a virtual cluster (:mod:`hybridnet.lab.cluster`) is made of: its settings, its address
plan, its nodes and pods, and the layout a later command reads back."""

from __future__ import annotations

import dataclasses
import ipaddress
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final

from hybridnet.lab.cni_runtime import Attachment, CniRuntime
from hybridnet.lab.errors import TestbedError
from hybridnet.lab.fabric import Node as NodeHost
from hybridnet.lab.netns import Namespace
from hybridnet.lab.processes import Process

UNDERLAY: Final = "underlay"
OVERLAY: Final = "overlay"
"""The networks' names (pods choose them by type: ``network-type: Underlay|Overlay``)."""
LABEL_FABRIC: Final = "hybridnet.lab/fabric"
FABRIC_LABELS: Final = {LABEL_FABRIC: "lab"}
"""What every node carries by default and the underlay network's nodeSelector asks for."""
OVERLAY_VNI: Final = 4
VXLAN_DEVICE: Final = f"eth0.vxlan{OVERLAY_VNI}"
OUTSIDE_V4: Final = "198.18.100.10"
OUTSIDE_V6: Final = "2001:db8:100::10"
OUTSIDE_GATEWAY: Final = ("198.18.100.1/24", "2001:db8:100::1/64")
"""The gateway's addresses on the outside segment."""
POD_NAMESPACE: Final = "default"
"""The Kubernetes namespace of pods unless the caller names another."""


@dataclasses.dataclass(frozen=True)
class ClusterConfig:
    nodes: int = 3
    overlay_nat: bool = True
    """``autoNatOutgoing`` of the overlay's subnets: its pods reach the outside host
    masqueraded as their node (off: with their own address, which the fabric cannot route
    back)."""
    ip_family: str = "DualStack"
    """The ``ip-family`` annotation of pods that do not give one, and the daemons' default."""
    resync_period: float | None = None
    """The daemons' ``--resync-period`` (None: the daemon's default)."""
    daemon_log_level: str = "info"
    ready_timeout: float = 60.0
    """Bound on a daemon's start and on the datapath's convergence; reached only when broken."""


@dataclasses.dataclass(frozen=True)
class SubnetPlan:
    """A Subnet to create: its range, and the reference's ``autoNatOutgoing`` and ``private``."""

    name: str
    network: str
    cidr: str
    gateway: str | None = None
    start: str | None = None
    end: str | None = None
    nat: bool | None = None
    private: bool = False

    @property
    def version(self) -> str:
        return str(ipaddress.ip_network(self.cidr).version)


def default_subnets(config: ClusterConfig) -> tuple[SubnetPlan, ...]:
    """The two networks' subnets: the underlay's on the fabric segment (pods above the nodes),
    the overlay's in ranges only the nodes route."""
    return (
        SubnetPlan("underlay-v4", UNDERLAY, "198.18.0.0/24", "198.18.0.1",
                   "198.18.0.100", "198.18.0.199"),
        SubnetPlan("underlay-v6", UNDERLAY, "2001:db8::/64", "2001:db8::1",
                   "2001:db8::100", "2001:db8::1ff"),
        SubnetPlan("overlay-v4", OVERLAY, "198.19.0.0/24", nat=config.overlay_nat),
        SubnetPlan("overlay-v6", OVERLAY, "2001:db8:1::/64", nat=config.overlay_nat),
    )  # fmt: skip


@dataclasses.dataclass
class ClusterNode:
    """A node: its namespace on the fabric, its Node object's labels, its daemon."""

    name: str
    host: NodeHost
    labels: dict[str, str]
    directory: Path
    runtime: CniRuntime
    daemon: Process | None = None

    @staticmethod
    def socket_in(directory: Path) -> Path:
        return directory / "run" / "daemon.sock"

    @property
    def socket(self) -> Path:
        return self.socket_in(self.directory)

    @property
    def log(self) -> Path:
        return self.directory / "daemon.log"


@dataclasses.dataclass
class ClusterPod:
    """A pod: its Pod object's name and annotations, its namespace, its ADD result's addresses."""

    name: str
    namespace: str
    node: ClusterNode
    netns: Namespace
    annotations: dict[str, str]
    uid: str
    addresses: tuple[str, ...] = ()
    """CIDRs from the CNI ADD result; empty until attached."""

    @property
    def attachment(self) -> Attachment:
        return Attachment(
            container_id=self.netns.name,
            netns=self.netns.path,
            args={
                "IgnoreUnknown": "1",
                "K8S_POD_NAMESPACE": self.namespace,
                "K8S_POD_NAME": self.name,
                "K8S_POD_UID": self.uid,
                "K8S_POD_INFRA_CONTAINER_ID": self.netns.name,
            },
        )

    def address(self, version: int) -> str:
        """The pod's address of IPv``version``, without its prefix length."""
        for cidr in self.addresses:
            interface = ipaddress.ip_interface(cidr)
            if interface.version == version:
                return str(interface.ip)
        raise TestbedError(f"pod {self.name} has no IPv{version} address ({self.addresses})")

    @property
    def ipv4(self) -> str:
        return self.address(4)

    @property
    def ipv6(self) -> str:
        return self.address(6)


@dataclasses.dataclass(frozen=True)
class ClusterLayout:
    """Which namespace is what: all a later command needs to report on or remove a cluster."""

    prefix: str
    store: str
    switch: str
    gateway: str
    outside: str
    nodes: dict[str, str]
    """Node name -> its namespace."""
    pods: list[dict[str, str]]
    """Each pod's ``namespace``, ``name``, ``node`` and ``netns``."""

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ClusterLayout:
        return cls(**{f.name: data[f.name] for f in dataclasses.fields(cls)})
