"""Tables of a virtual cluster's nodes, networks and pods, read from its store and its kernel
(``cluster status``, ``make demo``). They need only the cluster's layout: no live Cluster."""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Sequence

from hybridnet.api import constants as c
from hybridnet.api.builtin import Node
from hybridnet.api.naming import pod_selector
from hybridnet.api.resources import IPInstance, Network, NodeInfo, Subnet
from hybridnet.lab.cluster import ClusterLayout
from hybridnet.lab.netns import Namespace, ip
from hybridnet.lab.tables import render
from hybridnet.store.interface import Store


def _running_pids(netns: str) -> str:
    pids = ip("netns", "pids", netns, check=False).stdout.split()
    return ",".join(pids) if pids else "not running"


def _global_addresses(netns: str, ifname: str) -> list[str]:
    shown = Namespace(netns).ip("-j", "addr", "show", "dev", ifname, check=False)
    if shown.returncode != 0 or not shown.stdout.strip():
        return []
    return [
        f"{a['local']}/{a['prefixlen']}"
        for link in json.loads(shown.stdout)
        for a in link.get("addr_info", [])
        if a.get("scope") == "global"
    ]


def nodes_table(layout: ClusterLayout, store: Store) -> str:
    infos = {i.name: i for i in store.list(NodeInfo).items}
    labels = {n.name: n.metadata.labels for n in store.list(Node).items}
    rows = []
    for name, netns in layout.nodes.items():
        info = infos.get(name)
        vtep = info.spec.vtep_info if info is not None else None
        problems = [p.code for p in info.status.problems] if info is not None else []
        shown = {k: v for k, v in labels.get(name, {}).items() if k != "kubernetes.io/hostname"}
        rows.append([
            name,
            netns,
            " ".join(_global_addresses(netns, "eth0")),
            ",".join(f"{k}={v}" for k, v in sorted(shown.items())) or "-",
            f"{vtep.ip} {vtep.mac}" if vtep is not None else "-",
            _running_pids(netns),
            ",".join(problems) or "none",
        ])  # fmt: skip
    headers = ["NODE", "NETNS", "ETH0", "LABELS", "VTEP", "DAEMON PID", "PROBLEMS"]
    return render("nodes", headers, rows)


def networks_table(store: Store, ipam_namespace: str = "kube-system") -> str:
    networks = {n.name: n for n in store.list(Network).items}
    used: dict[str, int] = {}
    for instance in store.list(IPInstance, ipam_namespace).items:
        used[instance.spec.subnet] = used.get(instance.spec.subnet, 0) + 1
    rows = []
    for subnet in sorted(store.list(Subnet).items, key=lambda s: (s.spec.network, s.name)):
        network = networks.get(subnet.spec.network)
        spec = network.spec if network is not None else None
        selector = spec.node_selector if spec is not None else {}
        config = subnet.spec.config
        address_range = subnet.spec.range
        pool = f"{address_range.start}-{address_range.end}" if address_range.start else "all"
        rows.append([
            subnet.spec.network,
            spec.type if spec is not None else "?",
            _net_id(spec.type, spec.net_id) if spec is not None else "?",
            ",".join(f"{k}={v}" for k, v in sorted(selector.items())) or "all",
            subnet.name,
            address_range.cidr,
            pool,
            address_range.gateway or "-",
            "on" if config is not None and config.auto_nat_outgoing else "off",
            str(used.get(subnet.name, 0)),
        ])  # fmt: skip
    headers = ["NETWORK", "TYPE", "ID", "NODES", "SUBNET", "CIDR", "POOL", "GATEWAY", "NAT", "USED"]
    return render("networks", headers, rows)


def _net_id(network_type: str, net_id: int | None) -> str:
    if network_type == c.TYPE_OVERLAY:
        return f"VNI {net_id}"
    return "untagged" if not net_id else f"VLAN {net_id}"


def pods_table(layout: ClusterLayout, store: Store, ipam_namespace: str = "kube-system") -> str:
    """Addresses as the store allocated them, and whether the pod's eth0 holds exactly those."""
    networks = {n.name: n for n in store.list(Network).items}
    rows = []
    for pod in layout.pods:
        instances = _instances_of(store, ipam_namespace, pod["namespace"], pod["name"])
        stored = sorted((i.spec.address.ip for i in instances), key=_family_order)
        kernel = sorted(_global_addresses(pod["netns"], "eth0"), key=_family_order)
        names = sorted({i.spec.network for i in instances})
        types = sorted({networks[n].spec.type for n in names if n in networks})
        rows.append([
            pod["name"],
            pod["node"],
            ",".join(names) or "-",
            ",".join(types) or "-",
            " ".join(stored) or "none",
            "matches" if stored == kernel else (" ".join(kernel) or "no eth0"),
        ])  # fmt: skip
    return render("pods", ["POD", "NODE", "NETWORK", "TYPE", "ADDRESSES", "KERNEL"], rows)


def _instances_of(store: Store, ipam_namespace: str, namespace: str, name: str) -> list[IPInstance]:
    return store.list(IPInstance, ipam_namespace, pod_selector(namespace, name)).items


def _family_order(cidr: str) -> tuple[int, str]:
    return (ipaddress.ip_interface(cidr).version, cidr)


def report(layout: ClusterLayout, store: Store) -> Sequence[str]:
    """The three tables, nodes first."""
    return [nodes_table(layout, store), networks_table(store), pods_table(layout, store)]
