"""What the node's kernel should hold, computed from the cluster and host facts. Pure.

Routing design
==============

Rules, in the order the kernel consults them (numbers: ``config.RoutingNumbers``)::

    19999  from all lookup 39999          local pods: /32, /128 via their veth (attachment.py)
    20000  from all lookup 40000          overlay destinations: each overlay subnet dev VXLAN
    20001  from <subnet> lookup <table>   one table per subnet of the node, chosen by source
    32766  from all lookup main           the node's own routes

* **Node → local pod, pod → pod on one node**: the local-pod table comes first; its routes
  are the attachments' (the datapath owns the rule, never those routes).
* **Overlay across nodes**: the overlay table routes every overlay subnet, scope link, out of
  the one VXLAN device, whoever sends (a pod of any network, or the node, which uses its VTEP
  address as source). The VXLAN segment is one L2 domain: ARP/NDP for a remote pod is flooded
  to every remote VTEP (one all-zeros FDB entry per remote node) and answered only by the
  node the pod lives on, from a proxy ARP / NDP entry per local pod address on the VXLAN
  device. Route-based proxy ARP is off there (``proxy_arp`` 0): it answers for every address
  a node routes out of another device, so every node would answer for another node's
  underlay pod, which it routes out of its underlay interface. Frames to
  that node's VXLAN MAC go to its VTEP (one unicast FDB entry per remote node). Learning is
  off: the FDB holds exactly what NodeInfos say.
* **Overlay ↔ underlay, no NAT**: an overlay subnet's table routes every underlay subnet of
  the cluster out of the VXLAN device, so an overlay pod reaches an underlay pod through the
  overlay (the underlay pod's node answers ARP for it, as for any local pod); the reply, from
  anywhere, meets the overlay table first. Both directions keep the pods' addresses.
* **Overlay pod ↔ any node, no NAT**: an overlay subnet's table also routes each remote
  node's addresses (VTEP and NodeInfo local IPs) out of the VXLAN device, with a permanent
  neighbour entry to that node's VXLAN MAC. The node's reply to the pod follows the overlay
  table back: the path is symmetric, so strict reverse-path filtering holds. Only pod-sourced
  traffic sees these routes: the tunnel's own packets to a VTEP use ``main``.
* **Underlay VLAN pods** leave by their subnet's table: the subnet on-link out of the VLAN
  sub-interface ``<parent>.<vlan>`` (netID from the Subnet, else the Network; 0 = the parent
  untagged), and a default route to the subnet's gateway, onlink. The fabric's gateway
  reaches a local pod by ARP / NDP on that interface, answered from a proxy entry per local
  pod address on its own subnet's link (not ``proxy_arp``, which would answer on one VLAN for
  the pods of every other: the node would join VLANs at layer 2). A pod of the same subnet on
  another node is reached on-link, its node answering the same way.
* **Underlay BGP pods** leave by their subnet's table: default via the network's first
  BGP peer of their family that routes traffic (else the subnet's gateway, else no default:
  the node's own routes) on the underlay interface, not onlink; the fabric learns the pods'
  /32s (/128s) from the manager's BGP announcements, with the node's address as next hop,
  so nothing answers ARP / NDP for them on the fabric. A GlobalBGP network's subnets get the
  same tables on nodes that a BGP network attaches, through that network's peers.
* **Leaving the cluster**: an overlay subnet with ``autoNatOutgoing`` is masqueraded by the
  nftables table (``packetfilter``): only towards addresses outside every subnet and every
  node, and never into the VXLAN device.

A subnet's table number is stable: it is derived from the subnet's name (CRC-32 into the
configured range), colliding names probing onwards in the order the subnets were created,
so a new subnet never moves an older one's table.

Sysctls: ``ip_forward`` (and IPv6 ``forwarding`` when the node has IPv6 subnets);
on the VXLAN device and our VLAN sub-interfaces ``proxy_arp`` 0 (answers come from the
proxy entries alone; the untagged parent's is the site's), ``proxy_delay`` 0 (answers
at once instead of after up to 0.8 s), ``rp_filter`` 0 (the per-device half of the filter:
the effective value is the maximum with ``conf.all``) and, for IPv6, ``proxy_ndp``. With
netID 0 the underlay interface is the site's own parent: these are set on it, and kept
when the network goes (sysctls are never reverted).

Known limits: addresses of an underlay subnet that are not pods (its gateway, hosts outside
the cluster) are not reachable from overlay pods through the overlay, nor masqueraded; a
freshly created VXLAN device resolves IPv6 neighbours only once its link-local address has
passed duplicate address detection (about a second); a link created but not yet marked when
the daemon dies is seen as foreign (LinkNameTaken) and needs deleting by hand; pods of two
VLANs on ONE node reach each other through the local-pod table, not through the gateway (as
in the reference: that rule is ``from all``), so VLAN isolation between pods of one node is
left to NetworkPolicy; across nodes, VLANs meet only at the gateway.

Problems (bad input, host facts that do not fit) leave out only the objects that depend on
them, and are returned beside the objects.
"""

