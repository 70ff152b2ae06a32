"""Pod-to-pod TCP throughput and ping latency across two nodes: hybridnet's underlay and overlay
beside a plain routed veth path through the same fabric, measured in the same run.

The lab's fabric (hybridnet/lab/fabric.py) gets four nodes. Nodes 1 and 2 run the real
``hybridnet-daemon`` (``--underlay-interface eth0 --vtep-interface eth0``) on ONE shared
embedded store holding both networks: ``underlay`` (untagged on the nodes' ``eth0``, its
pods' addresses from the fabric's own subnet) and ``overlay`` (VXLAN, VNI 5). Each pod has a
Pod object in the store naming its network, and is attached through the real plugin
(hybridnet/lab/cni_runtime.py). Nodes 3 and 4 carry the reference, built by hand and with
nothing of hybridnet: a pod namespace behind each, a veth to its node, static routes (the
``plain`` path). Two more hand-made paths tell where a difference comes from: ``plain-hn``,
the same through nodes 1 and 2 (hybridnet's node-wide state on the way: policy rules, the
masquerade table and with it connection tracking), and ``vxlan-plain``, nodes 3 and 4 through
a VXLAN device made by hand (the kernel's encapsulation alone).

Each round measures every path in turn (the order rotates from round to round, so a slow
moment of this shared machine does not always fall on the same path): one iperf3 TCP run
(pod A on the first node -> pod B on the second) and a burst of pings. Printed: the median
throughput of the rounds, the median and p90 round-trip time of all the pings, each beside the
plain path as a ratio, with the issue's targets (underlay >= 95%, overlay >= 90% of the plain
path's throughput); iperf3's retransmits; and what decides packet sizes and per-packet work on
each path: the pod's MTU and the path MTU it learned, the VXLAN devices' MTUs, and whether the
sending node tracks connections. Prints figures, asserts nothing.

    python -m bench.datapath_traffic [--runs 5] [--seconds 3] [--pings 200] [--json FILE]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

from bench.stats import percentile, write_json
from hybridnet import lab
from hybridnet.api import constants
from hybridnet.api.builtin import Node, Pod
from hybridnet.api.meta import ObjectMeta
from hybridnet.api.resources import AddressRange, Network, NetworkSpec, Subnet, SubnetSpec
from hybridnet.lab import daemon as harness
from hybridnet.lab import perf
from hybridnet.lab.cni_runtime import Attachment, CniRuntime
from hybridnet.lab.processes import Process
from hybridnet.store.sqlite import SQLiteStore

UNDERLAY, OVERLAY, PLAIN = "underlay", "overlay", "plain"
PLAIN_HN, PLAIN_VXLAN = "plain-hn", "vxlan-plain"
PATHS = (UNDERLAY, OVERLAY, PLAIN, PLAIN_HN, PLAIN_VXLAN)
TARGETS = {UNDERLAY: 0.95, OVERLAY: 0.90}
"""Throughput as a share of the plain path's, from issue 10."""
NODE_LABEL = {"bench-underlay": "yes"}
POD_NAMESPACE = "bench"
UNDERLAY_RANGE = AddressRange(
    version="4", cidr=str(lab.FABRIC_V4), gateway="198.18.0.1",
    start="198.18.0.100", end="198.18.0.119",
)  # fmt: skip
OVERLAY_CIDR = "198.19.70.0/24"
PLAIN_SIDES = ("198.19.81", "198.19.82")
"""The plain path's two pod subnets (/24), one behind each of its nodes (3 and 4)."""
PLAIN_HN_SIDES = ("198.19.83", "198.19.84")
"""The same, behind nodes 1 and 2, whose daemons' node-wide state (policy rules, the
masquerade table and with it connection tracking) is then on the plain packets' way too."""
PLAIN_VXLAN_SIDES = ("198.19.85", "198.19.86")
"""Behind nodes 3 and 4 again, routed through a VXLAN device made by hand on each (VNI 42,
UDP 4789, MTU 1450, a static flood entry to the other node): the kernel's encapsulation
alone, as issue 10 measured it."""
PLAIN_VXLAN_LINK, PLAIN_VXLAN_NET = "vxplain", "198.19.89"


@dataclasses.dataclass
class PodPair:
    """The two ends of one path: pod A on the first node sends to pod B on the second."""

    name: str
    a: lab.Namespace
    b: lab.Namespace
    a_address: str
    b_address: str


# --------------------------------------------------------------------------- hybridnet


