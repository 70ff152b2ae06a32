"""``python -m hybridnet.lab cluster up|status|down``: a virtual cluster kept between commands.

``up`` builds the cluster of :mod:`hybridnet.lab.cluster` in a run of its own, with both
networks and (unless ``--no-pods``) an overlay and an underlay pod on every node, writes its
layout to ``DIR/cluster.json`` and leaves it running: a keeper process inside the run's switch
namespace holds the run's lock, so stale-run cleanup leaves a cluster that is up alone, and
removes everything of one whose processes died. ``status`` prints the nodes, networks and pods
from the store and the kernel. ``down`` ends the processes inside the run's namespaces (by
PID; they are the daemons and the keeper), removes the namespaces and the lock, then ``DIR``.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import sys
import time
from pathlib import Path
from typing import Any

from hybridnet.lab.cluster import OUTSIDE_V4, OUTSIDE_V6, Cluster, ClusterConfig, ClusterLayout
from hybridnet.lab.cluster_report import report
from hybridnet.lab.errors import TestbedError
from hybridnet.lab.netns import TestbedRun, ip, list_namespaces, remove_stale_runs
from hybridnet.lab.progress import Progress
from hybridnet.store.sqlite import SQLiteStore

DEFAULT_DIR = Path(os.environ.get("HYBRIDNET_CLUSTER_DIR", "/run/hybridnet-lab/cluster"))
STATE_FILE = "cluster.json"
STOP_BOUND = 10.0
"""Seconds the run's processes get to exit after SIGTERM before SIGKILL (a daemon takes well
under one)."""


def _state_path(directory: Path) -> Path:
    return directory / STATE_FILE


def _load(directory: Path) -> dict[str, Any] | None:
    path = _state_path(directory)
    if not path.exists():
        return None
    state: dict[str, Any] = json.loads(path.read_text())
    return state


def _save(directory: Path, state: dict[str, Any]) -> None:
    path = _state_path(directory)
    temporary = path.with_suffix(".tmp")
    temporary.write_text(json.dumps(state, indent=2) + "\n")
    temporary.replace(path)


def _run_namespaces(prefix: str) -> list[str]:
    return [n for n in list_namespaces() if n.startswith(prefix + "-")]


def up(directory: Path, config: ClusterConfig, pods: bool) -> int:
    """Build and leave running; 1 (and nothing made) when a cluster is already up there."""
    state = _load(directory)
    if state is not None and _run_namespaces(state["prefix"]):
        print(f"a cluster is already up in {directory} (run {state['prefix']}): "
              "`cluster down` first", file=sys.stderr)  # fmt: skip
        return 1
    if state is None and directory.exists() and any(directory.iterdir()):
        print(f"{directory} is not empty and holds no cluster: choose another --dir",
              file=sys.stderr)  # fmt: skip
        return 1
    if state is not None:  # what a dead cluster left: its namespaces are already gone
        shutil.rmtree(directory)
    remove_stale_runs()
    directory.mkdir(parents=True, exist_ok=True)
    run = TestbedRun()
    _save(directory, {"prefix": run.prefix, "layout": None, "keeper": None})
    cluster = Cluster(run, directory, config, Progress(sys.stdout))
    try:
        cluster.up()
        cluster.create_networks()
        cluster.wait_converged()
        if pods:
            cluster.add_pods_of_both_kinds()
        layout = cluster.layout()
        _save(directory, {"prefix": run.prefix, "layout": layout.to_json(), "keeper": None})
        keeper = cluster.leave_running()
    except BaseException:
        cluster.down()
        run.close()
        shutil.rmtree(directory, ignore_errors=True)
        raise
    _save(directory, {"prefix": run.prefix, "layout": layout.to_json(), "keeper": keeper})
    _print_report(layout)
    print(f"\ncluster {run.prefix} is up; state in {directory}; outside host {OUTSIDE_V4} "
          f"{OUTSIDE_V6}")  # fmt: skip
    first = next(iter(layout.nodes.values()))
    print(f"  ip netns exec {first} COMMAND    runs COMMAND on node1 (pods: {layout.prefix}-pod-*)")
    print(f"  python -m hybridnet.lab cluster status|down --dir {directory}")
    return 0


def _print_report(layout: ClusterLayout) -> None:
    store = SQLiteStore(layout.store)
    try:
        print("\n\n".join(report(layout, store)))
    finally:
        store.close()


def status(directory: Path) -> int:
    """The tables; 1 when no cluster is up in ``directory``."""
    state = _load(directory)
    if state is None or state["layout"] is None:
        print(f"no cluster in {directory}", file=sys.stderr)
        return 1
    layout = ClusterLayout.from_json(state["layout"])
    alive = _run_namespaces(layout.prefix)
    print(f"cluster {layout.prefix}: {len(alive)} namespaces, keeper pid {state['keeper']}, "
          f"state in {directory}\n")  # fmt: skip
    _print_report(layout)
    return 0 if alive else 1


def down(directory: Path) -> int:
    """Remove the cluster in ``directory`` (whatever is left of it) and ``directory``."""
    state = _load(directory)
    if state is None:
        print(f"no cluster in {directory}")
        return 0
    prefix = state["prefix"]
    found = _run_namespaces(prefix)
    pids = {int(p) for n in found for p in ip("netns", "pids", n, check=False).stdout.split()}
    keeper = {state["keeper"]} & pids
    # The daemons first, while the keeper still holds the run: stale-run cleanup elsewhere
    # must not take the run over meanwhile. Then the keeper, and its lock at once.
    _end_processes(pids - keeper)
    _end_processes(keeper)
    try:
        run = TestbedRun(prefix)
    except BlockingIOError as exc:
        raise TestbedError(f"run {prefix} is still held by a process outside it") from exc
    run.close()
    shutil.rmtree(directory)
    print(f"cluster {prefix} removed: {len(found)} namespaces, {directory}")
    return 0


def _end_processes(pids: set[int]) -> None:
    """SIGTERM ``pids`` (processes inside the run's namespaces: only the lab starts any
    there), wait until they are gone, SIGKILL what lingers."""
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + STOP_BOUND
    while time.monotonic() < deadline and any(_exists(p) for p in pids):
        time.sleep(0.05)
    for pid in (p for p in pids if _exists(p)):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def _exists(pid: int) -> bool:
    """Alive (not yet reaped and not a zombie)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"
