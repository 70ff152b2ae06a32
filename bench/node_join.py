"""Node join -> every other node's VXLAN FDB updated, and node leave -> its entries gone, with
real hybridnet-daemon processes on one shared embedded store.

K node namespaces of the lab's fabric (hybridnet/lab/fabric.py) run ``hybridnet-daemon`` on ONE
shared SQLite store holding the overlay network ``pods`` (VXLAN, VNI 5; the daemons' default
resync period, so what is measured is the watch-driven path, not the resync). One more node
namespace is the one that joins. A node's FDB entries on another node are its flood entry
(00:00:00:00:00:00) and its unicast entry (its VTEP MAC), both ``dst`` its VTEP address; the
join is done on a node when both are there, everywhere when the last node has them.

Two ways of joining, each repeated (one warm-up first, not counted):

* ``daemon``: the real way. A daemon is started in the joining namespace (``--log-level
  info``). The start is the earlier of two moments, both after the NodeInfo's commit: the
  stamp (ms) of the daemon's own "nodeinfo created" log line, written as ``create`` returns,
  and the delivery of that NodeInfo to the bench's own watch of the store (the wake-up the
  other daemons' informers get too). The object's creationTimestamp has only second
  resolution. Both moments trail the commit, usually by a few ms, rarely by ten or more
  on a loaded machine (a first node done "before" the start shows it), so these figures
  may be that much short; ``its log -> bench watch`` prints how far the two moments differ.
  To leave, the daemon is stopped and its NodeInfo deleted (a daemon does not delete its
  NodeInfo when it exits).
* ``written``: the bench writes a NodeInfo the way a daemon would (a VTEP address on the
  fabric with no host behind it, a made-up MAC) and deletes it: the reconcile path alone. The
  start is taken just before the write, so these figures include the write (``create``'s
  own time is printed, and its delivery to the bench's watch).

The end on each node is read from ``bridge -timestamp monitor fdb`` running in each node
namespace: event-driven (no polling), stamped by ``bridge`` in microseconds as each netlink
notification arrives. Printed: median and p90 (ms) of join and leave to the last node and to
the first node, beside the resync period. Prints figures, asserts nothing.

    python -m bench.node_join [--nodes 4] [--joins 20] [--json FILE]
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import re
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.stats import print_table, summarize_ms, write_json
from hybridnet import lab
from hybridnet.api.meta import ObjectMeta
from hybridnet.api.resources import NodeInfo, NodeInfoSpec, VTEPInfo
from hybridnet.daemon.worker import DEFAULT_RESYNC_PERIOD
from hybridnet.lab import daemon as harness
from hybridnet.lab import perf
from hybridnet.lab.processes import Process
from hybridnet.store.errors import StoreError
from hybridnet.store.sqlite import SQLiteStore

OVERLAY_CIDR = "198.19.90.0/24"
FLOOD_MAC = "00:00:00:00:00:00"
WRITTEN_NAME, WRITTEN_VTEP, WRITTEN_MAC = "written-node", "198.18.0.200", "02:00:5e:10:00:c8"
"""The NodeInfo the bench writes: an address on the fabric no namespace holds."""
BOUND = 60.0
"""How long one join or leave may take before the bench gives up (a stuck daemon), far above
anything measured; never waited for when the entries arrive sooner."""
DAEMON_FLAGS = ("--ip-family", "IPv4", "--log-level", "warning")


# --------------------------------------------------------------------------- the store's side


class NodeInfoWatch:
    """The bench's own watch of the store's NodeInfos, in a thread: each event with the
    wall-clock moment it was delivered."""

    def __init__(self, path: Path):
        self.store = SQLiteStore(path)
        self.events: list[tuple[float, str, NodeInfo]] = []
        self.failure: StoreError | None = None
        self._changed = threading.Condition()
        since = self.store.list(NodeInfo).resource_version
        self._thread = threading.Thread(target=self._follow, args=(since,), daemon=True)
        self._thread.start()

    def _follow(self, since: str) -> None:
        try:
            for event in self.store.watch(NodeInfo, since):
                with self._changed:
                    self.events.append((time.time(), event.type, event.object))
                    self._changed.notify_all()
        except StoreError as exc:  # closed by stop(), or a real failure the waiter reports
            with self._changed:
                self.failure = exc
                self._changed.notify_all()

    def wait_for_vtep(self, name: str, after: int) -> tuple[float, VTEPInfo]:
        """The first event from index ``after`` on that shows ``name`` with a VTEP."""
        deadline = time.monotonic() + BOUND
        with self._changed:
            while True:
                for at, kind, info in self.events[after:]:
                    vtep = info.spec.vtep_info
                    if kind != "DELETED" and info.name == name and vtep is not None:
                        return at, vtep
                if self.failure is not None:
                    raise lab.TestbedError(f"the bench's watch ended: {self.failure}")
                if time.monotonic() > deadline:
                    raise lab.TestbedError(f"no NodeInfo {name} with a VTEP within {BOUND}s")
                self._changed.wait(0.5)

    def stop(self) -> None:
        self.store.close()
        self._thread.join(10)


# --------------------------------------------------------------------------- the kernels' side


def node_entries(vtep: VTEPInfo) -> set[tuple[str, str]]:
    """The (mac, dst) of a node's entries in the others' FDBs: flood and unicast."""
    if not vtep.ip or not vtep.mac:
        raise lab.TestbedError(f"a VTEP without its address or MAC: {vtep}")
    return {(FLOOD_MAC, vtep.ip), (vtep.mac.lower(), vtep.ip)}


def wait_for_entries(
    monitors: list[perf.FdbMonitor], wanted: set[tuple[str, str]], deleted: bool, since: float
) -> list[float]:
    """For each node, the moment the last of ``wanted`` (mac, dst) was added (or deleted)
    there, from events stamped at or after ``since``. The monitors' files are re-read every
    10 ms; the moments are bridge's own stamps, so that interval does not change them."""
    deadline = time.monotonic() + BOUND
    while True:
        moments = []
        for monitor in monitors:
            seen: dict[tuple[str, str], float] = {}
            for event in monitor.events():
                key = (event.mac.lower(), event.dst or "")
                if event.at >= since and event.deleted == deleted and key in wanted:
                    seen.setdefault(key, event.at)
            if len(seen) == len(wanted):
                moments.append(max(seen.values()))
        if len(moments) == len(monitors):
            return moments
        if time.monotonic() > deadline:
            what = "removed" if deleted else "added"
            raise lab.TestbedError(
                f"{sorted(wanted)} {what} on {len(moments)} of {len(monitors)} nodes in {BOUND}s"
            )
        time.sleep(0.01)