def seed_store(path: Path, node_names: list[str]) -> Path:
    store = SQLiteStore(path)
    try:
        for name in node_names:
            store.create(Node(ObjectMeta(name=name, labels=dict(NODE_LABEL))))
        underlay = NetworkSpec(type="Underlay", mode="VLAN", net_id=0, node_selector=NODE_LABEL)
        store.create(Network(ObjectMeta(name=UNDERLAY), underlay))
        underlay_subnet = SubnetSpec(network=UNDERLAY, range=UNDERLAY_RANGE)
        store.create(Subnet(ObjectMeta(name=f"{UNDERLAY}-v4"), underlay_subnet))
        overlay = NetworkSpec(type="Overlay", mode="VXLAN", net_id=5)
        store.create(Network(ObjectMeta(name=OVERLAY), overlay))
        overlay_range = AddressRange(version="4", cidr=OVERLAY_CIDR)
        overlay_subnet = SubnetSpec(network=OVERLAY, range=overlay_range)
        store.create(Subnet(ObjectMeta(name=f"{OVERLAY}-v4"), overlay_subnet))
    finally:
        store.close()
    return path


@dataclasses.dataclass
class HybridnetNode:
    node: lab.Node
    name: str
    directory: Path
    store: Path
    plugins: Path
    process: Process | None = None

    @property
    def socket(self) -> Path:
        return self.directory / "run" / "daemon.sock"

    def start(self) -> None:
        argv = ["--node-name", self.name, "--store", str(self.store)]
        argv += ["--ip-family", "IPv4", "--log-level", "warning"]
        argv += ["--underlay-interface", "eth0", "--vtep-interface", "eth0"]
        self.process = harness.start_daemon(self.node, self.socket, *argv)

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()
            self.node.processes.remove(self.process)
            self.process = None

    def attach(self, pod: lab.Namespace, network: str) -> str:
        """A Pod object bound to the node and asking for ``network`` (the API server's and
        the scheduler's part), then ADD through the real plugin, run inside the node (the
        runtime's); the pod's IPv4 address."""
        annotations = {constants.ANNOTATION_SPECIFIED_NETWORK: network}
        meta = ObjectMeta(name=pod.name, namespace=POD_NAMESPACE, annotations=annotations)
        store = SQLiteStore(self.store)
        try:
            store.create(Pod(meta, body={"spec": {"nodeName": self.name}}))
        finally:
            store.close()
        conflist = {
            "cniVersion": "1.1.0",
            "name": "hybridnet",
            "plugins": [{"type": "hybridnet", "socket": str(self.socket)}],
        }
        runtime = CniRuntime(
            conflist, [str(self.plugins)], self.directory / "cni-cache", exec_netns=self.node.name
        )
        args = {"K8S_POD_NAMESPACE": POD_NAMESPACE, "K8S_POD_NAME": pod.name, "IgnoreUnknown": "1"}
        result = runtime.add(Attachment(container_id=pod.name, netns=pod.path, args=args))
        return str(result["ips"][0]["address"]).split("/")[0]


def hybridnet_pairs(fabric: lab.Fabric, work: Path) -> tuple[list[PodPair], list[HybridnetNode]]:
    """One daemon per node serving both networks; an underlay and an overlay pair of pods."""
    names = ["node1", "node2"]
    store = seed_store(work / "store.db", names)
    plugins = harness.plugin_dir(work / "cni-bin")
    nodes = [
        HybridnetNode(node, name, work / name, store, plugins)
        for node, name in zip(fabric.nodes[:2], names, strict=True)
    ]
    print(f"daemons on {names}, one shared store", file=sys.stderr)
    for node in nodes:
        node.start()
    pairs = []
    for network in (UNDERLAY, OVERLAY):
        a, b = fabric.add_pod(f"{network[0]}a"), fabric.add_pod(f"{network[0]}b")
        pairs.append(
            PodPair(network, a, b, nodes[0].attach(a, network), nodes[1].attach(b, network))
        )
    return pairs, nodes


# --------------------------------------------------------------------------- the plain path


def plain_pair(
    fabric: lab.Fabric,
    name: str,
    nodes: tuple[lab.Node, lab.Node],
    sides: tuple[str, str],
    tunnel: bool = False,
) -> PodPair:
    """Two pods, one on each of ``nodes``: each a /24 (``sides``) behind a veth to its node,
    the nodes routing the other's /24 to each other over the fabric (or, with ``tunnel``,
    through a VXLAN device between them)."""
    pods = []
    host_ifname = f"{name.replace('-', '')[:12]}0"
    for index, (node, side) in enumerate(zip(nodes, sides, strict=True)):
        peer, other = nodes[1 - index], sides[1 - index]
        pod = fabric.add_pod("plain")
        lab.connect(pod, "eth0", node, host_ifname)
        node.ip("addr", "add", f"{side}.1/24", "dev", host_ifname)
        pod.ip("addr", "add", f"{side}.10/24", "dev", "eth0")
        pod.ip("route", "add", "default", "via", f"{side}.1")
        if tunnel:
            next_hop = f"{PLAIN_VXLAN_NET}.{2 - index}"
            vxlan_device(node, peer, f"{PLAIN_VXLAN_NET}.{index + 1}/24")
        else:
            next_hop = peer.ipv4
        node.ip("route", "add", f"{other}.0/24", "via", next_hop)
        node.sysctl("net.ipv4.ip_forward", "1")
        pods.append(pod)
    return PodPair(name, pods[0], pods[1], f"{sides[0]}.10", f"{sides[1]}.10")


