"""NetworkPolicy at scale: compile and apply on one node, a label change reaching every node,
and TCP throughput through the policy table beside no table.

* **node** (a throwaway namespace, the daemon's own functions): 2,000 pods in 20 namespaces,
  1,000 policies (50 per namespace: ingress from a namespace and pod selector on a port and a
  named port, egress to an ipBlock with an except), ``--local`` of the pods on this node. Timed:
  the desired table from the view (endpoints, compiler, renderer), writing it whole into an
  empty kernel, and one pod's label change (desired again and the minimal update); the rule and
  element counts beside them.
* **cluster** (the virtual cluster: three real daemons on one embedded store): the same 2,000
  pods (bound to 20 nodes that exist only in the store, their addresses allocated as
  IPInstances) and 1,000 policies; then ``--changes`` times one pod's labels change, timed from
  the store write until every node's daemon logs that it enforces the new inputs (``network
  policy applied`` with their digest, its log's own timestamp).
* **throughput**: iperf3 between underlay pods on two nodes with no policy, then with 100
  policies selecting the server (99 that allow other sources, the last the client). Once a
  connection is established the table's first rule accepts it (conntrack), so this measures
  what policy costs a running flow; a new connection walks the chains.

Targets of issue 15, printed beside the figures: compile and apply <= 2 s, a label change on
every node <= 1 s (median and p90). Prints figures, asserts nothing.

    python -m bench.policy_apply [--local 110] [--rounds 3] [--changes 10] [--json FILE]
"""

from __future__ import annotations

import argparse
import datetime
import ipaddress
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from bench.stats import percentile, print_table, summarize_ms, write_json
from hybridnet import lab as testbed
from hybridnet.api import constants as c
from hybridnet.api.builtin import Namespace, NetworkPolicy, Pod
from hybridnet.api.meta import ObjectMeta
from hybridnet.api.resources import IPInstance
from hybridnet.daemon.attachment import MARK_PREFIX
from hybridnet.daemon.datapath import policy_apply, policy_table
from hybridnet.daemon.datapath.policy_table import KernelForms, observed
from hybridnet.daemon.datapath.view import HostFacts, HostLink, PolicyView
from hybridnet.ipamcore.allocator import Allocation
from hybridnet.ipamstore import ipinstances
from hybridnet.lab.cluster import Cluster, ClusterConfig, ClusterNode
from hybridnet.lab.perf import iperf3_tcp
from hybridnet.netlink import nftables, ns

T = TypeVar("T")
IPAM_NAMESPACE = "kube-system"
TABLE = "hybridnet-policy"
NAMESPACES = 20
PODS_PER_NAMESPACE = 100
POLICIES_PER_NAMESPACE = 50
APPS = 25
TEAMS = 4
VIRTUAL_NODES = 20
POD_SPACE = ipaddress.ip_network("198.19.0.0/16")
TARGETS = {"compile_apply_s": 2.0, "label_change_every_node_s": 1.0}
APPLIED = "network policy applied"
ENFORCE_TIMEOUT = 120.0


# --------------------------------------------------------------------------- the objects


def namespaces() -> list[Namespace]:
    return [
        Namespace(ObjectMeta(name=f"ns-{i}", labels={"team": f"t{i % TEAMS}"}))
        for i in range(NAMESPACES)
    ]


def pod_name(index: int) -> tuple[str, str]:
    return f"ns-{index // PODS_PER_NAMESPACE}", f"pod-{index % PODS_PER_NAMESPACE}"


def pods(node_of: Callable[[int], str]) -> list[Pod]:
    found = []
    for index in range(NAMESPACES * PODS_PER_NAMESPACE):
        namespace, name = pod_name(index)
        labels = {"app": f"app-{index % APPS}", "role": "client" if index % 2 else "server"}
        spec = {
            "nodeName": node_of(index),
            "containers": [{"name": "main", "ports": [{"name": "http", "containerPort": 8080}]}],
        }
        found.append(
            Pod(ObjectMeta(name=name, namespace=namespace, labels=labels), body={"spec": spec})
        )
    return found


def address_of(index: int) -> str:
    return str(POD_SPACE.network_address + 10 + index)


