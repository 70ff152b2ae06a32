"""``make demo``: a virtual hybridnet cluster on this machine, in network namespaces it makes.

Three node namespaces on a fabric (a switch, a gateway, a host outside behind it), each running
``hybridnet-daemon`` with its node datapath on one embedded SQLite store (no Kubernetes, no
Go); an underlay network (untagged on the fabric) and an overlay network (VXLAN); an overlay
and an underlay pod on every node, attached by the real plugin as a container runtime runs it
(:mod:`hybridnet.lab.cluster`). It prints the pods, networks and nodes, pings between every
pair of pods over IPv4 and IPv6, shows the source address two flows arrive with, and removes
everything, also after a failure, Ctrl-C or SIGTERM. Exit 1 when any check fails (130 when
interrupted). The root namespace is not changed.
"""

from __future__ import annotations

import signal
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType

from hybridnet import lab
from hybridnet.lab.cluster import OUTSIDE_V4, Cluster, ClusterPod
from hybridnet.lab.cluster_report import report
from hybridnet.lab.cni_runtime import CniPluginError
from hybridnet.lab.errors import TestbedError
from hybridnet.lab.netns import Namespace
from hybridnet.lab.progress import Progress
from hybridnet.lab.reach import ping_matrix, render_matrix
from hybridnet.store.errors import StoreError

ECHO_PORT = 7000


class Interrupted(Exception):
    """SIGINT or SIGTERM arrived: stop and clean up."""


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise Interrupted(signal.Signals(signum).name)


@contextmanager
def _signals_deferred() -> Iterator[None]:
    """Teardown runs to its end: a second Ctrl-C must not leave half a cluster behind."""
    previous = {s: signal.signal(s, signal.SIG_IGN) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def _seen_source(sender: ClusterPod, receiver: Namespace, address: str, port: int) -> str:
    """The source address a TCP echo server on ``address`` in ``receiver`` saw ``sender``
    come from."""
    server = lab.start_tcp_echo_server(receiver, address, port)
    try:
        return lab.tcp_echo(sender.netns, address, port, "hello").seen_source
    finally:
        server.stop()
        receiver.processes.remove(server)


def run_demo(cluster: Cluster, progress: Progress) -> list[str]:
    """Build, show and check the cluster; returns the failed checks."""
    cluster.up()
    cluster.create_networks()
    cluster.wait_converged()
    pods = cluster.add_pods_of_both_kinds()
    print("\n" + "\n\n".join(report(cluster.layout(), cluster.store)) + "\n")

    with progress.step(f"ping matrix between {len(pods)} pods, IPv4 and IPv6"):
        reaches = ping_matrix(pods)
    print("\n" + render_matrix(pods, reaches) + "\n")
    failures = [f"ping {r.source} -> {r.target} IPv{r.version}" for r in reaches if not r.ok]

    by_name = {p.name: p for p in pods}
    sender, receiver = by_name["overlay-1"], by_name["underlay-2"]
    for version in (4, 6):
        seen = _seen_source(sender, receiver.netns, receiver.address(version), ECHO_PORT)
        own = sender.address(version)
        verdict = "its own address: no NAT" if seen == own else f"NOT its own address {own}"
        print(f"flow {sender.name} ({sender.node.name}, {own}) -> {receiver.name} "
              f"({receiver.node.name}, {receiver.address(version)}): the receiver saw {seen}, "
              f"{verdict}")  # fmt: skip
        if seen != own:
            failures.append(f"{sender.name} -> {receiver.name} IPv{version} seen as {seen}")

    node_address = sender.node.host.ipv4
    seen = _seen_source(sender, cluster.outside, OUTSIDE_V4, ECHO_PORT)
    verdict = "masqueraded (autoNatOutgoing)" if seen == node_address else "NOT masqueraded"
    print(f"flow {sender.name} -> outside host {OUTSIDE_V4}: seen as {seen}, its node's "
          f"address: {verdict}\n")  # fmt: skip
    if seen != node_address:
        failures.append(f"{sender.name} -> outside seen as {seen}, not {node_address}")
    return failures


def main() -> int:
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, _interrupt)
    progress = Progress(sys.stdout)
    failures: list[str] = []
    status = 0
    try:
        with lab.testbed_run() as run, tempfile.TemporaryDirectory(prefix="hybridnet-demo-") as tmp:
            cluster = Cluster(run, Path(tmp), progress=progress)
            try:
                failures = run_demo(cluster, progress)
            finally:
                with _signals_deferred(), progress.step("teardown: daemons, namespaces, store"):
                    cluster.down()
    except Interrupted as exc:
        print(f"interrupted ({exc}): everything removed", file=sys.stderr)
        status = 130
    except (TestbedError, CniPluginError, StoreError) as exc:
        failures.append(f"{type(exc).__name__}: {exc}")
    print("leftovers:", ", ".join(lab.leftovers()) or "none")
    if failures:
        print(f"FAILED ({len(failures)}):\n  " + "\n  ".join(failures), file=sys.stderr)
        return 1
    if status == 0:
        print("all checks passed")
    return status


if __name__ == "__main__":
    sys.exit(main())
