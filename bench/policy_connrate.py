"""New TCP connections per second from one pod to another through 0, 100 and 1,000
NetworkPolicies selecting the server pod, in one run of the virtual cluster.

Per-packet cost of the policy table shows on new connections: an established flow is accepted
by the table's first rule (conntrack), so iperf3's throughput (bench/policy_apply.py) hides
it, while a connection's SYN walks the server's whole ingress chain. Two nodes with their real
daemons on one embedded store, an underlay pod on each (IPv4). The policies of the largest
case exist throughout; the server's label ``connrate=N`` makes N of them select it (one label
change, enforced on both nodes before a run). Each allows TCP to the server's port from one
``/32``: all from addresses that send nothing, but ``connrate-zz-client``, which allows the
client and whose rule sorts last in the chain (its position is read from the kernel's table
and printed), so a SYN passes every other rule before its own.

The client is a connect/close loop (this file's ``connect`` command, run in the client pod by
this interpreter): a blocking ``connect`` (the handshake done, so the SYN went through the
server's chain), then ``close`` with ``SO_LINGER`` 0 (an RST: no TIME_WAIT holding the
client's ports, and conntrack keeps the entry 10 s instead of 2 minutes); the server
(``serve``) accepts and closes. A round is one run of ``--seconds`` per case, the order rotating
from round to round. Printed per case: the median rate of ``--runs`` rounds and its range,
failed connects, microseconds per connection at the median, the rules in the server's chain
and in its node's table, the client rule's position, and the ratio to the 0-policy median of
the same rounds. Connection tracking's table is global (shared with the root namespace), so
before each run the bench waits until the nodes' entries of earlier runs have mostly expired.
Prints figures, asserts nothing.

    python -m bench.policy_connrate [--runs 5] [--seconds 1] [--cases 0,100,1000] [--json FILE]
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import os
import socket
import statistics
import struct
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench.policy_apply import offsets, wait_enforced
from bench.stats import write_json
from hybridnet import lab as testbed
from hybridnet.api import constants as c
from hybridnet.api.builtin import NetworkPolicy, Pod
from hybridnet.api.meta import ObjectMeta
from hybridnet.lab.cluster import Cluster, ClusterConfig, ClusterNode, ClusterPod
from hybridnet.netlink import nftables, ns

ROOT = Path(__file__).resolve().parent.parent
PORT = 5301
NAMESPACE = "default"
CASE_LABEL = "connrate"
CLIENT_POLICY = "connrate-zz-client"
OTHER_SOURCES = ipaddress.ip_network("198.18.200.0/21")
"""Where the other policies' /32s come from: test addresses nothing in the bench uses."""
TABLE = "hybridnet-policy"
CONNECT_TIMEOUT = 1.0
"""A handshake here takes well under a millisecond; one that takes a second lost its SYN and
counts as a failure (printed), not as a slow connection."""
CONNTRACK_CEILING = 50_000
"""Entries the nodes may still hold before a run starts (a run adds about one per connection
and node; the kernel's limit, for every namespace together, was 262,144 here)."""
CONNTRACK_WAIT = 60.0
SERVER_READY = 20.0


# --------------------------------------------------------------------------- inside the pods


def serve(port: int) -> None:
    """Accept and close, for ever (stopped by its PID)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as listener:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("0.0.0.0", port))  # noqa: S104 (inside the server pod's namespace)
        listener.listen(4096)
        print("ready", flush=True)
        while True:
            conn, _ = listener.accept()
            conn.close()


def connect(address: str, port: int, seconds: float) -> dict[str, float]:
    """Connections opened (handshake done) and reset, one after another, for ``seconds``."""
    target = (address, port)
    reset = struct.pack("ii", 1, 0)
    done = failures = 0
    started = time.perf_counter()
    deadline = started + seconds
    while time.perf_counter() < deadline:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, reset)
        sock.settimeout(CONNECT_TIMEOUT)
        try:
            sock.connect(target)
            done += 1
        except OSError:
            failures += 1
        finally:
            sock.close()
    return {"connections": done, "failures": failures, "seconds": time.perf_counter() - started}


# --------------------------------------------------------------------------- the cluster


def this_module(*args: str) -> list[str]:
    return [sys.executable, "-m", "bench.policy_connrate", *args]


def module_env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT)}


def policies(cases: Sequence[int], client_ipv4: str) -> list[NetworkPolicy]:
    """For the largest case N: the client's policy and N-1 others; the label ``connrate=K``
    of the server is selected by the client's (K > 0) and by the first K-1 others."""
    found = [_allowing(CLIENT_POLICY, f"{client_ipv4}/32", [n for n in cases if n > 0])]
    for index in range(max(cases) - 1):
        source = f"{OTHER_SOURCES.network_address + index + 1}/32"
        selected = [n for n in cases if index < n - 1]
        found.append(_allowing(f"connrate-{index:04d}", source, selected))
    return found