def vxlan_device(node: lab.Node, peer: lab.Node, address: str) -> None:
    """The kernel's VXLAN between ``node`` and ``peer``: no learning, one flood entry."""
    link = PLAIN_VXLAN_LINK
    node.ip("link", "add", link, "type", "vxlan", "id", "42", "local", node.ipv4, "dev", "eth0",
            "dstport", "4789", "nolearning")  # fmt: skip
    node.ip("link", "set", link, "mtu", "1450", "up")
    node.ip("addr", "add", address, "dev", link)
    node.exec(["bridge", "fdb", "append", "00:00:00:00:00:00", "dev", link, "dst", peer.ipv4])


# --------------------------------------------------------------------------- measuring


def reachable(pair: PodPair) -> bool:
    return any(lab.ping(pair.a, pair.b_address, count=1, timeout=5) for _ in range(20))


def link_mtu(namespace: lab.Namespace, ifname: str) -> int:
    return int(json.loads(namespace.ip("-j", "link", "show", ifname).stdout)[0]["mtu"])


def path_facts(pair: PodPair, node: lab.Namespace) -> dict[str, Any]:
    """What decides the packet size on the path: the pod's MTU, a path MTU the pod learned
    (``ip route get``), the MTU of a VXLAN device on the sending node; and whether that node
    tracks connections (entries in its conntrack table: a NAT chain turns it on)."""
    route = pair.a.ip("route", "get", pair.b_address).stdout
    learned = route.split(" mtu ")[1].split()[0] if " mtu " in route else None
    facts: dict[str, Any] = {"pod_mtu": link_mtu(pair.a, "eth0"), "learned_pmtu": learned}
    for link in json.loads(node.ip("-j", "-d", "link", "show").stdout):
        if link.get("linkinfo", {}).get("info_kind") == "vxlan":
            facts.setdefault("vxlan_mtu", {})[link["ifname"]] = int(link["mtu"])
    counted = node.exec(["cat", "/proc/sys/net/netfilter/nf_conntrack_count"], check=False)
    facts["conntrack_entries"] = int(counted.stdout) if counted.returncode == 0 else None
    return facts


def measure(runs: int, seconds: int, pings: int, interval: float) -> dict[str, Any]:
    with lab.testbed_run() as bed, tempfile.TemporaryDirectory(prefix="hnt-bench-") as tmp:
        fabric = lab.Fabric(bed)
        try:
            for _ in range(4):
                fabric.add_node()
            pairs, daemons = hybridnet_pairs(fabric, Path(tmp))
            nodes = fabric.nodes
            pairs.append(plain_pair(fabric, PLAIN, (nodes[2], nodes[3]), PLAIN_SIDES))
            pairs.append(plain_pair(fabric, PLAIN_HN, (nodes[0], nodes[1]), PLAIN_HN_SIDES))
            pairs.append(
                plain_pair(fabric, PLAIN_VXLAN, (nodes[2], nodes[3]), PLAIN_VXLAN_SIDES, True)
            )
            for pair in pairs:
                if not reachable(pair):
                    raise lab.TestbedError(f"{pair.name}: pod B {pair.b_address} is unreachable")
            throughput: dict[str, list[perf.Throughput]] = {p.name: [] for p in pairs}
            rtts: dict[str, list[float]] = {p.name: [] for p in pairs}
            lost = dict.fromkeys(throughput, 0)
            for round_number in range(runs):
                shift = round_number % len(pairs)
                order = pairs[shift:] + pairs[:shift]
                print(
                    f"round {round_number + 1}/{runs}: {[p.name for p in order]}", file=sys.stderr
                )
                for pair in order:
                    run = perf.iperf3_tcp(pair.a, pair.b, pair.b_address, seconds)
                    throughput[pair.name].append(run)
                    pinged = perf.ping_rtts(pair.a, pair.b_address, pings, interval)
                    rtts[pair.name].extend(pinged.rtts_ms)
                    lost[pair.name] += pinged.lost
            senders = dict.fromkeys(PATHS, nodes[0]) | {PLAIN: nodes[2], PLAIN_VXLAN: nodes[2]}
            facts = {p.name: path_facts(p, senders[p.name]) for p in pairs}
            for daemon in daemons:
                daemon.stop()
        finally:
            fabric.teardown()
    return summarize(throughput, rtts, lost, facts)


