"""End to end through the real API server: 1,000 bound pods -> all their IPInstances exist.

Starts the test control plane (kube-apiserver + etcd from hack/controlplane) and one
``hybridnet-manager`` process, creates N pods already bound to a node (16 client threads), and
measures the time from the first create to the moment every pod has its IPInstance, as a watch
on the round's IPInstances tells it (the bench itself sends no LIST while it waits, so the API
server's time goes to the pods and the manager). Pod creation alone is the natural baseline
(the manager cannot finish before the last pod exists), so both rates are printed, and how
long after the last create the last IPInstance appeared (the manager's lag). On the 2-core
reference machine kube-apiserver's CPU bounds both rates (about 4 ms of it per pod: the pod,
its IPInstance, their watch events); a manager that keeps pace lags by a fraction of a second.
Target there: >= 300 pods/s end to end.

    python -m bench.manager_e2e [--pods 1000] [--rounds 3] [--workers N] [--json FILE]
"""

from __future__ import annotations

import argparse
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from bench.stats import write_json
from hack.controlplane import ControlPlane
from hybridnet.api import constants as c
from hybridnet.api.builtin import Pod
from hybridnet.api.meta import ObjectMeta
from hybridnet.api.resources import IPInstance
from hybridnet.lab.manager import Harness
from hybridnet.store.kube import KubeStore

IPAM_NAMESPACE = "bench-ipam"
WAIT_SECONDS = 600.0
CLIENTS = 16
"""Threads creating pods, each with a connection of its own."""


class Served:
    """Counts the IPInstances of one subnet as a watch reports them, from ``version`` on."""

    def __init__(self, store: KubeStore, subnet: str, version: str, wanted: int):
        self.store = store
        self.selector = f"{c.LABEL_SUBNET}={subnet}"
        self.version = version
        self.wanted = wanted
        self.names: set[str] = set()
        self.done = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()

    def _watch(self) -> None:
        while len(self.names) < self.wanted:
            events = self.store.watch(
                IPInstance, self.version, IPAM_NAMESPACE, self.selector, timeout_seconds=60
            )
            for event in events:
                self.version = event.object.metadata.resource_version or self.version
                if event.type == "ADDED":
                    self.names.add(event.object.name)
                    if len(self.names) >= self.wanted:
                        break
        self.done.set()


def one_round(store: KubeStore, pods: int, index: int) -> dict[str, float]:
    """Pods into a fresh network and /21 subnet (2,046 addresses), so rounds never meet."""
    run = uuid.uuid4().hex[:6]
    harness = Harness(store, run)
    namespace = f"bench-{run}"
    harness.namespace(namespace)
    harness.node(f"node-{run}")
    harness.underlay(f"u-{run}")
    harness.subnet(f"s-{run}", f"u-{run}", f"198.18.{64 + index * 8}.0/21")
    version = store.list(IPInstance, IPAM_NAMESPACE, f"{c.LABEL_SUBNET}=s-{run}").resource_version
    served = Served(store, f"s-{run}", version, pods)

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
    with ThreadPoolExecutor(CLIENTS) as pool:
        list(pool.map(create, range(pods)))
    created = time.perf_counter() - started
    if not served.done.wait(WAIT_SECONDS):
        raise RuntimeError(f"only {len(served.names)} of {pods} pods served in {WAIT_SECONDS} s")
    total = time.perf_counter() - started
    return {
        "pods": pods,
        "create_seconds": round(created, 2),
        "end_to_end_seconds": round(total, 2),
        "manager_lag_seconds": round(total - created, 2),
        "create_pods_per_second": round(pods / created, 1),
        "end_to_end_pods_per_second": round(pods / total, 1),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pods", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=3, choices=range(1, 21))
    parser.add_argument("--workers", type=int, help="the manager's --workers (its default)")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    with ControlPlane() as plane, tempfile.TemporaryDirectory() as tmp:
        plane.install_crds()
        store = KubeStore.from_kubeconfig(plane.kubeconfig_path, connections=CLIENTS + 4)
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
                    *(["--workers", str(args.workers)] if args.workers else []),
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
    lag = statistics.median(r["manager_lag_seconds"] for r in rounds)
    print(f"\nmanager end to end, {args.pods} bound pods, median of {args.rounds} rounds")
    print(f"  pod creation alone (baseline): {create:8.1f} pods/s")
    print(f"  all IPInstances written:       {e2e:8.1f} pods/s   (target >= 300)")
    print(f"  ratio end-to-end / creation:   {e2e / create:8.2f}")
    print(f"  served after the last create:  {lag:8.2f} s")
    report: dict[str, Any] = {
        "benchmark": "manager_e2e",
        "rounds": rounds,
        "median_end_to_end_pods_per_second": e2e,
        "median_create_pods_per_second": create,
        "median_manager_lag_seconds": lag,
    }
    if args.json:
        write_json(args.json, report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
