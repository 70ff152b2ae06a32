"""A pod's attachment: the veth pair, addresses and routes that put a pod on the node.

``plan_attachment`` is pure (what should exist); ``attach`` builds it and rolls back everything
it made if any step fails; ``detach`` removes it and succeeds when there is nothing to remove;
``check`` lists what differs between the plan and the kernel. Runs in the node's namespace.

The pod gets its address without a prefix route and a default route through a link-local
gateway (169.254.1.1, fe80::1) that the host end of the veth answers for (proxy ARP for IPv4,
the address itself for IPv6), so every packet leaves the pod through the node, whatever the
subnet. The node reaches the pod through a /32 (/128) in the local-pod table, consulted by a
policy rule ahead of ``main``.

Every host end carries the alias ``hybridnet:<container id>/<ifname>`` (its mark): garbage
collection removes only links with a mark, so a link someone else named ``hyb...`` survives,
and CHECK reports a host end whose mark is not the attachment's.
"""

from __future__ import annotations

import dataclasses
import hashlib
import ipaddress
from collections.abc import Sequence

from hybridnet.daemon.datapath.config import LOCAL_POD_RULE_PRIORITY, LOCAL_POD_TABLE
from hybridnet.netlink import addresses, links, ns, routes, rules, sysctl

GATEWAY_V4 = "169.254.1.1"
GATEWAY_V6 = "fe80::1"
HOST_MAC = "ee:ee:ee:ee:ee:ee"
"""Every host end has this MAC: pods' neighbour entries for the gateway never go stale."""
HOST_PREFIX = "hyb"
MARK_PREFIX = "hybridnet:"
AF_INET, AF_INET6 = 2, 10


@dataclasses.dataclass(frozen=True)
class DatapathConfig:
    """Table and priority numbers (configurable so they never collide with the site's)."""

    local_pod_table: int = LOCAL_POD_TABLE
    local_pod_rule_priority: int = LOCAL_POD_RULE_PRIORITY


@dataclasses.dataclass(frozen=True)
class AttachmentPlan:
    container_id: str
    netns: str
    pod_ifname: str
    host_ifname: str
    mac: str
    mtu: int
    addresses: tuple[str, ...]
    """Pod addresses in CIDR form (the subnet's prefix length)."""

    @property
    def versions(self) -> set[int]:
        return {ipaddress.ip_interface(a).version for a in self.addresses}

    def host_routes(self) -> list[str]:
        """The /32 and /128 routes to the pod in the local-pod table."""
        return [_host_network(a) for a in self.addresses]


def _host_network(cidr: str) -> str:
    address = ipaddress.ip_interface(cidr).ip
    return f"{address}/{address.max_prefixlen}"


def host_ifname(container_id: str, ifname: str) -> str:
    """A stable, unique name for the host end (15 characters at most, the kernel's limit)."""
    digest = hashlib.sha256(f"{container_id}/{ifname}".encode()).hexdigest()
    return HOST_PREFIX + digest[:11]


def mark(container_id: str, ifname: str) -> str:
    """The alias that marks a host end as this attachment's. Cut to the kernel's limit for
    (unusually) long container ids: the name, a hash of both, stays the identity."""
    alias = f"{MARK_PREFIX}{container_id}/{ifname}".encode()[: links.MAX_ALIAS_BYTES]
    return alias.decode(errors="ignore")


def plan_attachment(
    *, container_id: str, netns: str, pod_ifname: str, mac: str, mtu: int, cidrs: Sequence[str]
) -> AttachmentPlan:
    return AttachmentPlan(
        container_id=container_id,
        netns=netns,
        pod_ifname=pod_ifname,
        host_ifname=host_ifname(container_id, pod_ifname),
        mac=mac.lower(),
        mtu=mtu,
        addresses=tuple(cidrs),
    )


def attach(plan: AttachmentPlan, config: DatapathConfig | None = None) -> None:
    """Build the attachment; on any failure remove what was built and re-raise."""
    config = config or DatapathConfig()
    with ns.node() as host:
        links.delete(host, plan.host_ifname)  # a leftover of a crashed ADD: start clean
        links.create_veth_into(
            host,
            plan.host_ifname,
            plan.pod_ifname,
            plan.netns,
            plan.mtu,
            alias=mark(plan.container_id, plan.pod_ifname),
        )
        try:
            _build_host_side(host, plan, config)
            _build_pod_side(plan)
        except BaseException:
            links.delete(host, plan.host_ifname)  # takes the pod end and its routes with it
            raise


def _build_host_side(host: ns.Socket, plan: AttachmentPlan, config: DatapathConfig) -> None:
    idx = links.set_up(host, plan.host_ifname, HOST_MAC)
    if 4 in plan.versions:
        sysctl.set_interface(4, plan.host_ifname, "proxy_arp", "1")
        # Proxy ARP answers after a random delay of up to 0.8 s by default: a new pod's first
        # packets would wait for it.
        sysctl.set_neighbour(4, plan.host_ifname, "proxy_delay", "0")
        rules.ensure_lookup(host, config.local_pod_table, config.local_pod_rule_priority, AF_INET)
    if 6 in plan.versions:
        addresses.ensure(host, idx, f"{GATEWAY_V6}/64")
        rules.ensure_lookup(host, config.local_pod_table, config.local_pod_rule_priority, AF_INET6)
    for dst in plan.host_routes():
        routes.ensure(host, dst, oif=idx, table=config.local_pod_table)


