"""Time from a BGP pod's IPInstance being created to its /32 present at BIRD, through the
leading hybridnet-manager, beside ExaBGP driven directly (no hybridnet) in the same run.

The lab: the test control plane (kube-apiserver + etcd, hack/controlplane), BIRD 2 in the
gateway namespace of the fabric, and three node namespaces: node 1 runs
``hybridnet-manager`` (its ExaBGP is its child, as on a host-network manager pod), node 2 a
stock ExaBGP for the baseline, node 3 is where every route points (a Node object with that
InternalIP, Ready). A BGP network (netID 65010, BIRD as its peer) and a /16 subnet.

The bench writes IPInstances itself, as the manager's allocation would (16 client threads,
bound to node 3), so the manager's part measured is the BGP path alone: its informer, the
plan, the speaker, ExaBGP, the session. The clock starts when the bench sends the create
(the API server's write is counted: the manager's watch often delivers the IPInstance, and
BIRD has the route, before the create's answer is back). BIRD exports what it learns into a
kernel table of its namespace, and ``ip monitor route`` there stamps each arrival, so nothing
polls. For 500 and 5,000 at once it prints each route's latency, the time from the first
create to the last route at BIRD, the creates alone (the API server's share, a floor for
that total) and the last route's lag behind the last create. The
baseline is bench.bgp_announce's direct ExaBGP with batched commands, from the command
written to the route at BIRD.

    python -m bench.bgp_manager [--singles 30] [--runs 3] [--json FILE]
"""

from __future__ import annotations

import argparse
import contextlib
import ipaddress
import os
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from bench.bgp_announce import Arrivals, DirectExaBGP, bursts, routes_in, singles
from bench.stats import print_table, summarize_ms, write_json
from hack.controlplane import ControlPlane, build_binaries
from hybridnet import lab
from hybridnet.api import constants as c
from hybridnet.api.builtin import Namespace, Node
from hybridnet.api.meta import ObjectMeta
from hybridnet.api.resources import (
    AddressRange,
    BGPPeer,
    IPInstance,
    Network,
    NetworkConfig,
    NetworkSpec,
    Subnet,
    SubnetSpec,
)
from hybridnet.ipamcore.allocator import Allocation
from hybridnet.ipamstore import ipinstances
from hybridnet.lab.bird import Bird, BirdNeighbor
from hybridnet.lab.manager import manager_argv
from hybridnet.store.errors import NotFound
from hybridnet.store.kube import KubeStore

FABRIC_ASN, LOCAL_ASN = 65000, 65010
KERNEL_TABLE = 100
IPAM_NAMESPACE = "kube-system"
NETWORK, SUBNET, CIDR = "bench-bgp", "bench-bgp-v4", "198.19.0.0/16"
HOP_NODE = "bench-hop"
CLIENTS = 16
BOUND = 600.0
TARGETS = {"single": "<= 50 ms median", "500": "<= 1 s", "5000": "<= 5 s"}


def wait_for(condition: Callable[[], bool], what: str, bound: float = 120.0) -> None:
    deadline = time.monotonic() + bound
    while not condition():
        if time.monotonic() > deadline:
            raise RuntimeError(f"not reached within {bound:.0f}s: {what}")
        time.sleep(0.05)


class Writer:
    """Creates and deletes the bench's IPInstances (as the manager's allocation would)."""

    def __init__(self, store: KubeStore):
        self.store = store
        self._next = 1
        self._lock = threading.Lock()

    def addresses(self, count: int) -> list[str]:
        base = ipaddress.ip_network(CIDR).network_address
        with self._lock:
            first, self._next = self._next, self._next + count
        return [str(base + first + i) for i in range(count)]

    def create(self, address: str) -> float:
        """Create the IPInstance of ``address``; the time the request was sent (the route
        may reach BIRD before the API server's answer reaches us)."""
        allocation = Allocation(
            network=NETWORK, subnet=SUBNET, version=4, address=address, prefix_length=16,
            gateway=None, net_id=None, mac="02:00:00:00:00:01", owner=f"bench/p-{address}",
        )  # fmt: skip
        instance = ipinstances.build(
            allocation,
            ipam_namespace=IPAM_NAMESPACE,
            pod_namespace="bench",
            pod_name=f"p-{address.replace('.', '-')}",
            pod_uid=None,
            node_name=HOP_NODE,
            ordinal=None,
            families=(4,),
        )
        sent = time.monotonic()
        self.store.create(instance)
        return sent

    def delete(self, address: str) -> None:
        with contextlib.suppress(NotFound):
            self.store.delete(IPInstance, ipinstances.instance_name(address), IPAM_NAMESPACE)


