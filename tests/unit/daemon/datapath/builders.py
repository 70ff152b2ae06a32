"""Small constructors for the datapath's inputs: resources as the informers deliver them,
and host facts as observe reports them."""

from __future__ import annotations

from hybridnet.api.meta import ObjectMeta
from hybridnet.api.resources import (
    Address,
    AddressRange,
    Binding,
    IPInstance,
    IPInstanceSpec,
    Network,
    NetworkSpec,
    NodeInfo,
    NodeInfoSpec,
    Subnet,
    SubnetConfig,
    SubnetSpec,
    VTEPInfo,
)
from hybridnet.daemon.datapath.config import NodeConfig
from hybridnet.daemon.datapath.model import LINK_ALIAS_PREFIX
from hybridnet.daemon.datapath.view import HostFacts, HostLink, NodeView

NODE = "node1"
ETH0_MAC = "52:54:00:00:00:0a"
CONFIG = NodeConfig(underlay_interface="eth0", vtep_interface="eth0")


def meta(name: str, created: str | None = None, namespace: str | None = None) -> ObjectMeta:
    return ObjectMeta(name=name, namespace=namespace, creation_timestamp=created)


def overlay(name: str = "overlay", vni: int | None = 4, created: str | None = None) -> Network:
    return Network(meta(name, created), NetworkSpec(type="Overlay", mode="VXLAN", net_id=vni))


def underlay(
    name: str = "underlay",
    vlan: int | None = 0,
    mode: str = "VLAN",
    selector: dict[str, str] | None = None,
    created: str | None = None,
) -> Network:
    spec = NetworkSpec(
        type="Underlay", mode=mode, net_id=vlan, node_selector=selector or {"rack": "a"}
    )
    return Network(meta(name, created), spec)


def subnet(
    name: str,
    network: str,
    cidr: str,
    *,
    gateway: str | None = None,
    nat: bool = False,
    vlan: int | None = None,
    created: str | None = None,
    version: str | None = None,
) -> Subnet:
    version = version or ("6" if ":" in cidr else "4")
    spec = SubnetSpec(
        network=network,
        range=AddressRange(version=version, cidr=cidr, gateway=gateway),
        net_id=vlan,
        config=SubnetConfig(auto_nat_outgoing=nat),
    )
    return Subnet(meta(name, created), spec)


def node_info(name: str, ip: str | None, mac: str | None, *local_ips: str) -> NodeInfo:
    return NodeInfo(meta(name), NodeInfoSpec(VTEPInfo(ip=ip, mac=mac, local_ips=list(local_ips))))


def pod_ip(name: str, subnet_name: str, cidr: str, network: str = "overlay") -> IPInstance:
    version = "6" if ":" in cidr else "4"
    spec = IPInstanceSpec(
        network=network,
        subnet=subnet_name,
        address=Address(version=version, ip=cidr, mac="02:00:00:00:00:99"),
        binding=Binding(node_name=NODE, pod_name=name),
    )
    return IPInstance(meta(name, namespace="default"), spec)


def link(
    name: str,
    *addresses: str,
    mtu: int = 1500,
    mac: str | None = ETH0_MAC,
    kind: str | None = None,
    alias: str | None = None,
    parent: str | None = None,
    vlan_id: int | None = None,
    index: int = 2,
) -> HostLink:
    return HostLink(
        name=name,
        index=index,
        kind=kind,
        mtu=mtu,
        mac=mac,
        up=True,
        alias=alias,
        addresses=addresses,
        parent=parent,
        vlan_id=vlan_id,
    )


def ours(kind: str) -> str:
    return LINK_ALIAS_PREFIX + kind


def host(*links: HostLink, ipv6: bool = True) -> HostFacts:
    return HostFacts(links={lk.name: lk for lk in links}, ipv6=ipv6)


DEFAULT_HOST = host(link("eth0", "198.18.0.10/24", "2001:db8::a/64"))


def view(**kwargs: object) -> NodeView:
    kwargs.setdefault("node_labels", {"rack": "a"})
    return NodeView(node_name=NODE, **kwargs)  # type: ignore[arg-type]