def instances(
    node_of: Callable[[int], str], sandbox_of: Callable[[int], str | None]
) -> list[IPInstance]:
    found = []
    for index in range(NAMESPACES * PODS_PER_NAMESPACE):
        namespace, name = pod_name(index)
        allocation = Allocation(
            network="bench", subnet="bench-v4", version=4, address=address_of(index),
            prefix_length=16, gateway=None, net_id=None, mac="02:00:00:00:00:05",
            owner=f"{namespace}/{name}",
        )  # fmt: skip
        instance = ipinstances.build(
            allocation, ipam_namespace=IPAM_NAMESPACE, pod_namespace=namespace, pod_name=name,
            pod_uid=None, node_name=node_of(index), ordinal=None, families=(4,),
        )  # fmt: skip
        instance.status.sandbox_id = sandbox_of(index)
        found.append(instance)
    return found


def policies() -> list[NetworkPolicy]:
    found = []
    for n in range(NAMESPACES):
        for k in range(POLICIES_PER_NAMESPACE):
            spec = {
                "podSelector": {"matchLabels": {"app": f"app-{k % APPS}"}},
                "policyTypes": ["Ingress", "Egress"],
                "ingress": [{
                    "from": [{"namespaceSelector": {"matchLabels": {"team": f"t{k % TEAMS}"}},
                              "podSelector": {"matchLabels": {"role": "client"}}}],
                    "ports": [{"port": 8000 + k}, {"port": "http"}],
                }],
                "egress": [{"to": [{"ipBlock": {"cidr": "198.18.0.0/16",
                                                "except": [f"198.18.{k}.0/24"]}}]}],
            }  # fmt: skip
            meta = ObjectMeta(name=f"policy-{k}", namespace=f"ns-{n}")
            found.append(NetworkPolicy(meta, body={"spec": spec}))
    return found


# --------------------------------------------------------------------------- one node


def inside(path: str, work: Callable[[], T]) -> T:
    return ns.run_inside(path, work)


def timed(work: Callable[[], T]) -> tuple[float, T]:
    started = time.perf_counter()
    outcome = work()
    return time.perf_counter() - started, outcome


def node_view(local: int, relabelled: bool = False) -> tuple[PolicyView, HostFacts]:
    def sandbox(index: int) -> str | None:
        return f"sandbox-{index}" if index < local else None

    all_pods = pods(lambda i: "bench-node" if i < local else f"vnode-{i % VIRTUAL_NODES}")
    if relabelled:  # the last pod becomes a client: it joins the peers of half the policies
        all_pods[-1].metadata.labels = {**all_pods[-1].metadata.labels, "role": "client"}
    links = {
        f"hyb{index:011x}": HostLink(f"hyb{index:011x}", 100 + index, "veth", 1500, None, True,
                                     f"{MARK_PREFIX}sandbox-{index}/eth0")
        for index in range(local)
    }  # fmt: skip
    links["eth0"] = HostLink("eth0", 2, None, 1500, None, True, None, ("198.18.0.10/24",))
    view = PolicyView(
        pods=tuple(all_pods),
        namespaces=tuple(namespaces()),
        policies=tuple(policies()),
        addresses=tuple(instances(lambda i: "bench-node", sandbox)),
    )
    return view, HostFacts(links=links)


def one_round(
    run: testbed.TestbedRun, views: tuple[PolicyView, PolicyView], host: HostFacts
) -> tuple[dict[str, float], dict[str, int]]:
    """Compile and write the table into a fresh namespace, then one label change."""
    view, changed_view = views
    node = testbed.create_namespace(run.unique("policy-bench"))
    forms = KernelForms()
    try:
        compile_s, wanted = timed(lambda: policy_table.desired(view, host, TABLE))
        write_s, _ = timed(
            lambda: inside(node.path, lambda: policy_apply.write(wanted.table, None, forms))
        )
        change_compile_s, changed = timed(lambda: policy_table.desired(changed_view, host, TABLE))

        def update() -> None:
            listing = nftables.list_table(policy_table.FAMILY, TABLE) or []
            policy_apply.write(changed.table, observed(TABLE, listing, forms), forms)

        change_write_s, _ = timed(lambda: inside(node.path, update))
    finally:
        node.delete()
    ruleset = wanted.table.ruleset
    sizes = {"rules": ruleset.rule_count, "elements": ruleset.element_count,
             "pod_chains": len(ruleset.chains)}  # fmt: skip
    times = {"compile": compile_s, "write": write_s, "change_compile": change_compile_s,
             "change_write": change_write_s}  # fmt: skip
    return times, sizes


