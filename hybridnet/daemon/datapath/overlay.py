"""The overlay part of the desired state: one VXLAN device, its forwarding and neighbour
entries for every remote node, the overlay table, the overlay subnets' own tables and the
masquerade table (the design is in ``desired``'s docstring)."""

from __future__ import annotations

import dataclasses
import hashlib
import ipaddress

from hybridnet.api import constants
from hybridnet.api.resources import Network
from hybridnet.daemon.datapath import inputs, packetfilter
from hybridnet.daemon.datapath.context import (
    IFNAMSIZ,
    Context,
    addresses_of,
    link_sysctls,
    scope,
)
from hybridnet.daemon.datapath.model import FdbEntry, Neighbour, Route, Rule, VxlanLink
from hybridnet.daemon.datapath.problems import ProblemCode
from hybridnet.daemon.datapath.view import HostLink

FLOOD_MAC = "00:00:00:00:00:00"
MAX_VNI = (1 << 24) - 1
MIN_MTU = 68
VXLAN_OVERHEAD = {4: 50, 6: 70}
UNDERLAY_TYPES = (constants.TYPE_UNDERLAY, constants.TYPE_GLOBAL_BGP)
"""Networks whose pods an overlay pod reaches through the VXLAN device (their node answers
for them there, as for every local pod)."""
"""Outer Ethernet + IP + UDP + VXLAN headers; an IPv6 underlay's header is 20 bytes longer."""


@dataclasses.dataclass(frozen=True)
class Vtep:
    """The local tunnel endpoint, for the daemon to publish in its NodeInfo."""

    link: str
    address: str
    mac: str


def build(ctx: Context, network: Network) -> Vtep | None:
    """Add the overlay's objects to ``ctx``; None (and a problem) when it cannot be built."""
    link = _device(ctx, network)
    if link is None:
        return None
    own = [s for s in ctx.subnets if s.network.name == network.name]
    versions = {s.version for s in own}
    ctx.objects.add(link)
    # Proxy entries only (one per local pod address, below): route-based proxy ARP answers for
    # every address the node routes out of another device, so on the VXLAN segment every
    # node would answer for another node's underlay pod (routed out of its underlay
    # interface), and the asker would send that pod's traffic to whichever answered first.
    for sysctl in link_sysctls(link.name, versions | {4}, proxy_arp="0"):
        ctx.objects.add(sysctl)
    own_addresses = {
        str(ipaddress.ip_interface(a).ip)
        for host_link in ctx.host.links.values()
        for a in host_link.addresses
    }
    family = ipaddress.ip_address(link.local).version
    remotes = inputs.remote_nodes(
        ctx.view, family, (link.local, link.mac), own_addresses, ctx.problems
    )
    _remote_entries(ctx, link.name, remotes, versions)
    _overlay_table(ctx, link, own)
    for subnet in own:
        _subnet_table(ctx, link.name, subnet, remotes)
    for pod in ctx.pods:
        if inputs.version_of(pod.address) in versions:
            ctx.objects.add(Neighbour(link.name, pod.address))  # answered: a proxy entry
    nodes = [*own_addresses, *(a for remote in remotes for a in remote.addresses)]
    _masquerade(ctx, link.name, own, nodes)
    return Vtep(link=link.name, address=link.local, mac=link.mac)


def _masquerade(ctx: Context, vxlan: str, own: list[inputs.SubnetInput], nodes: list[str]) -> None:
    """Every valid node address (this node's own, every remote's) is inside the cluster.
    Without a subnet to masquerade there is no table: its NAT chain alone turns connection
    tracking on for every packet the node forwards."""
    nat = [s.cidr for s in own if s.auto_nat]
    if not nat:
        return
    if not ctx.host.packet_filter:
        names = ", ".join(s.name for s in own if s.auto_nat)
        message = f"nftables is unavailable: {names} cannot be masqueraded"
        ctx.problem(ProblemCode.PACKET_FILTER_UNAVAILABLE, "node/packet-filter", message)
        return
    subnets = [s.cidr for s in ctx.subnets]
    table = packetfilter.masquerade_table(ctx.config.nft_table, vxlan, nat, subnets, nodes)
    ctx.objects.add(table)