def _allowing(name: str, cidr: str, cases: Sequence[int]) -> NetworkPolicy:
    selector = {"key": CASE_LABEL, "operator": "In", "values": [str(n) for n in cases]}
    spec = {
        "podSelector": {"matchExpressions": [selector]},
        "ingress": [{"from": [{"ipBlock": {"cidr": cidr}}], "ports": [{"port": PORT}]}],
    }
    return NetworkPolicy(ObjectMeta(name=name, namespace=NAMESPACE), body={"spec": spec})


def conntrack_entries(node: ClusterNode) -> int:
    done = node.host.exec(["cat", "/proc/sys/net/netfilter/nf_conntrack_count"])
    return int(done.stdout.strip() or 0)


def wait_conntrack(nodes: Sequence[ClusterNode]) -> None:
    """Until the nodes hold fewer than CONNTRACK_CEILING entries (earlier runs' expire 10 s
    after their reset), or CONNTRACK_WAIT passed (then the run starts anyway: the ceiling is
    far below the kernel's limit)."""
    deadline = time.monotonic() + CONNTRACK_WAIT
    while sum(map(conntrack_entries, nodes)) > CONNTRACK_CEILING:
        if time.monotonic() > deadline:
            return
        time.sleep(0.5)


def table_rules(node: ClusterNode) -> tuple[int, int, int | None]:
    """The node's policy table: its rules, the rules of the server's ingress chain (the only
    pod chain), and where in that chain the client's allowing rule is (1-based)."""
    listing = ns.run_inside(node.host.path, lambda: nftables.list_table("inet", TABLE)) or []
    rules = [item["rule"] for item in listing if "rule" in item]
    chain = [r for r in rules if str(r.get("chain", "")).startswith("ingress-")]
    position = next(
        (i for i, r in enumerate(chain, 1) if CLIENT_POLICY in str(r.get("comment", ""))), None
    )
    return len(rules), len(chain), position


def measure(
    client: ClusterPod, server: ClusterPod, nodes: Sequence[ClusterNode], seconds: float
) -> dict[str, float]:
    wait_conntrack(nodes)
    done = client.netns.exec(
        this_module("connect", server.ipv4, str(PORT), str(seconds)),
        env=module_env(),
        timeout=seconds + 60,
    )
    result: dict[str, float] = json.loads(done.stdout)
    return result


def select(cluster: Cluster, server: ClusterPod, case: int) -> None:
    """Label the server for ``case`` and wait until every node enforces it."""
    stored = cluster.store.get(Pod, server.name, NAMESPACE)
    wanted = {CASE_LABEL: str(case)}
    if stored.metadata.labels == wanted:
        return  # no new inputs: no daemon logs them again
    before = offsets(cluster)
    stored.metadata.labels = wanted
    cluster.store.update(stored)
    wait_enforced(cluster, before)