def host(address: str) -> str:
    return f"{address}/32"


def pod_singles(writer: Writer, arrivals: Arrivals, count: int) -> list[float]:
    samples = []
    addresses = writer.addresses(count)
    for address in addresses:
        created = writer.create(address)
        samples.append(arrivals.wait_present([host(address)]) - created)
    with ThreadPoolExecutor(CLIENTS) as pool:
        list(pool.map(writer.delete, addresses))
    arrivals.wait_absent(host(a) for a in addresses)
    return samples


def pod_burst(writer: Writer, arrivals: Arrivals, count: int) -> tuple[list[float], float, float]:
    """``count`` IPInstances created at once: each route's latency, first create to last
    route at BIRD, and first create to last create sent."""
    addresses = writer.addresses(count)
    started = time.monotonic()
    with ThreadPoolExecutor(CLIENTS) as pool:
        created = dict(zip(addresses, pool.map(writer.create, addresses), strict=True))
    last = arrivals.wait_present(host(a) for a in addresses)
    arrived = arrivals.arrived(host(a) for a in addresses)
    latencies = [arrived[host(a)] - created[a] for a in addresses]
    with ThreadPoolExecutor(CLIENTS) as pool:
        list(pool.map(writer.delete, addresses))
    arrivals.wait_absent(host(a) for a in addresses)
    return latencies, last - started, max(created.values()) - started


def set_up(store: KubeStore, hop: lab.Node, gateway_v4: str) -> None:
    with contextlib.suppress(Exception):
        store.create(Namespace(ObjectMeta(name=IPAM_NAMESPACE)))
    node = store.create(Node(ObjectMeta(name=HOP_NODE)))
    node.body["status"] = {
        "addresses": [{"type": "InternalIP", "address": hop.ipv4}],
        "conditions": [{"type": "Ready", "status": "True"}],
    }
    store.update_status(node)
    peers = [BGPPeer(address=gateway_v4, asn=FABRIC_ASN)]
    spec = NetworkSpec(
        type=c.TYPE_UNDERLAY, mode=c.MODE_BGP, net_id=LOCAL_ASN,
        node_selector={"bench": "bgp"}, config=NetworkConfig(bgp_peers=peers),
    )  # fmt: skip
    store.create(Network(ObjectMeta(name=NETWORK), spec))
    subnet = SubnetSpec(network=NETWORK, range=AddressRange(version="4", cidr=CIDR))
    store.create(Subnet(ObjectMeta(name=SUBNET), subnet))


