"""The underlay part of the desired state: VLAN sub-interfaces (or the parent itself), the
subnets' tables towards their gateways, and a proxy ARP / NDP entry per local pod on its own
subnet's link only (the design is in ``desired``'s docstring)."""

from __future__ import annotations

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
        _subnet_table(ctx, subnet, table, link, onlink=vlan_mode)
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


def _subnet_table(
    ctx: Context, subnet: inputs.SubnetInput, table: int, link: str, *, onlink: bool
) -> None:
    """VLAN: the subnet on-link and a default route to its gateway, onlink. BGP: only the
    default route (the gateway is a router the interface reaches)."""
    version = subnet.version
    if onlink:
        ctx.objects.add(Route(version, table, subnet.text, link, scope=scope(version)))
    if subnet.gateway is None:
        message = "no gateway: its pods reach only their own subnet"
        ctx.problem(ProblemCode.SUBNET_WITHOUT_GATEWAY, f"subnet/{subnet.name}", message)
    else:
        default = Route(
            version, table, default_route(version), link, gateway=subnet.gateway, onlink=onlink
        )
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