def bench_node(local: int, rounds: int) -> dict[str, Any]:
    view, host = node_view(local)
    changed_view, _ = node_view(local, relabelled=True)
    measured: list[dict[str, float]] = []
    sizes: dict[str, int] = {}
    with testbed.testbed_run() as run:
        for _ in range(rounds):
            times, sizes = one_round(run, (view, changed_view), host)
            measured.append(times)
    compile_s = [m["compile"] for m in measured]
    write_s = [m["write"] for m in measured]
    change_compile_s = [m["change_compile"] for m in measured]
    change_write_s = [m["change_write"] for m in measured]
    totals = [a + b for a, b in zip(compile_s, write_s, strict=True)]
    rows = {
        "compile (desired table)": summarize_ms(compile_s),
        "write whole table": summarize_ms(write_s),
        "compile + write": summarize_ms(totals),
        "label change: compile": summarize_ms(change_compile_s),
        "label change: update": summarize_ms(change_write_s),
    }
    print_table(
        f"one node: {len(view.policies)} policies, {len(view.pods)} pods, {local} local "
        f"({sizes['rules']} rules, {sizes['elements']} set/map elements, "
        f"{sizes['pod_chains']} pod chains); target compile + write <= "
        f"{TARGETS['compile_apply_s']} s",
        rows,
    )
    return {"rows": rows, "sizes": {**sizes, "local_pods": local}}


# --------------------------------------------------------------------------- the cluster


def digest(cluster: Cluster) -> str:
    store = cluster.store

    def ordered(items: Sequence[Any]) -> tuple[Any, ...]:
        return tuple(sorted(items, key=lambda o: (o.metadata.namespace or "", o.metadata.name)))

    return PolicyView(
        pods=ordered(store.list(Pod).items),
        namespaces=ordered(store.list(Namespace).items),
        policies=ordered(store.list(NetworkPolicy).items),
        addresses=ordered(store.list(IPInstance, IPAM_NAMESPACE).items),
    ).digest()


def enforced_at(node: ClusterNode, offset: int, wanted: str) -> float | None:
    """The wall-clock time the node's daemon logged that it enforces ``wanted``."""
    with node.log.open("rb") as log:
        log.seek(offset)
        for raw in log:
            if b"inputs" in raw:
                line = json.loads(raw)
                if line.get("msg") == APPLIED and line.get("inputs") == wanted:
                    return datetime.datetime.fromisoformat(line["ts"]).timestamp()
    return None


def wait_enforced(cluster: Cluster, offsets: dict[str, int]) -> list[float]:
    wanted = digest(cluster)
    deadline = time.monotonic() + ENFORCE_TIMEOUT
    found: dict[str, float] = {}
    while len(found) < len(cluster.nodes):
        for node in cluster.nodes:
            if node.name not in found and (stamp := enforced_at(node, offsets[node.name], wanted)):
                found[node.name] = stamp
        if time.monotonic() > deadline:
            raise TimeoutError(f"not every node logged {APPLIED!r} for {wanted}")
        time.sleep(0.01)
    return list(found.values())


def offsets(cluster: Cluster) -> dict[str, int]:
    return {node.name: node.log.stat().st_size for node in cluster.nodes}


