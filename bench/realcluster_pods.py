"""Pods of a Deployment from create to all Running on real nodes (kubelet + containerd), per CNI.

A :class:`hack.realcluster.cluster.RealCluster` of ``--nodes`` nodes is built once per CNI
setup; each run creates a Deployment of ``--pods`` busybox pods (spread over the nodes), takes
the time until every one is Running, then deletes it and takes the time until every pod is
gone and every address is released again (the CNI DEL of each). The time is read by polling
the API server every 0.1 s, so figures carry up to that much of it. After the figures, a
table of per-pod phases read from the nodes' logs (:mod:`bench.pod_phases`): where the time
went, per setup.

CNI setups (``--cni``, repeatable; the first is the baseline the others are divided by):
``bridge`` is the reference bridge + host-local chain (:class:`hack.realcluster.cni.
ReferenceBridge`), ``hybridnet`` is hybridnet installed by its Helm chart
(:class:`hack.realcluster.hybridnet.HybridnetChart`). All setups run on the same nodes in one
run: the cluster starts with the first; each next one is installed over it (its
``after_nodes``) once the previous one's runs are done. hybridnet's conflist (00-hybridnet)
sorts before the bridge's (10-lab-bridge) and containerd uses the first, so from its install
on every new pod gets hybridnet's network.

    python -m bench.realcluster_pods [--pods 100] [--nodes 3] [--runs 3] [--cni bridge]
        [--json bench/results/realcluster_pods.json]
"""

from __future__ import annotations

import argparse
import datetime
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench import pod_phases
from bench.stats import write_json
from hack.realcluster.cluster import RealCluster
from hack.realcluster.cni import CniSetup, ReferenceBridge
from hack.realcluster.hybridnet import HybridnetChart
from hack.realcluster.workloads import (
    create,
    delete,
    deployment_manifest,
    pods_with_label,
    wait_for,
    wait_gone,
    wait_running,
)
from hybridnet.lab.netns import testbed_run
from hybridnet.lab.progress import Progress

CNI_SETUPS: dict[str, Callable[[], CniSetup]] = {
    "bridge": ReferenceBridge,
    "hybridnet": HybridnetChart,
}
DEPLOYMENT = "bench"
SELECTOR = f"app={DEPLOYMENT}"


def _released(cluster: RealCluster, setup: CniSetup) -> bool:
    """Whether no node's IPAM still holds an address."""
    return all(not setup.held_addresses(node) for node in cluster.nodes)


def one_run(cluster: RealCluster, setup: CniSetup, pods: int, timeout: float) -> dict[str, Any]:
    with cluster.api() as kube:
        wall = datetime.datetime.now(datetime.UTC)
        began = time.monotonic()
        create(kube, deployment_manifest(DEPLOYMENT, pods))
        running = wait_running(kube, "default", SELECTOR, pods, timeout)
        up = time.monotonic() - began
        nodes = {p.spec.node_name for p in running}
        names = {p.metadata.name for p in running}
        began = time.monotonic()
        delete(kube, "Deployment", DEPLOYMENT)
        wait_gone(kube, "default", SELECTOR, timeout)
        gone = time.monotonic() - began
        wait_for(
            "every address released",
            lambda: True if _released(cluster, setup) else None,
            timeout,
            lambda: str(len(pods_with_label(kube, "default", SELECTOR))),
        )
        released = time.monotonic() - began
    return {
        "create_to_running_s": up,
        "delete_to_gone_s": gone,
        "delete_to_released_s": released,
        "nodes_used": float(len(nodes)),
        "phases": pod_phases.measure(cluster.nodes, names, wall.year, wall.timestamp()),
    }


def summary(setup: CniSetup, samples: list[dict[str, Any]]) -> dict[str, Any]:
    keys = ("create_to_running_s", "delete_to_gone_s", "delete_to_released_s")
    phases = sorted({name for s in samples for name in s["phases"]})
    return {
        "cni": setup.name,
        "runs": samples,
        "phases_median_s": {
            name: round(
                statistics.median(s["phases"][name] for s in samples if name in s["phases"]), 3
            )
            for name in phases
        },
        **{
            key: {
                "median": round(statistics.median(s[key] for s in samples), 3),
                "min": round(min(s[key] for s in samples), 3),
                "max": round(max(s[key] for s in samples), 3),
            }
            for key in keys
        },
    }