def measure(args: argparse.Namespace, work: Path) -> dict[str, dict[str, float]]:
    rows: dict[str, dict[str, float]] = {}
    plane = ControlPlane(bin_dir=build_binaries())
    with lab.testbed_run() as run, contextlib.ExitStack() as cleanup:
        plane.start()
        cleanup.callback(plane.stop)
        plane.install_crds(Path(__file__).resolve().parents[1] / "deploy" / "crds")
        fabric = lab.Fabric(run)
        cleanup.callback(fabric.teardown)
        manager_node, direct_node, hop = fabric.add_node(), fabric.add_node(), fabric.add_node()
        bird = Bird(
            fabric.gateway, work / "bird", router_id=fabric.gateway_ipv4, asn=FABRIC_ASN,
            neighbors=[BirdNeighbor("hn", manager_node.ipv4, LOCAL_ASN),
                       BirdNeighbor("plain", direct_node.ipv4, LOCAL_ASN)],
            kernel_table=KERNEL_TABLE,
        )  # fmt: skip
        bird.start()
        cleanup.callback(bird.stop)
        arrivals = Arrivals(fabric.gateway.name, KERNEL_TABLE)
        cleanup.callback(arrivals.close)
        store = KubeStore.from_kubeconfig(plane.kubeconfig_path, connections=CLIENTS + 4)
        cleanup.callback(store.close)
        set_up(store, hop, fabric.gateway_ipv4)
        url = plane.expose_in_namespace(fabric.gateway.name, fabric.gateway_ipv4)
        cleanup.callback(plane.unexpose, url)
        argv = manager_argv(
            plane.kubeconfig_for(url), IPAM_NAMESPACE, "bench-manager",
            "--metrics-address", "", "--log-level", "warning",
            "--bgp-workdir", str(work / "exabgp"),
        )  # fmt: skip
        manager = lab.Process(argv, netns=manager_node.name, log_path=work / "manager.log")
        cleanup.callback(manager.stop, 20)
        wait_for(lambda: bird.protocol("hn").state == "Established", "the manager's session")
        writer = Writer(store)
        pod_singles(writer, arrivals, 3)  # warm-up
        rows["hybridnet: single"] = summarize_ms(pod_singles(writer, arrivals, args.singles))
        for count in (500, 5000):
            latencies: list[float] = []
            totals: list[float] = []
            creates: list[float] = []
            for _ in range(args.runs if count == 500 else max(1, args.runs // 2)):
                each, total, creating = pod_burst(writer, arrivals, count)
                latencies += each
                totals.append(total)
                creates.append(creating)
            rows[f"hybridnet: {count}, each"] = summarize_ms(latencies)
            rows[f"hybridnet: {count}, all"] = summarize_ms(totals)
            rows[f"  ({count} creates sent)"] = summarize_ms(creates)
            lags = [total - creating for total, creating in zip(totals, creates, strict=True)]
            rows[f"  ({count}: last create -> last)"] = summarize_ms(lags)
        print("measured hybridnet", file=sys.stderr)
        manager.stop(20)

        direct = DirectExaBGP(direct_node, work / "direct", fabric.gateway_ipv4, batched=True)
        with contextlib.closing(direct):
            wait_for(lambda: bird.protocol("plain").state == "Established", "the direct ExaBGP")
            hop_ip = hop.ipv4
            singles(direct, arrivals, routes_in("198.20.0.1", 3, hop_ip))
            rows["direct ExaBGP: single"] = summarize_ms(
                singles(direct, arrivals, routes_in("198.20.0.1", args.singles, hop_ip))
            )
            for count in (500, 5000):
                runs = args.runs if count == 500 else max(1, args.runs // 2)
                rows[f"direct ExaBGP: {count}, all"] = summarize_ms(
                    bursts(direct, arrivals, routes_in("198.20.0.1", count, hop_ip), runs)
                )
        print("measured direct ExaBGP", file=sys.stderr)
    return rows


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--singles", type=int, default=30, help="pods one by one")
    parser.add_argument("--runs", type=int, default=3, help="runs of 500 (5,000: half as many)")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        parser.exit(1, "bgp_manager: needs root (network namespaces)\n")
    with tempfile.TemporaryDirectory(prefix="hnbgpm-") as work:
        rows = measure(args, Path(work))
    print_table("IPInstance created -> its /32 at BIRD (through hybridnet-manager)", rows)
    print(
        "\n  issue 11 targets: "
        + ", ".join(f"{k} {v}" for k, v in TARGETS.items())
        + "\n  'each': every route's own latency; 'all': first create to last route at BIRD"
    )
    write_json(args.json, {"bgp_manager": rows, "targets": TARGETS})


if __name__ == "__main__":
    main()