def bench(cases: Sequence[int], runs: int, seconds: float) -> dict[str, Any]:
    with testbed.testbed_run() as run, tempfile.TemporaryDirectory() as directory:
        config = ClusterConfig(nodes=2, resync_period=600.0)
        with Cluster(run, Path(directory), config) as cluster:
            cluster.create_networks()
            cluster.wait_converged()
            v4 = {c.ANNOTATION_IP_FAMILY: "IPv4"}
            client = cluster.add_pod(cluster.nodes[0], "connrate-client", c.TYPE_UNDERLAY,
                                     annotations=v4)  # fmt: skip
            server = cluster.add_pod(cluster.nodes[1], "connrate-server", c.TYPE_UNDERLAY,
                                     annotations=v4)  # fmt: skip
            before = offsets(cluster)
            for item in policies(cases, client.ipv4):
                cluster.store.create(item)
            wait_enforced(cluster, before)
            process = server.netns.spawn(this_module("serve", str(PORT)), env=module_env())
            try:
                process.wait_for_line("^ready$", timeout=SERVER_READY)
                return rounds(cluster, (client, server), cases, runs, seconds)
            finally:
                process.stop()


def rounds(
    cluster: Cluster,
    pods: tuple[ClusterPod, ClusterPod],
    cases: Sequence[int],
    runs: int,
    seconds: float,
) -> dict[str, Any]:
    """``runs`` rounds of one run per case, the order rotating from round to round (a slow
    moment of this shared machine does not always fall on the same case)."""
    client, server = pods
    samples: dict[int, list[dict[str, float]]] = {n: [] for n in cases}
    sizes: dict[int, tuple[int, int, int | None]] = {}
    for number in range(runs):
        for case in [*cases[number % len(cases) :], *cases[: number % len(cases)]]:
            select(cluster, server, case)
            sizes.setdefault(case, table_rules(server.node))
            samples[case].append(measure(client, server, cluster.nodes, seconds))
    path = f"{client.node.name} -> {server.node.name}"
    print(f"\nnew TCP connections per second, underlay pod on {path} (IPv4), median of {runs} "
          f"runs of {seconds} s per case; N policies select the server")  # fmt: skip
    print(f"  {'policies':>8}{'median/s':>10}{'min/s':>8}{'max/s':>8}{'failed':>8}"
          f"{'us/conn':>9}{'chain rules':>13}{'table rules':>13}{'client at':>11}"
          f"{'ratio':>8}")  # fmt: skip
    rows: dict[str, Any] = {}
    baseline = 0.0
    for case in cases:
        rates = [s["connections"] / s["seconds"] for s in samples[case]]
        median = statistics.median(rates)
        baseline = baseline or median
        table, chain, position = sizes[case]
        row = {
            "median_per_second": round(median), "min_per_second": round(min(rates)),
            "max_per_second": round(max(rates)),
            "failures": int(sum(s["failures"] for s in samples[case])),
            "server_chain_rules": chain, "table_rules": table, "client_rule_position": position,
            "us_per_connection": round(1e6 / median, 1) if median else None,
            "ratio": round(median / baseline, 3),
        }  # fmt: skip
        rows[f"{case} policies"] = row
        print(f"  {case:>8}{row['median_per_second']:>10}{row['min_per_second']:>8}"
              f"{row['max_per_second']:>8}{row['failures']:>8}"
              f"{row['us_per_connection'] or '-':>9}{chain:>13}{table:>13}"
              f"{position or '-':>11}{row['ratio']:>8.3f}")  # fmt: skip
    return rows


def main(argv: Sequence[str] | None = None) -> int:
    words = list(sys.argv[1:] if argv is None else argv)
    if words[:1] == ["serve"]:
        serve(int(words[1]))
        return 0
    if words[:1] == ["connect"]:
        print(json.dumps(connect(words[1], int(words[2]), float(words[3]))), flush=True)
        return 0
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=1.0, help="length of one run")
    parser.add_argument("--cases", default="0,100,1000", help="policy counts, comma-separated")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(words)
    cases = sorted({int(word) for word in args.cases.split(",")})
    if cases[0] != 0 or args.runs < 1 or args.seconds <= 0:
        parser.error("the cases include 0 (the baseline), runs >= 1 and seconds > 0")
    write_json(args.json, {"cases": bench(cases, args.runs, args.seconds)})
    return 0


if __name__ == "__main__":
    sys.exit(main())
