"""CNI ADD/DEL latency with the daemon on a real API server, beside the embedded store and the
reference bridge + host-local, with the daemon's API requests per call from the audit log.

The manager allocates; the bench plays scheduler and kubelet: it creates a pod, binds it to the
daemon's node (the binding subresource, as the scheduler does), and calls ADD through the
plugin the daemon's own ``install`` wrote, the way a runtime executes it. Two kinds of ADD:

* *allocated*: the bench first waits until the manager's IPInstance exists (a kubelet's sandbox
  set-up usually takes longer than the allocation, so this is the common case; the wait is
  printed as "bind -> IPInstance");
* *after bind*: ADD at once, racing the manager, so the daemon may have to wait for it.

DEL follows for every pod. The embedded-store daemon (which allocates itself) and the
reference chain (bench/cni_baseline.py) are measured in the same run. Requests the daemon's
identity made while a call ran are counted per call by verb and resource. Target: ADD median
<= 60 ms with one API request. ``--tree PATH`` (repeatable) runs the daemon, its plugin and
the manager of other checkouts.

    python -m bench.cni_kube [--runs 30] [--tree A --tree B] [--json FILE]
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from kubernetes import client

from bench import audit, cni_baseline, trees
from bench.kube_cluster import (
    IPAM_NAMESPACE,
    BenchError,
    Cluster,
    cluster,
    install_plugin,
    kubelet_attachment,
    start_daemon,
    start_kube_daemon,
)
from bench.stats import print_table, summarize_ms, write_json
from hack.controlplane import close_api_client
from hybridnet import lab as testbed
from hybridnet.api import constants as c
from hybridnet.api import naming
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
from hybridnet.lab.cni_runtime import Attachment, CniRuntime
from hybridnet.store.kube import KubeStore

WARMUP = 3
NODE = "bench-node"
POD_NAMESPACE = "bench"
SUBNET = "198.19.0.0/20"
"""4,094 addresses: room for --runs up to 2,000 (each run is two pods)."""
EMBEDDED_SEED = Path(__file__).resolve().parent / "embedded_seed.py"
ADD_ALLOCATED, ADD_AFTER_BIND, DEL = "ADD (allocated)", "ADD (after bind)", "DEL"


@dataclasses.dataclass(frozen=True)
class Call:
    """One plugin execution: what, how long (the runtime's own clock), and when (wall clock,
    to match the audit log's timestamps)."""

    kind: str
    seconds: float
    started: float
    ended: float
    warmup: bool


class Kubelet:
    """Creates and binds pods on the daemon's node and runs their sandboxes' CNI calls."""

    def __init__(self, run: Cluster, fabric: testbed.Fabric, runtime: CniRuntime):
        self.store = run.store
        self.api = run.plane.api_client()
        self.fabric = fabric
        self.runtime = runtime
        self.calls: list[Call] = []
        self.allocation_waits: list[float] = []
        self.sandboxes: list[tuple[Attachment, bool]] = []
        self._count = 0

    def close(self) -> None:
        close_api_client(self.api)

    def run_pod(self, kind: str, warmup: bool) -> None:
        """Create, bind and ADD one pod (waiting for its IPInstance first for ADD_ALLOCATED)."""
        self._count += 1
        pod = self.store.create(
            Pod(
                ObjectMeta(name=f"pod-{self._count:05d}", namespace=POD_NAMESPACE),
                body={"spec": {"containers": [{"name": "c", "image": "busybox"}]}},
            )
        )
        self._bind(pod)
        if kind == ADD_ALLOCATED:
            bound = time.perf_counter()
            wait_for_instance(self.store, pod)
            if not warmup:
                self.allocation_waits.append(time.perf_counter() - bound)
        sandbox = kubelet_attachment(self.fabric.add_pod("pod"), pod)
        self._timed(kind, warmup, self.runtime.add, sandbox)
        self.sandboxes.append((sandbox, warmup))

    def delete_all(self) -> None:
        for sandbox, warmup in self.sandboxes:
            self._timed(DEL, warmup, self.runtime.delete, sandbox)

    def _bind(self, pod: Pod) -> None:
        binding = client.V1Binding(
            metadata=client.V1ObjectMeta(name=pod.metadata.name),
            target=client.V1ObjectReference(api_version="v1", kind="Node", name=NODE),
        )
        client.CoreV1Api(self.api).create_namespaced_binding(
            POD_NAMESPACE, binding, _preload_content=False
        )

    def _timed(
        self, kind: str, warmup: bool, call: Callable[[Attachment], object], sandbox: Attachment
    ) -> None:
        before = len(self.runtime.calls)
        started = time.time()
        call(sandbox)
        ended = time.time()
        seconds = sum(c.seconds for c in self.runtime.calls[before:])
        self.calls.append(Call(kind, seconds, started, ended, warmup))


def wait_for_instance(store: KubeStore, pod: Pod, timeout: float = 60) -> None:
    """Until the manager's IPInstance for ``pod`` exists: a list, then a watch from there."""
    namespace = pod.metadata.namespace or ""
    selector = naming.pod_selector(namespace, pod.metadata.name)
    listed = store.list(IPInstance, IPAM_NAMESPACE, selector)
    if listed.items:
        return
    deadline = time.monotonic() + timeout
    version = listed.resource_version
    while time.monotonic() < deadline:
        remaining = max(deadline - time.monotonic(), 1)
        for event in store.watch(IPInstance, version, IPAM_NAMESPACE, selector, remaining):
            if event.type == "ADDED":
                return
            version = event.object.metadata.resource_version or version
    raise BenchError(f"no IPInstance for {namespace}/{pod.metadata.name} after {timeout} s")


# --------------------------------------------------------------------------- on the API server


def populate(run: Cluster) -> None:
    run.namespace(POD_NAMESPACE)
    rack = {"hybridnet.bench/rack": "a"}
    run.store.create(Node(ObjectMeta(name=NODE, labels=rack)))
    spec = NetworkSpec(type=c.TYPE_UNDERLAY, mode=c.MODE_VLAN, net_id=100, node_selector=rack)
    run.store.create(Network(ObjectMeta(name="underlay"), spec))
    subnet = SubnetSpec(network="underlay", range=AddressRange(version="4", cidr=SUBNET))
    run.store.create(Subnet(ObjectMeta(name="underlay-v4"), subnet))


def measure_kube(tree: trees.Tree, runs: int) -> dict[str, Any]:
    print(f"[{tree.label}] daemon on the API server: {runs} ADDs of each kind", file=sys.stderr)
    with (
        cluster(tree) as run,
        testbed.testbed_run() as bed,
        tempfile.TemporaryDirectory(prefix="hnt-bench-") as tmp,
    ):
        work = Path(tmp)
        fabric = testbed.Fabric(bed)
        try:
            node = fabric.add_node()
            node.sysctl("net.ipv4.ip_forward", "1")
            populate(run)
            manager = run.start_manager()
            with run.plane.exposed(fabric.gateway.name, fabric.gateway_ipv4) as url:
                daemon, socket = start_kube_daemon(run, node, NODE, url, work)
                try:
                    bin_dir, conflist = install_plugin(tree, socket, work / "cni")
                    runtime = CniRuntime(conflist, [str(bin_dir)], work / "cni-cache")
                    kubelet = Kubelet(run, fabric, runtime)
                    try:
                        for kind in (ADD_ALLOCATED, ADD_AFTER_BIND):
                            for index in range(WARMUP + runs):
                                kubelet.run_pod(kind, warmup=index < WARMUP)
                        kubelet.delete_all()
                    finally:
                        kubelet.close()
                    daemon.check()
                    manager.check()
                finally:
                    daemon.stop()
                    manager.stop()
        finally:
            fabric.teardown()
        requests = list(run.audit.all())
    return kube_report(kubelet, requests)


def kube_report(kubelet: Kubelet, requests: list[audit.Request]) -> dict[str, Any]:
    report: dict[str, Any] = {
        "bind_to_ipinstance": summarize_ms(kubelet.allocation_waits),
        "requests_per_call": {},
    }
    for kind in (ADD_ALLOCATED, ADD_AFTER_BIND, DEL):
        measured = [call for call in kubelet.calls if call.kind == kind and not call.warmup]
        report[kind] = summarize_ms([call.seconds for call in measured])
        spans = [(call.started, call.ended) for call in measured]
        counted = audit.count_within(requests, spans, audit.DAEMON_USER)
        report["requests_per_call"][kind] = {
            f"{verb} {resource}": round(n / len(measured), 2)
            for (_, verb, resource), n in sorted(counted.items())
        }
    every = [(call.started, call.ended) for call in kubelet.calls]
    start, end = min(s for s, _ in every), max(e for _, e in every)
    during = audit.count(requests, start, end, audit.DAEMON_USER)
    inside = audit.count_within(requests, every, audit.DAEMON_USER)
    report["daemon_requests_between_calls"] = {
        f"{verb} {resource}": n for (_, verb, resource), n in sorted((during - inside).items())
    }
    return report


# --------------------------------------------------------------------------- embedded store


def measure_embedded(tree: trees.Tree, runs: int) -> dict[str, Any]:
    """The tree's daemon on its embedded store (it allocates itself), same plugin path."""
    print(f"[{tree.label}] daemon on the embedded store: {runs} ADDs", file=sys.stderr)
    with testbed.testbed_run() as bed, tempfile.TemporaryDirectory(prefix="hnt-bench-") as tmp:
        work = Path(tmp)
        node = testbed.create_namespace(bed.name("node1"))
        node.sysctl("net.ipv4.ip_forward", "1")
        store = work / "store.db"
        tree.run(str(EMBEDDED_SEED), str(store), SUBNET)
        socket = work / "run" / "daemon.sock"
        daemon = start_daemon(
            tree, node, socket, work / "daemon.log", "--node-name", "node1",
            "--store", str(store), "--network", "pods",
        )  # fmt: skip
        try:
            bin_dir, conflist = install_plugin(tree, socket, work / "cni")
            runtime = CniRuntime(conflist, [str(bin_dir)], work / "cni-cache")
            sandboxes = []
            for index in range(WARMUP + runs):
                pod = testbed.create_namespace(bed.unique("pod"))
                meta = ObjectMeta(name=f"pod-{index:05d}", namespace=POD_NAMESPACE, uid="")
                sandboxes.append(kubelet_attachment(pod, Pod(meta)))
            for sandbox in sandboxes:
                runtime.add(sandbox)
            for sandbox in sandboxes:
                runtime.delete(sandbox)
            daemon.check()
        finally:
            daemon.stop()
    samples: dict[str, list[float]] = collections.defaultdict(list)
    for call in runtime.calls:
        samples[call.command].append(call.seconds)
    return {
        "ADD": summarize_ms(samples["ADD"][WARMUP:]),
        "DEL": summarize_ms(samples["DEL"][WARMUP:]),
    }


# --------------------------------------------------------------------------- print


def print_report(reference: dict[str, Any], results: list[dict[str, Any]], runs: int) -> None:
    print_table(
        f"CNI latency, {runs} pods per measure (+{WARMUP} warm-up), same run",
        {"bridge+host-local ADD": reference["add"], "bridge+host-local DEL": reference["del"]},
    )
    for result in results:
        kube, embedded = result["kube"], result["embedded"]
        print_table(
            result["tree"],
            {
                "embedded store ADD": embedded["ADD"],
                "embedded store DEL": embedded["DEL"],
                "API server ADD (allocated)": kube[ADD_ALLOCATED],
                "API server ADD (after bind)": kube[ADD_AFTER_BIND],
                "API server DEL": kube[DEL],
                "bind -> IPInstance seen": kube["bind_to_ipinstance"],
            },
        )
    print("\nAPI requests of the daemon per call (audit log)")
    for kind in (ADD_ALLOCATED, ADD_AFTER_BIND, DEL):
        for result in results:
            per_call = result["kube"]["requests_per_call"][kind]
            listed = ", ".join(f"{k} {v:g}" for k, v in per_call.items()) or "none"
            print(f"  {kind:<18}{sum(per_call.values()):>6.2f}  {result['tree']}: {listed}")
    for result in results:
        between = result["kube"]["daemon_requests_between_calls"]
        if between:
            listed = ", ".join(f"{k} {v}" for k, v in between.items())
            print(f"  between calls ({result['tree']}): {listed}")
    print("\nTargets: API-server ADD median <= 60 ms, 1 API request per ADD")
    for result in results:
        add = result["kube"][ADD_ALLOCATED]["median_ms"]
        per_add = sum(result["kube"]["requests_per_call"][ADD_ALLOCATED].values())
        print(
            f"  {result['tree']}: ADD median {add:.1f} ms "
            f"({add / result['embedded']['ADD']['median_ms']:.2f}x embedded, "
            f"{add / reference['add']['median_ms']:.2f}x bridge+host-local), "
            f"{per_add:.2f} requests per ADD"
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=30, help="pods per measure (default 30)")
    parser.add_argument("--json", type=Path)
    trees.add_arguments(parser)
    args = parser.parse_args()
    if not 1 <= args.runs <= 2000:
        parser.error("--runs must be 1 to 2000")
    selected = trees.from_arguments(args, parser)
    reference = cni_baseline.run(args.runs)
    results = [
        {
            "tree": tree.label,
            "path": str(tree.path),
            "embedded": measure_embedded(tree, args.runs),
            "kube": measure_kube(tree, args.runs),
        }
        for tree in selected
    ]
    print_report(reference, results, args.runs)
    if args.json:
        write_json(
            args.json,
            {"benchmark": "cni_kube", "runs": args.runs, "reference": reference, "trees": results},
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
