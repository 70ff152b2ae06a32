"""The address check of an underlay ADD (hybridnet.daemon.addrprobe): before the pod is built,
ask the segment whether anyone holds its addresses (and whether the gateway is there), IPv4
and IPv6 at once; once it is attached, announce them.

The check runs on the link the pod's traffic leaves by, the one the node answers ARP/NDP for
its pods on: the VLAN sub-interface of the subnet (the parent itself for VLAN 0). BGP and
GlobalBGP pods are not probed: their addresses are not on the segment (the fabric reaches them
by the routes the manager announces, via the node's own address), and they leave through a
BGP peer, not necessarily through their subnet's gateway, which may be no host at all.
addrprobe is imported only when an underlay ADD needs it: its frame codec (scapy) takes a
noticeable time to import, which nothing else should pay.
"""

from __future__ import annotations

import dataclasses
import ipaddress
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor

from hybridnet.api import constants
from hybridnet.api.resources import IPInstance, Network, Subnet
from hybridnet.daemon.datapath.underlay import vlan_link_name

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class InterfaceNotReady(Exception):
    """The link to probe on does not exist (yet): the datapath has not built it."""


class CheckFailed(Exception):
    """The segment refused the address, or the check could not run; ``in_use`` tells which:
    another host holds the address (addrprobe.AddressInUse), or anything else (the gateway
    did not answer, the check could not run), which may pass."""

    def __init__(self, message: str, *, in_use: bool):
        super().__init__(message)
        self.in_use = in_use


@dataclasses.dataclass(frozen=True)
class Target:
    ifname: str
    address: IPAddress
    gateway: IPAddress | None


def targets(
    instances: Sequence[IPInstance],
    networks: Mapping[str, Network],
    subnets: Mapping[str, Subnet],
    underlay_interface: str | None,
) -> list[Target]:
    """What to probe for the pod's underlay addresses: none for overlay pods, nor when the
    node has no underlay interface configured."""
    found = []
    for instance in instances:
        network = networks.get(instance.spec.network)
        if network is None or network.spec.type != constants.TYPE_UNDERLAY:
            continue
        if network.spec.mode == constants.MODE_BGP:
            continue
        if underlay_interface is None:
            # Nothing to probe on: the datapath reports InterfaceNotConfigured (NodeInfo,
            # Events, CHECK) and the pod is attached as before the datapath existed.
            continue
        subnet = subnets.get(instance.spec.subnet)
        ifname = underlay_interface
        vlan = subnet.spec.net_id if subnet and subnet.spec.net_id is not None else None
        vlan = vlan if vlan is not None else (network.spec.net_id or 0)
        if vlan:
            ifname = vlan_link_name(underlay_interface, vlan)
        gateway = subnet.spec.range.gateway if subnet is not None else None
        address = ipaddress.ip_interface(instance.spec.address.ip).ip
        found.append(Target(ifname, address, ipaddress.ip_address(gateway) if gateway else None))
    return found


def probe_all(checks: Sequence[Target]) -> None:
    """Probe every target at once; CheckFailed for the first that failed, once all finished."""
    if not checks:
        return
    from hybridnet.daemon import addrprobe  # noqa: PLC0415 - scapy: on first underlay ADD

    with ThreadPoolExecutor(max_workers=len(checks), thread_name_prefix="addrprobe") as pool:
        futures = [pool.submit(addrprobe.probe, t.ifname, t.address, t.gateway) for t in checks]
        errors = [f.exception() for f in futures]
    for error in errors:
        if isinstance(error, addrprobe.AddressCheckError):
            in_use = isinstance(error, addrprobe.AddressInUse)
            raise CheckFailed(str(error), in_use=in_use) from error
        if error is not None:
            raise error


def announce_all(checks: Sequence[Target]) -> None:
    if not checks:
        return
    from hybridnet.daemon import addrprobe  # noqa: PLC0415 - scapy: on first underlay ADD

    for target in checks:
        addrprobe.announce(target.ifname, target.address)
