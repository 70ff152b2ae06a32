"""The underlay part of the desired state: VLAN sub-interfaces (or the parent itself), the
subnets' tables towards their gateways, and a proxy ARP / NDP entry per local pod on its own
subnet's link only (the design is in ``desired``'s docstring).

BGP mode (``bgp_gateway``): a subnet's pods leave by the underlay interface through the
network's first BGP peer of their family that routes traffic (not ``doesNotRouteTraffic``),
as in the reference; without one, through the subnet's own gateway if it names one; without
either, the subnet's table holds no default route and their traffic follows the node's own
routes (``main``). No proxy entries: the fabric reaches a BGP pod through the route the
manager announces, via the node's own address. A GlobalBGP network's subnets get the same
tables on every node a BGP network attaches, through that network's peers."""

from __future__ import annotations

import ipaddress

from hybridnet.api import constants
from hybridnet.api.resources import Network
from hybridnet.daemon.datapath import inputs
from hybridnet.daemon.datapath.context import IFNAMSIZ, Context, default_route, link_sysctls, scope
from hybridnet.daemon.datapath.model import Neighbour, Route, Rule, VlanLink
from hybridnet.daemon.datapath.problems import ProblemCode
from hybridnet.daemon.datapath.view import HostLink

MAX_VLAN_ID = 4094


def build(ctx: Context, network: Network) -> None:
    """Add the underlay network's objects for every subnet of it that can be built."""
    parent = ctx.parent(ctx.config.underlay_interface, "underlay", network.name)
    if parent is None:
        return
    vlan_mode = (network.spec.mode or constants.MODE_VLAN) == constants.MODE_VLAN
    served: dict[str, set[int]] = {}
    for subnet in (s for s in ctx.subnets if s.network.name == network.name):
        table = ctx.tables.get(subnet.name)
        if table is None:
            continue
        link = _vlan_link(ctx, parent, network, subnet) if vlan_mode else parent.name
        if link is None:
            continue
        served.setdefault(link, set()).add(subnet.version)
        if vlan_mode:
            _vlan_table(ctx, subnet, table, link)
        else:
            _bgp_table(ctx, subnet, table, link, network)
        if vlan_mode:
            for pod in ctx.pods:
                if pod.subnet == subnet.name:
                    ctx.objects.add(Neighbour(link, pod.address))
    if vlan_mode:
        for link, versions in served.items():
            # Proxy entries, not proxy_arp: proxy_arp would answer on this VLAN for every
            # address the node routes elsewhere, the pods of other VLANs included. Off on our
            # own sub-interfaces; the untagged parent is the site's, its setting left alone.
            proxy_arp = None if link == parent.name else "0"
            for sysctl in link_sysctls(link, versions, proxy_arp):
                ctx.objects.add(sysctl)


def build_global_bgp(ctx: Context, network: Network, speaking: Network) -> None:
    """A GlobalBGP network's subnets on a node that ``speaking`` (its BGP network) attaches:
    the same tables as that network's own subnets."""
    parent = ctx.parent(ctx.config.underlay_interface, "underlay", network.name)
    if parent is None:
        return
    for subnet in (s for s in ctx.subnets if s.network.name == network.name):
        table = ctx.tables.get(subnet.name)
        if table is not None:
            _bgp_table(ctx, subnet, table, parent.name, speaking)


def bgp_gateway(network: Network, subnet: inputs.SubnetInput) -> str | None:
    """Where a BGP subnet's pods send what leaves the node (see the module docstring)."""
    for peer in network.spec.config.bgp_peers if network.spec.config else []:
        try:
            address = ipaddress.ip_address(peer.address)
        except ValueError:
            continue
        if address.version == subnet.version and not peer.does_not_route_traffic:
            return str(address)
    return subnet.gateway


def _bgp_table(
    ctx: Context, subnet: inputs.SubnetInput, table: int, link: str, speaking: Network
) -> None:
    """Default via the BGP gateway (a router the interface reaches: not onlink), or none."""
    version = subnet.version
    gateway = bgp_gateway(speaking, subnet)
    if gateway is not None:
        ctx.objects.add(Route(version, table, default_route(version), link, gateway=gateway))
    ctx.objects.add(Rule(version, ctx.config.numbers.subnet_priority, table, src=subnet.text))


def _vlan_table(ctx: Context, subnet: inputs.SubnetInput, table: int, link: str) -> None:
    """VLAN: the subnet on-link and a default route to its gateway, onlink."""
    version = subnet.version
    ctx.objects.add(Route(version, table, subnet.text, link, scope=scope(version)))
    if subnet.gateway is None:
        message = "no gateway: its pods reach only their own subnet"
        ctx.problem(ProblemCode.SUBNET_WITHOUT_GATEWAY, f"subnet/{subnet.name}", message)
    else:
        gateway = subnet.gateway
        default = Route(version, table, default_route(version), link, gateway=gateway, onlink=True)
        ctx.objects.add(default)
    ctx.objects.add(Rule(version, ctx.config.numbers.subnet_priority, table, src=subnet.text))


def vlan_link_name(parent: str, vlan: int) -> str:
    """The VLAN sub-interface's name: ``<parent>.<vlan>``, ``vlan<vlan>`` when too long."""
    name = f"{parent}.{vlan}"
    return name if len(name) <= IFNAMSIZ else f"vlan{vlan}"


def _vlan_link(
    ctx: Context, parent: HostLink, network: Network, subnet: inputs.SubnetInput
) -> str | None:
    """The link a VLAN subnet's pods leave by (netID of the subnet, else of the network;
    0 is the parent untagged). Its sub-interface joins the desired objects unless the site
    already has exactly that one; None (and a problem) when the subnet cannot be served."""
    vlan = subnet.net_id if subnet.net_id is not None else (network.spec.net_id or 0)
    if vlan == 0:
        return parent.name
    if not 1 <= vlan <= MAX_VLAN_ID:
        message = f"VLAN id {vlan} is not in 0-{MAX_VLAN_ID}"
        ctx.problem(ProblemCode.VLAN_ID_INVALID, f"subnet/{subnet.name}", message)
        return None
    name = vlan_link_name(parent.name, vlan)
    taken = ctx.name_taken(name)
    if taken is None:
        ctx.objects.add(VlanLink(name=name, parent=parent.name, vlan_id=vlan))
        return name
    if taken.kind == "vlan" and taken.parent == parent.name and taken.vlan_id == vlan:
        return name  # the site's own sub-interface, exactly the one needed: used, not owned
    message = (
        f"{name} ({taken.kind or 'device'}) exists, is not hybridnet's and is not VLAN {vlan} "
        f"on {parent.name}; subnet {subnet.name} left out"
    )
    ctx.problem(ProblemCode.LINK_NAME_TAKEN, f"link/{name}", message)
    return None
