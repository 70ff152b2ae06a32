"""``python -m hack.realcluster run [--nodes N] [--no-cni]``: a real cluster for people.

Starts a :class:`hack.realcluster.cluster.RealCluster` (the control plane, the scheduler, the
controller manager and N nodes running kubelet + containerd, with the reference bridge chain
unless ``--no-cni``), prints how to reach it, and keeps it until Ctrl-C or SIGTERM, then removes
everything. ``ip netns exec <node namespace> ...`` looks at a node's network; a node's files
(logs, configs, containerd's root) are under the printed work directory.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from collections.abc import Sequence
from types import FrameType

from hack.realcluster.cluster import RealCluster
from hack.realcluster.cni import ReferenceBridge
from hybridnet.lab.netns import testbed_run
from hybridnet.lab.progress import Progress


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m hack.realcluster", description=__doc__.splitlines()[0]
    )
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="start a cluster, keep it until Ctrl-C or SIGTERM")
    run.add_argument("--nodes", type=int, default=3, help="(default %(default)s)")
    run.add_argument("--no-cni", action="store_true", help="no pod network: nodes stay NotReady")
    args = parser.parse_args(argv)
    if not 1 <= args.nodes <= 20:
        parser.error("--nodes: from 1 to 20")
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    with testbed_run() as bed:
        cluster = RealCluster(
            bed,
            nodes=args.nodes,
            cni=None if args.no_cni else ReferenceBridge(),
            install_crds=True,
            progress=Progress(sys.stdout),
        )
        with cluster:
            plane = cluster.plane
            print(f"\nexport KUBECONFIG={plane.kubeconfig_path}")
            print(f"kubectl: {plane.kubectl}")
            print(f"work directory: {cluster.directory}")
            print(f"API server for the nodes: {cluster.api_url_for_nodes}")
            for node in cluster.nodes:
                print(f"  {node.spec.name}: namespace {node.spec.host.name}, {node.directory}")
            print("Ctrl-C or SIGTERM removes it all", flush=True)
            stop.wait()
            print("removing the cluster ...", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
