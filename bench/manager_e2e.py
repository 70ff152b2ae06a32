"""End to end through the real API server: 1,000 bound pods -> all their IPInstances exist.

Starts the test control plane (kube-apiserver + etcd from hack/controlplane) and one
``hybridnet-manager`` process, creates N pods already bound to a node (16 client threads), and
measures the time from the first create to the moment every pod has its IPInstance. Pod
creation alone is the natural baseline (the manager cannot finish before the last pod exists),
so both rates are printed. Target on the 2-core reference machine: >= 100 pods/s end to end.

    python -m bench.manager_e2e [--pods 1000] [--rounds 3] [--json FILE]
"""

from __future__ import annotations

import argparse
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from bench.stats import write_json
from hack.controlplane import ControlPlane
from hybridnet.api.builtin import Pod
from hybridnet.api.meta import ObjectMeta
from hybridnet.api.resources import IPInstance
from hybridnet.lab.manager import Harness
from hybridnet.store.kube import KubeStore

IPAM_NAMESPACE = "bench-ipam"


def one_round(store: KubeStore, pods: int, index: int) -> dict[str, float]:
    """Pods into a fresh network and /21 subnet (2,046 addresses), so rounds never meet."""
    run = uuid.uuid4().hex[:6]
    harness = Harness(store, run)
    namespace = f"bench-{run}"
    harness.namespace(namespace)
    harness.node(f"node-{run}")
    harness.underlay(f"u-{run}")
    harness.subnet(f"s-{run}", f"u-{run}", f"198.18.{64 + index * 8}.0/21")

    def create(number: int) -> None:
        store.create(
            Pod(
                ObjectMeta(name=f"p{number}", namespace=namespace),
                body={
                    "spec": {
                        "nodeName": f"node-{run}",
                        "containers": [{"name": "c", "image": "busybox"}],
                    }
                },
            )
        )

    started = time.perf_counter()
    with ThreadPoolExecutor(16) as pool:
        list(pool.map(create, range(pods)))
    created = time.perf_counter() - started
    while True:
        served = sum(
            1 for i in store.list(IPInstance, IPAM_NAMESPACE).items if i.spec.subnet == f"s-{run}"
        )
        if served >= pods:
            break
        time.sleep(0.1)
    total = time.perf_counter() - started
    return {
        "pods": pods,
        "create_seconds": round(created, 2),
        "end_to_end_seconds": round(total, 2),
        "create_pods_per_second": round(pods / created, 1),
        "end_to_end_pods_per_second": round(pods / total, 1),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pods", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=3, choices=range(1, 21))
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    with ControlPlane() as plane, tempfile.TemporaryDirectory() as tmp:
        plane.install_crds()
        store = KubeStore.from_kubeconfig(plane.kubeconfig_path)
        Harness(store, "x").namespace(IPAM_NAMESPACE)
        log = Path(tmp) / "manager.log"
        with log.open("wb") as out:
            manager = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "hybridnet.manager.main",
                    "--kubeconfig",
                    str(plane.kubeconfig_path),
                    "--namespace",
                    IPAM_NAMESPACE,
                    "--no-leader-elect",
                    "--metrics-address",
                    "",
                    "--log-level",
                    "warning",
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        try:
            rounds = []
            for index in range(args.rounds):
                result = one_round(store, args.pods, index)
                rounds.append(result)
                print(
                    f"round {index + 1}: created {args.pods} pods in {result['create_seconds']} s, "
                    f"all served after {result['end_to_end_seconds']} s",
                    file=sys.stderr,
                )
        finally:
            manager.send_signal(signal.SIGTERM)
            manager.wait(30)
            store.close()
    e2e = statistics.median(r["end_to_end_pods_per_second"] for r in rounds)
    create = statistics.median(r["create_pods_per_second"] for r in rounds)
    print(f"\nmanager end to end, {args.pods} bound pods, median of {args.rounds} rounds")
    print(f"  pod creation alone (baseline): {create:8.1f} pods/s")
    print(f"  all IPInstances written:       {e2e:8.1f} pods/s   (target >= 100)")
    print(f"  ratio end-to-end / creation:   {e2e / create:8.2f}")
    report: dict[str, Any] = {
        "benchmark": "manager_e2e",
        "rounds": rounds,
        "median_end_to_end_pods_per_second": e2e,
        "median_create_pods_per_second": create,
    }
    if args.json:
        write_json(args.json, report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