def summarize(
    throughput: dict[str, list[perf.Throughput]],
    rtts: dict[str, list[float]],
    lost: dict[str, int],
    facts: dict[str, dict[str, Any]],
) -> dict[str, Any]:
    paths: dict[str, Any] = {}
    for name, runs in throughput.items():
        samples = rtts[name]
        paths[name] = {
            "gbit_per_s": [round(r.gbit_per_second, 2) for r in runs],
            "median_gbit_per_s": round(statistics.median(r.gbit_per_second for r in runs), 2),
            "retransmits": [r.retransmits for r in runs],
            "rtt_median_ms": round(statistics.median(samples), 3) if samples else None,
            "rtt_p90_ms": round(percentile(samples, 0.9), 3) if samples else None,
            "pings_answered": len(samples),
            "pings_lost": lost[name],
            **facts[name],
        }
    plain = paths[PLAIN]
    for name, path in paths.items():
        path["throughput_ratio"] = round(path["median_gbit_per_s"] / plain["median_gbit_per_s"], 3)
        if path["rtt_median_ms"] and plain["rtt_median_ms"]:
            path["rtt_ratio"] = round(path["rtt_median_ms"] / plain["rtt_median_ms"], 2)
        if name in TARGETS:
            path["target_ratio"] = TARGETS[name]
    # Each of hybridnet's paths beside the same kernel mechanism built by hand: what the
    # datapath adds on top of what the kernel costs on this machine.
    for name, reference in ((UNDERLAY, PLAIN_HN), (OVERLAY, PLAIN_VXLAN)):
        own = paths[name]["median_gbit_per_s"]
        paths[name]["ratio_to_" + reference] = round(own / paths[reference]["median_gbit_per_s"], 3)
    return paths


def report(paths: dict[str, Any]) -> None:
    print("\nPod-to-pod across two nodes, same run (iperf3 TCP, one stream; ping)")
    print(
        f"  {'path':<13}{'Gbit/s':>8}{'x plain':>9}{'target':>8}"
        f"{'rtt ms':>9}{'p90 ms':>8}{'x plain':>9}   runs (Gbit/s), retransmits"
    )
    for name in PATHS:
        path = paths[name]
        target = f">={path['target_ratio']:.2f}" if "target_ratio" in path else ""
        print(
            f"  {name:<13}{path['median_gbit_per_s']:>8.2f}{path['throughput_ratio']:>9.3f}"
            f"{target:>8}{path['rtt_median_ms']:>9.3f}{path['rtt_p90_ms']:>8.3f}"
            f"{path.get('rtt_ratio', 1.0):>9.2f}   {path['gbit_per_s']} {path['retransmits']}"
        )
    for name, reference in ((UNDERLAY, PLAIN_HN), (OVERLAY, PLAIN_VXLAN)):
        ratio = paths[name]["ratio_to_" + reference]
        print(f"  {name} x {reference} (the same kernel mechanism by hand): {ratio:.3f}")
    print(f"\n  {PLAIN}: nodes 3-4, nothing of hybridnet; {PLAIN_HN}: the same through nodes 1-2")
    print(f"  {PLAIN_VXLAN}: nodes 3-4 through a VXLAN device made by hand (MTU 1450)")
    print("  pod eth0 MTU / path MTU the pod learned / VXLAN devices on the sending node /")
    print("  conntrack entries there / pings lost")
    for name in PATHS:
        path = paths[name]
        devices = " ".join(f"{k}={v}" for k, v in sorted(path.get("vxlan_mtu", {}).items()))
        print(
            f"  {name:<13}pod {path['pod_mtu']}  learned {path['learned_pmtu'] or '-'}  "
            f"vxlan {devices or '-'}  conntrack {path['conntrack_entries']}  "
            f"lost {path['pings_lost']}"
            f"/{path['pings_answered'] + path['pings_lost']}"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="rounds over the three paths")
    parser.add_argument("--seconds", type=int, default=3, help="length of one iperf3 run (s)")
    parser.add_argument("--pings", type=int, default=200, help="pings per path per round")
    parser.add_argument("--interval", type=float, default=0.01, help="seconds between pings")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    paths = measure(args.runs, args.seconds, args.pings, args.interval)
    report(paths)
    if args.json:
        write_json(args.json, {"benchmark": "datapath_traffic", "paths": paths})
    return 0


if __name__ == "__main__":
    sys.exit(main())