def measure_all(
    names: list[str], pods: int, nodes: int, runs: int, timeout: float
) -> list[dict[str, Any]]:
    """Every setup in turn on one cluster (see the module docstring)."""
    setups = [CNI_SETUPS[name]() for name in names]
    results = []
    with testbed_run() as run:
        cluster = RealCluster(
            run, nodes=nodes, cni=setups[0], max_pods=max(110, pods), progress=Progress(sys.stderr)
        )
        with cluster:
            for position, setup in enumerate(setups):
                if position:
                    with cluster.progress.step(f"installing {setup.name} on the same nodes"):
                        for index, node in enumerate(cluster.nodes):
                            setup.install(node, index)
                        setup.after_nodes(cluster)
                        cluster.wait_nodes(ready=True)
                samples: list[dict[str, Any]] = []
                for index in range(runs):
                    sample = one_run(cluster, setup, pods, timeout)
                    print(
                        f"{setup.name} run {index + 1}: {pods} pods Running in "
                        f"{sample['create_to_running_s']:.2f} s, gone in "
                        f"{sample['delete_to_gone_s']:.2f} s",
                        file=sys.stderr,
                    )
                    samples.append(sample)
                results.append(summary(setup, samples))
    return results


def print_phases(results: list[dict[str, Any]]) -> None:
    """Each phase's median over the runs (of the per-pod medians), one column per setup."""
    names = sorted({name for r in results for name in r["phases_median_s"]})
    if not names:
        return
    print("\nper-pod phases, s (median of each run's median over its pods; bench/pod_phases.py)")
    print(f"  {'phase':<34}" + "".join(f"{r['cni'][:22]:>24}" for r in results))
    for name in names:
        cells = "".join(
            f"{r['phases_median_s'][name]:>24.3f}" if name in r["phases_median_s"] else f"{'-':>24}"
            for r in results
        )
        print(f"  {name:<34}{cells}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pods", type=int, default=100, help="replicas (default %(default)s)")
    parser.add_argument("--nodes", type=int, default=3, help="nodes (default %(default)s)")
    parser.add_argument("--runs", type=int, default=3, help="runs per CNI (default %(default)s)")
    parser.add_argument(
        "--cni",
        action="append",
        choices=sorted(CNI_SETUPS),
        help="CNI setup, repeatable; the first is the baseline (default: bridge, hybridnet)",
    )
    parser.add_argument("--timeout", type=float, default=600.0, help=argparse.SUPPRESS)
    parser.add_argument("--json", type=Path, help="also write the report as JSON here")
    args = parser.parse_args()
    if args.pods < 1 or args.runs < 1 or not 1 <= args.nodes <= 20:
        parser.error("--pods and --runs at least 1, --nodes from 1 to 20")
    setups = args.cni or ["bridge", "hybridnet"]
    if len(set(setups)) != len(setups):
        parser.error("each --cni once")
    results = measure_all(setups, args.pods, args.nodes, args.runs, args.timeout)
    baseline = results[0]["create_to_running_s"]["median"]
    print(f"\n{args.pods} pods of a Deployment on {args.nodes} real nodes, {args.runs} runs each")
    print(
        f"  {'cni':<22}{'create->Running s':>19}{'min':>8}{'max':>8}{'delete->gone s':>16}"
        f"{'ratio':>8}"
    )
    for result in results:
        up, gone = result["create_to_running_s"], result["delete_to_gone_s"]
        ratio = up["median"] / baseline if baseline else float("nan")
        print(
            f"  {result['cni']:<22}{up['median']:>19.2f}{up['min']:>8.2f}{up['max']:>8.2f}"
            f"{gone['median']:>16.2f}{ratio:>8.2f}"
        )
    print_phases(results)
    if args.json:
        write_json(
            args.json,
            {
                "benchmark": "realcluster_pods",
                "pods": args.pods,
                "nodes": args.nodes,
                "baseline": results[0]["cni"],
                "results": results,
            },
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