def throughput(cluster: Cluster, seconds: int) -> dict[str, Any]:
    client = cluster.add_pod(cluster.nodes[0], "iperf-client", c.TYPE_UNDERLAY,
                             annotations={c.ANNOTATION_IP_FAMILY: "IPv4"})  # fmt: skip
    server = cluster.add_pod(cluster.nodes[1], "iperf-server", c.TYPE_UNDERLAY,
                             annotations={c.ANNOTATION_IP_FAMILY: "IPv4"})  # fmt: skip
    stored = cluster.store.get(Pod, "iperf-server", "default")
    stored.metadata.labels = {"app": "iperf"}
    before = offsets(cluster)
    cluster.store.update(stored)
    wait_enforced(cluster, before)
    none = iperf3_tcp(client.netns, server.netns, server.ipv4, seconds)
    before = offsets(cluster)
    for k in range(100):
        source = f"198.18.{200 + k // 250}.{k % 250 + 1}/32" if k < 99 else f"{client.ipv4}/32"
        spec = {
            "podSelector": {"matchLabels": {"app": "iperf"}},
            "ingress": [{"from": [{"ipBlock": {"cidr": source}}], "ports": [{"port": 5201}]}],
        }
        cluster.store.create(NetworkPolicy(ObjectMeta(name=f"iperf-{k}", namespace="default"),
                                           body={"spec": spec}))  # fmt: skip
    wait_enforced(cluster, before)
    with_policies = iperf3_tcp(client.netns, server.netns, server.ipv4, seconds)
    before = offsets(cluster)
    for k in range(100):
        cluster.store.delete(NetworkPolicy, f"iperf-{k}", "default")
    cluster.delete_pod(client)
    cluster.delete_pod(server)
    wait_enforced(cluster, before)
    report = {
        "no policy": {"gbit_per_second": round(none.gbit_per_second, 2),
                      "retransmits": none.retransmits},
        "100 policies": {"gbit_per_second": round(with_policies.gbit_per_second, 2),
                         "retransmits": with_policies.retransmits},
    }  # fmt: skip
    path = f"{cluster.nodes[0].name} -> {cluster.nodes[1].name}"
    print(f"\niperf3 TCP, underlay pod on {path}, {seconds} s")
    for name, row in report.items():
        print(
            f"  {name:<14}{row['gbit_per_second']:>8.2f} Gbit/s  {row['retransmits']} retransmits"
        )
    ratio = with_policies.bits_per_second / none.bits_per_second if none.bits_per_second else 0.0
    print(f"  ratio         {ratio:>8.2f}")
    return {**report, "ratio": round(ratio, 3)}


def load(cluster: Cluster) -> None:
    def node_of(index: int) -> str:
        return f"vnode-{index % VIRTUAL_NODES}"

    before = offsets(cluster)
    store = cluster.store
    for namespace in namespaces():
        store.create(namespace)
    for item in pods(node_of):
        store.create(item)
    for instance in instances(node_of, lambda i: None):
        store.create(instance)
    for each in policies():
        store.create(each)
    wait_enforced(cluster, before)


def label_changes(cluster: Cluster, changes: int) -> dict[str, Any]:
    every_node, first_node = [], []
    for change in range(changes):
        namespace, name = pod_name(change * 7 % (NAMESPACES * PODS_PER_NAMESPACE))
        current = cluster.store.get(Pod, name, namespace)
        role = current.metadata.labels.get("role")
        current.metadata.labels = {**current.metadata.labels,
                                   "role": "server" if role == "client" else "client"}  # fmt: skip
        before = offsets(cluster)
        written = time.time()
        cluster.store.update(current)
        stamps = wait_enforced(cluster, before)
        every_node.append(max(stamps) - written)
        first_node.append(min(stamps) - written)
    rows = {"first node": summarize_ms(first_node), "every node": summarize_ms(every_node)}
    print_table(
        f"a pod's label change enforced ({len(cluster.nodes)} daemons, "
        f"{NAMESPACES * PODS_PER_NAMESPACE} pods, {NAMESPACES * POLICIES_PER_NAMESPACE} policies); "
        f"target every node <= {TARGETS['label_change_every_node_s']} s (median, p90)",
        rows,
    )
    return {"rows": rows, "p90_every_node_s": round(percentile(every_node, 0.9), 3),
            "median_every_node_s": round(statistics.median(every_node), 3)}  # fmt: skip


def bench_cluster(changes: int, iperf_seconds: int) -> dict[str, Any]:
    with testbed.testbed_run() as run, tempfile.TemporaryDirectory() as directory:
        config = ClusterConfig(resync_period=600.0, daemon_log_level="info")
        with Cluster(run, Path(directory), config) as cluster:
            cluster.create_networks()
            cluster.wait_converged()
            report = {"throughput": throughput(cluster, iperf_seconds)}
            load(cluster)
            report["label_change"] = label_changes(cluster, changes)
            return report


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--local", type=int, default=110, help="pods on the measured node")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--changes", type=int, default=10)
    parser.add_argument("--iperf-seconds", type=int, default=5)
    parser.add_argument("--skip-cluster", action="store_true")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    report: dict[str, Any] = {"targets": TARGETS}
    report["node"] = bench_node(args.local, args.rounds)
    if not args.skip_cluster:
        report["cluster"] = bench_cluster(args.changes, args.iperf_seconds)
    write_json(args.json, report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
