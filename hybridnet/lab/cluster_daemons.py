"""The daemons of a virtual cluster (:mod:`hybridnet.lab.cluster`): one ``hybridnet-daemon``
per node namespace on the cluster's store, with the node datapath on (VTEP and underlay parent
both the node's ``eth0``), logging to a file in the node's directory. They start side by side
and stop side by side: each takes about a second to come up, and seconds to end."""

from __future__ import annotations

import concurrent.futures
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from hybridnet.lab.cluster_model import ClusterConfig, ClusterNode
from hybridnet.lab.errors import TestbedError
from hybridnet.lab.manager import IPAM_NAMESPACE
from hybridnet.lab.processes import Process
from hybridnet.lab.progress import Progress
from hybridnet.rpc.client import DaemonClient, DaemonError

DAEMON_MODULE = "hybridnet.daemon.main"


def argv(node: ClusterNode, store: Path, config: ClusterConfig) -> list[str]:
    """``hybridnet-daemon`` for ``node``: no ``--network``, so each pod's Pod object (its
    annotations) chooses its network."""
    found = [
        sys.executable, "-m", DAEMON_MODULE,
        "--socket", str(node.socket), "--log-level", config.daemon_log_level,
        "--node-name", node.name, "--store", str(store), "--ip-family", config.ip_family,
        "--ipam-namespace", IPAM_NAMESPACE,
        "--vtep-interface", "eth0", "--underlay-interface", "eth0",
    ]  # fmt: skip
    if config.resync_period is not None:
        found += ["--resync-period", str(config.resync_period)]
    return found


def start(
    nodes: Sequence[ClusterNode], store: Path, config: ClusterConfig, progress: Progress
) -> None:
    """Start every node's daemon, then wait for each to be ready."""
    for node in nodes:
        node.daemon = Process(argv(node, store, config), netns=node.host.name, log_path=node.log)
    for node in nodes:
        started = time.monotonic()
        wait_ready(node, config.ready_timeout)
        seconds = time.monotonic() - started
        pid = node.daemon.pid if node.daemon is not None else "?"
        progress.item(f"{node.name}: ready in {seconds:.1f} s (pid {pid})")


def wait_ready(node: ClusterNode, timeout: float) -> None:
    """Until the daemon's CNI STATUS says ready (its informers listed and its datapath
    reconciled once): the positive signal; ``timeout`` is only for a daemon that broke."""
    deadline = time.monotonic() + timeout
    why = "its socket did not appear"
    while time.monotonic() < deadline:
        if node.daemon is None or node.daemon.poll() is not None:
            raise TestbedError(f"{node.name}'s daemon exited:\n{tail(node.log)}")
        if node.socket.exists():
            try:
                status = DaemonClient(str(node.socket), 2.0).status()
            except DaemonError as exc:
                why = str(exc)
            else:
                if status.ready:
                    return
                why = status.reason
        time.sleep(0.05)
    raise TestbedError(f"{node.name}'s daemon not ready ({why}):\n{tail(node.log)}")


def stop(nodes: Sequence[ClusterNode]) -> None:
    """SIGTERM every daemon at once and wait for all (one's informers notice the stop only at
    their next wake-up, seconds later)."""
    daemons = [node.daemon for node in nodes if node.daemon is not None]
    with concurrent.futures.ThreadPoolExecutor(max(len(daemons), 1)) as pool:
        list(pool.map(Process.stop, daemons))
    for node in nodes:
        node.daemon = None


def tail(path: Path, lines: int = 30) -> str:
    """The end of a daemon's log, for an error that says why it did not come up."""
    try:
        text = path.read_text(errors="replace")
    except OSError as exc:
        return f"(no log: {exc})"
    return "\n".join(text.splitlines()[-lines:])