from __future__ import annotations

import dataclasses

from hybridnet.api import constants
from hybridnet.daemon.datapath import context, inputs, overlay, policy_table, underlay
from hybridnet.daemon.datapath.config import NodeConfig
from hybridnet.daemon.datapath.model import KernelObject, Rule, Sysctl
from hybridnet.daemon.datapath.overlay import Vtep
from hybridnet.daemon.datapath.problems import Problem, ProblemCode
from hybridnet.daemon.datapath.view import HostFacts, NodeView


@dataclasses.dataclass(frozen=True)
class DesiredState:
    objects: tuple[KernelObject, ...]
    problems: tuple[Problem, ...]
    subnet_tables: dict[str, int]
    """Subnet name -> its routing table (for diagnosis)."""
    vtep: Vtep | None = None
    policy: policy_table.PolicyDesired | None = None
    """The NetworkPolicy table and what of the policies cannot be enforced; None when the
    view has no policy inputs (yet) or they could not be compiled: the table is then left as
    the kernel holds it."""


def desired_state(view: NodeView, config: NodeConfig, host: HostFacts) -> DesiredState:
    problems: list[Problem] = []
    subnets = inputs.subnets(view, problems)
    if not host.ipv6:
        for subnet in (s for s in subnets if s.version == 6):
            message = "the kernel has no IPv6"
            problems.append(Problem(ProblemCode.IPV6_UNAVAILABLE, f"subnet/{subnet.name}", message))
        subnets = [s for s in subnets if s.version == 4]
    labels = dict(view.node_labels)
    underlay_network = inputs.pick_oldest(
        (
            n
            for n in view.networks
            if n.spec.type == constants.TYPE_UNDERLAY and inputs.selects(n, labels)
        ),
        ProblemCode.UNDERLAY_CONFLICT,
        "several underlay networks select this node",
        problems,
    )
    overlay_network = inputs.pick_oldest(
        (n for n in view.networks if n.spec.type == constants.TYPE_OVERLAY),
        ProblemCode.OVERLAY_CONFLICT,
        "several overlay networks exist",
        problems,
    )
    global_network = None
    if underlay_network is not None and underlay_network.spec.mode == constants.MODE_BGP:
        global_network = inputs.pick_oldest(
            (n for n in view.networks if n.spec.type == constants.TYPE_GLOBAL_BGP),
            ProblemCode.GLOBAL_BGP_CONFLICT,
            "several GlobalBGP networks exist",
            problems,
        )
    chosen = {n.name for n in (underlay_network, overlay_network, global_network) if n is not None}
    own = [s for s in subnets if s.network.name in chosen]
    ctx = context.Context(
        view=view,
        config=config,
        host=host,
        subnets=subnets,
        tables=inputs.assign_tables(own, config.numbers, problems),
        pods=inputs.pod_addresses(view.local_ips),
        objects=context.Collector(problems),
        problems=problems,
    )
    numbers = config.numbers
    ctx.objects.add(Sysctl("net/ipv4/ip_forward", "1"))
    if any(s.version == 6 for s in own):
        ctx.objects.add(Sysctl("net/ipv6/conf/all/forwarding", "1"))
    for family in (4, 6) if host.ipv6 else (4,):
        ctx.objects.add(Rule(family, numbers.local_pod_priority, numbers.local_pod_table))
    vtep = None
    if overlay_network is not None:
        vtep = overlay.build(ctx, overlay_network)
    if underlay_network is not None:
        underlay.build(ctx, underlay_network)
        if global_network is not None:
            underlay.build_global_bgp(ctx, global_network, underlay_network)
    policy = _policy(view, config, host, problems)
    if policy is not None:
        ctx.objects.add(policy.table)
    return DesiredState(ctx.objects.all(), tuple(problems), ctx.tables, vtep, policy)


def _policy(
    view: NodeView, config: NodeConfig, host: HostFacts, problems: list[Problem]
) -> policy_table.PolicyDesired | None:
    if view.policy is None:
        return None
    if not host.packet_filter:
        if view.policy.policies:
            message = "no nftables on this node: NetworkPolicies are not enforced"
            problems.append(
                Problem(ProblemCode.PACKET_FILTER_UNAVAILABLE, "networkpolicies", message)
            )
        return None
    try:
        return policy_table.desired(view.policy, host, config.policy_table)
    except Exception as exc:  # a bug in one compile must not take the node's routing down
        message = f"cannot compile them ({type(exc).__name__}: {exc}); the table is left as it is"
        problems.append(Problem(ProblemCode.POLICY_NOT_COMPILED, "networkpolicies", message))
        return None
