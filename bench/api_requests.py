"""API requests per minute of the manager and one daemon at steady state, from the audit log.

A real kube-apiserver (audit log on, the manager and the daemon each with a client certificate
of its own) holds 1,000 Nodes on four racks, four Underlay networks selecting one rack each and
one Overlay network, 200 Subnets among them, and 2,000 pods bound two per node (every fourth
one Overlay) whose IPInstances the manager writes. The daemon of node-0000 runs in a node
namespace and has attached that node's two pods through the installed plugin; the bench plays
its kubelet's exec probes (liveness and readiness every 10 s, as in deploy/daemon). Once every
IPInstance exists and nothing but Lease renewals has been written for a while, the requests
both make over a window are counted by verb and resource. Watches are long-running: a window
counts the watches *opened* in it.

Target: at steady state no LIST and no write (leader election's Lease renewals apart), only
watches. ``--tree PATH`` (repeatable) runs the manager and daemon of other checkouts, one
fresh cluster each, and prints them side by side.

    python -m bench.api_requests [--window 60] [--tree A --tree B] [--json FILE]
"""

from __future__ import annotations

import argparse
import collections
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from bench import audit, trees
from bench.kube_cluster import (
    IPAM_NAMESPACE,
    BenchError,
    Cluster,
    Component,
    cluster,
    install_plugin,
    kubelet_attachment,
    start_kube_daemon,
)
from bench.stats import write_json
from hybridnet import lab as testbed
from hybridnet.api import constants as c
from hybridnet.api.builtin import Node, Pod
from hybridnet.api.meta import ObjectMeta
from hybridnet.api.resources import (
    AddressRange,
    IPInstance,
    Network,
    NetworkSpec,
    Subnet,
    SubnetSpec,
)
from hybridnet.lab.cni_runtime import CniRuntime

RACK_LABEL = "hybridnet.bench/rack"
POD_NAMESPACES = 10
CLIENT_THREADS = 16


def node_name(index: int) -> str:
    return f"node-{index:04d}"


class Sizes(argparse.Namespace):
    nodes: int
    subnets: int
    underlays: int
    pods: int
    window: float
    quiet: float
    settle_timeout: float
    probe_period: float


# --------------------------------------------------------------------------- setup