# --------------------------------------------------------------------------- one join, one leave


@dataclasses.dataclass
class Timings:
    """Seconds, one entry per counted join."""

    join_last: list[float] = dataclasses.field(default_factory=list)
    """From the NodeInfo to the last node's entries; ``_first``: to the first node's."""
    join_first: list[float] = dataclasses.field(default_factory=list)
    leave_last: list[float] = dataclasses.field(default_factory=list)
    leave_first: list[float] = dataclasses.field(default_factory=list)
    extra: dict[str, list[float]] = dataclasses.field(default_factory=dict)

    def add(self, key: str, seconds: float) -> None:
        self.extra.setdefault(key, []).append(seconds)

    def record(self, join: tuple[float, list[float]], leave: tuple[float, list[float]]) -> None:
        (joined, join_at), (left, leave_at) = join, leave
        self.join_last.append(max(join_at) - joined)
        self.join_first.append(min(join_at) - joined)
        self.leave_last.append(max(leave_at) - left)
        self.leave_first.append(min(leave_at) - left)


@dataclasses.dataclass
class Cluster:
    """The K nodes' monitors, the joining namespace, and the bench's handles on the store."""

    joiner: lab.Node
    store_path: Path
    store: SQLiteStore
    watch: NodeInfoWatch
    monitors: list[perf.FdbMonitor]
    directory: Path

    def joined(self, vtep: VTEPInfo, since: float) -> list[float]:
        return wait_for_entries(self.monitors, node_entries(vtep), False, since)

    def leave(self, name: str, vtep: VTEPInfo) -> tuple[float, list[float]]:
        """Delete ``name``'s NodeInfo; when it went and when its entries went on each node."""
        left = time.time()
        self.store.delete(NodeInfo, name)
        return left, wait_for_entries(self.monitors, node_entries(vtep), True, left)