def _build_pod_side(plan: AttachmentPlan) -> None:
    ns.in_pod(plan.netns, lambda pod: _build_in_pod(pod, plan))


def _build_in_pod(pod: ns.Socket, plan: AttachmentPlan) -> None:
    links.set_up(pod, "lo")
    idx = links.set_up(pod, plan.pod_ifname, plan.mac)
    for cidr in plan.addresses:
        addresses.ensure(pod, idx, cidr, prefix_route=False)
    if 4 in plan.versions:
        routes.ensure(pod, f"{GATEWAY_V4}/32", oif=idx, scope_link=True)
        routes.ensure(pod, "default", oif=idx, gateway=GATEWAY_V4)
    if 6 in plan.versions:
        routes.ensure(pod, "default", oif=idx, gateway=GATEWAY_V6)


def detach(container_id: str, pod_ifname: str) -> bool:
    """Remove the attachment; True if there was one. Deleting the host end removes the pod end
    and every route through it, whether or not the pod's namespace still exists."""
    with ns.node() as host:
        return links.delete(host, host_ifname(container_id, pod_ifname))


def collect_garbage(valid: set[tuple[str, str]]) -> list[str]:
    """Remove every host end of ours (it carries a mark) whose attachment is not in ``valid``
    (container id, ifname); returns the names removed. Links without our mark are never
    touched, whatever their name."""
    keep = {host_ifname(container_id, ifname) for container_id, ifname in valid}
    removed = []
    with ns.node() as host:
        for name, alias in sorted(links.aliases(host).items()):
            if alias.startswith(MARK_PREFIX) and name not in keep and links.delete(host, name):
                removed.append(name)
    return removed


@dataclasses.dataclass(frozen=True)
class Attached:
    """A pod attached on this node, as the kernel shows it."""

    container_id: str
    ifname: str
    host_ifname: str
    addresses: tuple[str, ...]
    """Routed to the host end in the local-pod table, without prefix length."""


def attached(config: DatapathConfig | None = None) -> list[Attached]:
    """Every host end carrying our mark, with the addresses the local-pod table routes to it."""
    config = config or DatapathConfig()
    found = []
    with ns.node() as host:
        routed: dict[int, list[str]] = {}
        for family in (AF_INET, AF_INET6):
            for dst, oif in routes.in_table(host, config.local_pod_table, family).items():
                routed.setdefault(oif, []).append(str(ipaddress.ip_network(dst).network_address))
        for name, alias in sorted(links.aliases(host).items()):
            state = links.state(host, name) if alias.startswith(MARK_PREFIX) else None
            if state is None:
                continue
            container_id, _, ifname = alias.removeprefix(MARK_PREFIX).rpartition("/")
            found.append(Attached(container_id, ifname, name, tuple(routed.get(state.index, ()))))
    return found


def check(plan: AttachmentPlan, config: DatapathConfig | None = None) -> list[str]:
    """What differs between the plan and the kernel, one readable line each."""
    config = config or DatapathConfig()
    with ns.node() as host:
        problems = _check_host(host, plan, config)
    try:
        problems += ns.in_pod(plan.netns, lambda pod: _check_pod(pod, plan))
    except ns.NetnsGone as exc:
        problems.append(str(exc))
    return problems


def _check_host(host: ns.Socket, plan: AttachmentPlan, config: DatapathConfig) -> list[str]:
    found = links.state(host, plan.host_ifname)
    if found is None:
        return [f"host interface {plan.host_ifname} is missing"]
    problems = [] if found.up else [f"host interface {plan.host_ifname} is down"]
    expected = mark(plan.container_id, plan.pod_ifname)
    if found.alias != expected:
        problems.append(
            f"host interface {plan.host_ifname} has alias {found.alias!r}, expected {expected!r}"
        )
    tables = {
        version: routes.in_table(host, config.local_pod_table, family)
        for version, family in ((4, AF_INET), (6, AF_INET6))
    }
    for dst in plan.host_routes():
        if tables[ipaddress.ip_network(dst).version].get(dst) != found.index:
            where = f"via {plan.host_ifname} in table {config.local_pod_table}"
            problems.append(f"route {dst} {where} is missing")
    return problems


def _check_pod(pod: ns.Socket, plan: AttachmentPlan) -> list[str]:
    found = links.state(pod, plan.pod_ifname)
    if found is None:
        return [f"pod interface {plan.pod_ifname} is missing"]
    problems = []
    if found.mac != plan.mac:
        problems.append(f"pod interface MAC is {found.mac}, expected {plan.mac}")
    if found.mtu != plan.mtu:
        problems.append(f"pod interface MTU is {found.mtu}, expected {plan.mtu}")
    present = addresses.listed(pod, found.index)
    problems += [f"pod address {c} is missing" for c in plan.addresses if c not in present]
    for version, family in ((4, AF_INET), (6, AF_INET6)):
        if version in plan.versions and not routes.has_default(pod, family):
            problems.append(f"pod IPv{version} default route is missing")
    return problems