def subnet_networks(sizes: Sizes) -> list[str]:
    """The network of each subnet: the first fifth (at least one) Overlay, then the Underlay
    networks in turn."""
    overlay = max(1, sizes.subnets // 5)
    underlay = [f"underlay-{i % sizes.underlays}" for i in range(sizes.subnets - overlay)]
    return ["overlay"] * overlay + underlay


def network_of(index: int, sizes: Sizes) -> str:
    """Where pod ``index`` gets its address: every fourth pod Overlay, the rest from the
    Underlay network of its node's rack."""
    if index % 4 == 3:
        return "overlay"
    return f"underlay-{index % sizes.nodes % sizes.underlays}"


def fits(sizes: Sizes) -> bool:
    """Whether every network has addresses for its pods (each subnet a /24: 254 of them)."""
    capacity = collections.Counter(subnet_networks(sizes))
    demand = collections.Counter(network_of(i, sizes) for i in range(sizes.pods))
    return all(demand[n] <= capacity[n] * 254 for n in demand)


def populate(run: Cluster, sizes: Sizes) -> None:
    """Nodes, networks and subnets."""
    store = run.store
    for index in range(sizes.underlays):
        spec = NetworkSpec(
            type=c.TYPE_UNDERLAY,
            mode=c.MODE_VLAN,
            net_id=100 + index,
            node_selector={RACK_LABEL: f"rack-{index}"},
        )
        store.create(Network(ObjectMeta(name=f"underlay-{index}"), spec))
    store.create(
        Network(
            ObjectMeta(name="overlay"),
            NetworkSpec(type=c.TYPE_OVERLAY, mode=c.MODE_VXLAN, net_id=4),
        )
    )
    networks = subnet_networks(sizes)

    def subnet(index: int) -> None:
        spec = SubnetSpec(
            network=networks[index],
            range=AddressRange(version="4", cidr=f"198.19.{index}.0/24"),
        )
        store.create(Subnet(ObjectMeta(name=f"subnet-{index:03d}"), spec))

    def node(index: int) -> None:
        labels = {RACK_LABEL: f"rack-{index % sizes.underlays}"}
        store.create(Node(ObjectMeta(name=node_name(index), labels=labels)))

    for namespace in range(POD_NAMESPACES):
        run.namespace(f"bench-{namespace}")
    with ThreadPoolExecutor(CLIENT_THREADS) as pool:
        list(pool.map(subnet, range(sizes.subnets)))
        list(pool.map(node, range(sizes.nodes)))


def pod_of(index: int, sizes: Sizes) -> Pod:
    """Pod ``index``, on node ``index % nodes`` (two per node by default)."""
    overlay = network_of(index, sizes) == "overlay"
    annotations = {c.ANNOTATION_NETWORK_TYPE: c.TYPE_OVERLAY} if overlay else {}
    return Pod(
        ObjectMeta(
            name=f"pod-{index:05d}",
            namespace=f"bench-{index % POD_NAMESPACES}",
            annotations=annotations,
        ),
        body={
            "spec": {
                "nodeName": node_name(index % sizes.nodes),
                "containers": [{"name": "c", "image": "busybox"}],
            }
        },
    )


def create_pods(run: Cluster, sizes: Sizes) -> list[Pod]:
    with ThreadPoolExecutor(CLIENT_THREADS) as pool:
        return list(pool.map(lambda i: run.store.create(pod_of(i, sizes)), range(sizes.pods)))


def wait_allocated(run: Cluster, sizes: Sizes, watched: list[Component]) -> float:
    """Seconds until every pod has its IPInstance (polled each second; the components must
    stay up meanwhile)."""
    started = time.monotonic()
    while len(run.store.list(IPInstance, IPAM_NAMESPACE).items) < sizes.pods:
        for component in watched:
            component.check()
        if time.monotonic() - started > sizes.settle_timeout:
            raise BenchError(f"not every pod had an IPInstance after {sizes.settle_timeout} s")
        time.sleep(1)
    return time.monotonic() - started


def wait_quiet(run: Cluster, sizes: Sizes) -> tuple[float, bool]:
    """Wait until neither component wrote anything but its Lease for ``sizes.quiet`` seconds
    (audit log); returns the seconds waited and whether that quiet came before the timeout."""
    started = time.time()
    last_write = started
    while time.time() - last_write < sizes.quiet:
        for request in run.audit.new():
            if request.is_write and not request.is_leader_election:
                last_write = max(last_write, request.received)
        if time.time() - started > sizes.settle_timeout:
            return time.time() - started, False
        time.sleep(0.5)
    return time.time() - started, True


class Prober:
    """The kubelet's exec probes of the daemon container, run in its node every period."""

    def __init__(self, run: Cluster, node: testbed.Namespace, socket: Path, period: float):
        probe = run.tree.module("hybridnet.daemon.main", "--socket", str(socket), "probe")
        self.commands = [probe, [*probe, "--ready"]]
        self.node = node
        self.env = run.tree.env()
        self.period = period
        self.failures = 0
        self.runs = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="kubelet-probes", daemon=True)

    def start(self) -> Prober:
        if self.period > 0:
            self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(30)

    def _loop(self) -> None:
        due = time.monotonic()
        while True:
            for command in self.commands:
                done = testbed.run(command, netns=self.node.name, check=False, env=self.env)
                self.runs += 1
                self.failures += done.returncode != 0
            due += self.period  # a ticker, as the kubelet's: period from start to start
            if self._stop.wait(max(due - time.monotonic(), 0)):
                return