def written_join(cluster: Cluster, timings: Timings | None) -> None:
    vtep = VTEPInfo(ip=WRITTEN_VTEP, mac=WRITTEN_MAC, local_ips=[WRITTEN_VTEP])
    after = len(cluster.watch.events)
    joined = time.time()
    cluster.store.create(NodeInfo(ObjectMeta(name=WRITTEN_NAME), NodeInfoSpec(vtep_info=vtep)))
    written = time.time()
    delivered, _ = cluster.watch.wait_for_vtep(WRITTEN_NAME, after)
    join = joined, cluster.joined(vtep, joined)
    leave = cluster.leave(WRITTEN_NAME, vtep)
    if timings is not None:
        timings.record(join, leave)
        timings.add("create() call", written - joined)
        timings.add("create() -> bench watch", delivered - joined)


def daemon_join(cluster: Cluster, timings: Timings | None) -> None:
    name = "joiner"
    socket = cluster.directory / name / "run" / "daemon.sock"
    argv = ["--node-name", name, "--store", str(cluster.store_path)]
    argv += ["--network", harness.POD_NETWORK, "--vtep-interface", "eth0", "--ip-family", "IPv4"]
    after = len(cluster.watch.events)
    started = time.time()
    process = harness.start_daemon(cluster.joiner, socket, *argv, "--log-level", "info")
    try:
        logged = published_at(process)
        delivered, vtep = cluster.watch.wait_for_vtep(name, after)
        # Both moments come after the write's commit: the earlier is the closer.
        joined = min(logged, delivered)
        # Events from the daemon's start on: the others may act before either moment.
        join = joined, cluster.joined(vtep, started)
    finally:
        stop(cluster.joiner, process)
    leave = cluster.leave(name, vtep)
    if timings is not None:
        timings.record(join, leave)
        timings.add("daemon start -> NodeInfo", joined - started)
        timings.add("its log -> bench watch", delivered - logged)


PUBLISHED = re.compile(r'"msg": "nodeinfo (created|updated)".*"spec": "VTEP ')


def published_at(daemon: Process) -> float:
    """When the daemon wrote its NodeInfo with a VTEP: the stamp (ms) of its own log line,
    written just after the store's ``create`` (or ``update``) returned."""
    line = json.loads(daemon.wait_for_line(PUBLISHED.pattern, timeout=BOUND))
    return datetime.datetime.fromisoformat(line["ts"]).timestamp()


def stop(node: lab.Namespace, process: Process) -> None:
    process.stop()
    node.processes.remove(process)


# --------------------------------------------------------------------------- the run


def full_mesh(nodes: list[lab.Node], store: SQLiteStore) -> None:
    """Wait until every node's kernel has every other node's entries: the starting point."""
    deadline = time.monotonic() + BOUND
    while time.monotonic() < deadline:
        vteps = [i.spec.vtep_info for i in store.list(NodeInfo).items if i.spec.vtep_info]
        if len(vteps) == len(nodes):
            wanted = set().union(*(node_entries(v) for v in vteps))
            # A node has no entries of its own: exactly its two are missing.
            if all(len(wanted - fdb_of(node)) == 2 for node in nodes):
                return
        time.sleep(0.1)
    raise lab.TestbedError(f"the {len(nodes)} nodes did not reach a full mesh in {BOUND}s")