def _device(ctx: Context, network: Network) -> VxlanLink | None:
    config = ctx.config
    parent = ctx.parent(config.vtep_interface, "VTEP", network.name)
    if parent is None:
        return None
    vni = network.spec.net_id
    if vni is None or not 0 <= vni <= MAX_VNI:
        message = f"VNI {vni} is not in 0-{MAX_VNI}"
        ctx.problem(ProblemCode.VNI_INVALID, f"network/{network.name}", message)
        return None
    local = _vtep_address(ctx, parent)
    if local is None:
        return None
    mtu = parent.mtu - VXLAN_OVERHEAD[ipaddress.ip_address(local).version]
    if mtu < MIN_MTU:
        message = f"MTU {parent.mtu} leaves {mtu} for the VXLAN device"
        ctx.problem(ProblemCode.MTU_TOO_SMALL, f"link/{parent.name}", message)
        return None
    name = f"{parent.name}.vxlan{vni}"
    if len(name) > IFNAMSIZ:
        name = f"vxlan{vni}"
    taken = ctx.name_taken(name)
    if taken is not None:
        message = f"{name} ({taken.kind or 'device'}) exists and is not hybridnet's; left alone"
        ctx.problem(ProblemCode.LINK_NAME_TAKEN, f"link/{name}", message)
        return None
    return VxlanLink(
        name=name,
        vni=vni,
        local=local,
        parent=parent.name,
        port=config.vxlan_port,
        mtu=mtu,
        mac=parent.mac or _derived_mac(ctx.view.node_name),
    )


def _vtep_address(ctx: Context, parent: HostLink) -> str | None:
    on_parent = addresses_of(parent, 4) + addresses_of(parent, 6)
    wanted = ctx.config.vtep_address
    if wanted is not None:
        wanted = str(ipaddress.ip_address(wanted))
        if wanted in on_parent:
            return wanted
        message = f"VTEP address {wanted} is not an address of {parent.name}"
    elif on_parent:
        return on_parent[0]
    else:
        message = f"{parent.name} has no global address to use as VTEP"
    ctx.problem(ProblemCode.VTEP_ADDRESS_NOT_ON_NODE, f"link/{parent.name}", message)
    return None


def _derived_mac(node_name: str) -> str:
    """A stable, locally administered unicast MAC for a VTEP whose parent has none."""
    digest = hashlib.sha256(node_name.encode()).digest()
    return ":".join(f"{b:02x}" for b in (0x0A, *digest[:5]))


def _remote_entries(
    ctx: Context, vxlan: str, remotes: list[inputs.RemoteNode], versions: set[int]
) -> None:
    """Per remote node: a flood entry and a unicast entry to its VTEP, and a permanent
    neighbour for each of its addresses whose family the overlay carries."""
    for remote in remotes:
        ctx.objects.add(FdbEntry(vxlan, FLOOD_MAC, remote.vtep))
        ctx.objects.add(FdbEntry(vxlan, remote.mac, remote.vtep))
        for address in remote.addresses:
            if inputs.version_of(address) in versions:
                ctx.objects.add(Neighbour(vxlan, address, remote.mac))


def _overlay_table(ctx: Context, link: VxlanLink, own: list[inputs.SubnetInput]) -> None:
    """Every overlay subnet out of the VXLAN device, for every sender; the node's own
    packets leave with its address of that family on the VTEP interface."""
    numbers = ctx.config.numbers
    parent = ctx.host.links[link.parent]
    for version in sorted({s.version for s in own}):
        ctx.objects.add(Rule(version, numbers.overlay_priority, numbers.overlay_table))
        if inputs.version_of(link.local) == version:
            source: str | None = link.local
        else:
            source = next(iter(addresses_of(parent, version)), None)
        for subnet in (s for s in own if s.version == version):
            route = Route(
                version,
                numbers.overlay_table,
                subnet.text,
                link.name,
                prefsrc=source,
                scope=scope(version),
            )
            ctx.objects.add(route)


def _subnet_table(
    ctx: Context, vxlan: str, subnet: inputs.SubnetInput, remotes: list[inputs.RemoteNode]
) -> None:
    """An overlay subnet's own table: every underlay subnet and every remote node address
    out of the VXLAN device (no NAT on the way, a symmetric path back); the rest falls
    through to ``main``."""
    table = ctx.tables.get(subnet.name)
    if table is None:
        return
    version = subnet.version
    link_scope = scope(version)
    for target in ctx.subnets:
        if target.network.spec.type in UNDERLAY_TYPES and target.version == version:
            ctx.objects.add(Route(version, table, target.text, vxlan, scope=link_scope))
    host_length = "/32" if version == 4 else "/128"
    for remote in remotes:
        for address in remote.addresses:
            if inputs.version_of(address) == version:
                ctx.objects.add(
                    Route(version, table, address + host_length, vxlan, scope=link_scope)
                )
    priority = ctx.config.numbers.subnet_priority
    ctx.objects.add(Rule(version, priority, table, src=subnet.text))