# --------------------------------------------------------------------------- measure


def measure(tree: trees.Tree, sizes: Sizes) -> dict[str, Any]:
    print(f"\n[{tree.label}] starting the control plane", file=sys.stderr)
    with (
        cluster(tree) as run,
        testbed.testbed_run() as bed,
        tempfile.TemporaryDirectory(prefix="hnt-bench-") as tmp,
    ):
        work = Path(tmp)
        fabric = testbed.Fabric(bed)
        try:
            node = fabric.add_node()
            started = time.monotonic()
            populate(run, sizes)
            populated = time.monotonic() - started
            print(
                f"[{tree.label}] {sizes.nodes} nodes, {sizes.subnets} subnets in {populated:.1f} s",
                file=sys.stderr,
            )
            manager = run.start_manager()
            with run.plane.exposed(fabric.gateway.name, fabric.gateway_ipv4) as url:
                daemon, socket = start_kube_daemon(run, node, node_name(0), url, work)
                try:
                    report = _steady_state(
                        run,
                        sizes,
                        fabric=fabric,
                        node=node,
                        socket=socket,
                        components=[manager, daemon],
                    )
                finally:
                    daemon.stop()
                    manager.stop()
        finally:
            fabric.teardown()
    report["populate_seconds"] = round(populated, 1)
    return report


def _steady_state(
    run: Cluster,
    sizes: Sizes,
    *,
    fabric: testbed.Fabric,
    node: testbed.Node,
    socket: Path,
    components: list[Component],
) -> dict[str, Any]:
    label = run.tree.label
    started = time.monotonic()
    pods = create_pods(run, sizes)
    created = time.monotonic() - started
    allocated = created + wait_allocated(run, sizes, components)
    print(
        f"[{label}] {sizes.pods} pods created in {created:.1f} s, all allocated "
        f"{allocated:.1f} s after the first create",
        file=sys.stderr,
    )
    bin_dir, conflist = install_plugin(run.tree, socket, run.work / "cni")
    runtime = CniRuntime(conflist, [str(bin_dir)], run.work / "cni-cache")
    mine = [p for p in pods if p.node_name == node_name(0)]
    for pod in mine:
        runtime.add(kubelet_attachment(fabric.add_pod("pod"), pod))
    prober = Prober(run, node, socket, sizes.probe_period).start()
    try:
        settled, quiet = wait_quiet(run, sizes)
        print(
            f"[{label}] {len(mine)} pods of {node_name(0)} attached; "
            f"{'quiet' if quiet else 'NOT quiet'} after {settled:.1f} s; "
            f"counting for {sizes.window:.0f} s",
            file=sys.stderr,
        )
        start = time.time()
        time.sleep(sizes.window)
        end = time.time()
        for component in components:
            component.check()
    finally:
        prober.stop()
    counted = audit.count(run.audit.all(), start, end)
    per_minute = {key: n * 60 / (end - start) for key, n in counted.items()}
    return {
        "tree": label,
        "path": str(run.tree.path),
        "sizes": {
            "nodes": sizes.nodes,
            "subnets": sizes.subnets,
            "underlay_networks": sizes.underlays,
            "pods": sizes.pods,
        },
        "create_seconds": round(created, 1),
        "allocation_seconds": round(allocated, 1),
        "settle_seconds": round(settled, 1),
        "quiet_before_window": quiet,
        "window_seconds": round(end - start, 1),
        "probes": {"period_seconds": sizes.probe_period, "runs": prober.runs},
        "probe_failures": prober.failures,
        "per_minute": [
            {
                "component": component,
                "verb": verb,
                "resource": resource,
                "count": counted[(component, verb, resource)],
                "per_minute": round(rate, 1),
                "category": audit.category(verb, resource),
                "on_target": audit.on_target(verb, resource),
            }
            for (component, verb, resource), rate in sorted(per_minute.items())
        ],
        "summary": summarize(per_minute),
    }