def fdb_of(node: lab.Node) -> set[tuple[str, str]]:
    """(mac, dst) of every FDB entry in the node's kernel."""
    shown = node.exec(["bridge", "-j", "fdb", "show"]).stdout
    return {(e["mac"].lower(), e.get("dst", "")) for e in json.loads(shown or "[]")}


def measure(node_count: int, joins: int, modes: list[str]) -> dict[str, Any]:
    runs: dict[str, Callable[[Cluster, Timings | None], None]] = {
        "written": written_join,
        "daemon": daemon_join,
    }
    results: dict[str, Timings] = {}
    with lab.testbed_run() as bed, tempfile.TemporaryDirectory(prefix="hnt-bench-") as tmp:
        work = Path(tmp)
        fabric = lab.Fabric(bed)
        processes: list[tuple[lab.Namespace, Process]] = []
        monitors: list[perf.FdbMonitor] = []
        watch: NodeInfoWatch | None = None
        store: SQLiteStore | None = None
        try:
            nodes = [fabric.add_node() for _ in range(node_count)]
            joiner = fabric.add_node()
            path = harness.embedded_store(work / "store.db", OVERLAY_CIDR)
            print(f"starting {node_count} daemons on one store", file=sys.stderr)
            for index, node in enumerate(nodes, start=1):
                process, _ = harness.start_node_daemon(
                    node, f"node{index}", work / f"node{index}", path, *DAEMON_FLAGS
                )
                processes.append((node, process))
            store = SQLiteStore(path)
            full_mesh(nodes, store)
            monitors = [perf.FdbMonitor(n, work / f"{n.name}.fdb.log") for n in nodes]
            watch = NodeInfoWatch(path)
            cluster = Cluster(joiner, path, store, watch, monitors, work)
            for mode in modes:
                print(f"{mode}: 1 warm-up + {joins} joins and leaves", file=sys.stderr)
                runs[mode](cluster, None)
                timings = results[mode] = Timings()
                for _ in range(joins):
                    runs[mode](cluster, timings)
        finally:
            if watch is not None:
                watch.stop()
            if store is not None:
                store.close()
            for monitor in monitors:
                monitor.stop()
            for host, process in processes:
                stop(host, process)
            fabric.teardown()
    return {
        mode: {
            "join_all_nodes": summarize_ms(t.join_last),
            "join_first_node": summarize_ms(t.join_first),
            "leave_all_nodes": summarize_ms(t.leave_last),
            "leave_first_node": summarize_ms(t.leave_first),
            **{key: summarize_ms(values) for key, values in t.extra.items()},
        }
        for mode, t in results.items()
    }


def report(results: dict[str, Any], node_count: int) -> None:
    for mode, rows in results.items():
        title = (
            f"{mode}: node join/leave -> FDB on the other {node_count} nodes "
            f"(resync period {DEFAULT_RESYNC_PERIOD:g} s)"
        )
        print_table(title, {key.replace("_", " "): row for key, row in rows.items()})
        slow = [key for key, row in rows.items() if row["p90_ms"] >= DEFAULT_RESYNC_PERIOD * 1000]
        if slow:
            print(f"  as slow as a resync (the watch path did not act): {', '.join(slow)}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=4, help="nodes already in the cluster")
    parser.add_argument("--joins", type=int, default=20, help="counted joins per mode")
    parser.add_argument("--modes", default="written,daemon")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    modes = [m for m in args.modes.split(",") if m]
    if not set(modes) <= {"written", "daemon"}:
        parser.error("--modes: a comma-separated list of written, daemon")
    results = measure(args.nodes, args.joins, modes)
    report(results, args.nodes)
    if args.json:
        write_json(args.json, {"benchmark": "node_join", "nodes": args.nodes, "modes": results})
    return 0


if __name__ == "__main__":
    sys.exit(main())