def summarize(per_minute: dict[audit.Key, float]) -> dict[str, float]:
    """Per component and category: watch opens, lists, writes, gets, Lease requests."""
    summary: dict[str, float] = collections.defaultdict(float)
    for (component, verb, resource), rate in per_minute.items():
        summary[f"{component} {audit.category(verb, resource)}"] += rate
    return {key: round(value, 1) for key, value in sorted(summary.items())}


# --------------------------------------------------------------------------- print


def print_report(reports: list[dict[str, Any]]) -> None:
    labels = [r["tree"] for r in reports]
    rates: dict[tuple[str, str, str], dict[str, float]] = collections.defaultdict(dict)
    for report in reports:
        for row in report["per_minute"]:
            rates[(row["component"], row["verb"], row["resource"])][report["tree"]] = row[
                "per_minute"
            ]
    width = max(14, *(len(label) + 2 for label in labels))
    window = ", ".join(f"{r['window_seconds']:.0f} s" for r in reports)
    print(f"\nAPI requests per minute at steady state (window {window}; watch = watches opened)")
    header = f"  {'component':<10}{'verb':<8}{'resource':<28}"
    print(header + "".join(f"{label:>{width}}" for label in labels) + "   target")
    for (component, verb, resource), by_tree in sorted(rates.items()):
        cells = "".join(f"{by_tree.get(label, 0.0):>{width}.1f}" for label in labels)
        target = "ok" if audit.on_target(verb, resource) else "off target"
        if audit.category(verb, resource) == "leader election":
            target = "ok (Lease renewal)"
        print(f"  {component:<10}{verb:<8}{resource:<28}{cells}   {target}")
    print("\n  per component, per minute (target: list 0, write 0; watches only)")
    keys = sorted({k for r in reports for k in r["summary"]})
    for key in keys:
        cells = "".join(f"{r['summary'].get(key, 0.0):>{width}.1f}" for r in reports)
        print(f"  {key:<46}{cells}")
    for report in reports:
        notes = [f"allocation {report['allocation_seconds']} s"]
        notes.append(f"settled {report['settle_seconds']} s")
        if not report["quiet_before_window"]:
            notes.append("never quiet before the window: measured anyway")
        if report["probe_failures"]:
            notes.append(f"{report['probe_failures']} of {report['probes']['runs']} probes failed")
        print(f"  {report['tree']}: {'; '.join(notes)}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=1000)
    parser.add_argument("--subnets", type=int, default=200, help="/24s; at most 256")
    parser.add_argument("--underlays", type=int, default=4, help="Underlay networks (racks)")
    parser.add_argument("--pods", type=int, default=2000)
    parser.add_argument("--window", type=float, default=60.0, help="seconds counted")
    parser.add_argument("--quiet", type=float, default=10.0, help="seconds without writes first")
    parser.add_argument("--settle-timeout", type=float, default=300.0)
    parser.add_argument("--probe-period", type=float, default=10.0, help="0: no kubelet probes")
    parser.add_argument("--json", type=Path)
    trees.add_arguments(parser)
    sizes = parser.parse_args(namespace=Sizes())
    if not 1 <= sizes.underlays < sizes.subnets <= 256:
        parser.error("need 1 <= --underlays < --subnets <= 256")
    if sizes.nodes < 1 or sizes.pods < 1 or sizes.window <= 0:
        parser.error("--nodes, --pods and --window must be positive")
    if not fits(sizes):
        parser.error("too few subnets for the pods (each subnet is a /24)")
    selected = trees.from_arguments(sizes, parser)
    reports = [measure(tree, sizes) for tree in selected]
    print_report(reports)
    if sizes.json:
        write_json(sizes.json, {"benchmark": "api_requests", "runs": reports})
    return 0


if __name__ == "__main__":
    sys.exit(main())
