"""The node datapath at scale, beside the kernel's floor measured in the same run.

For each size N, in a throwaway network namespace: N remote nodes (each a flood and a unicast
FDB entry, a neighbour and a route in the overlay subnet's table) and N underlay subnets on
the parent, untagged (each a rule, and a table with an on-link and a default route, and a
route in the overlay subnet's table: overlay -> underlay through VXLAN). Measured:

* from scratch: one reconcile (observe, desired, plan, apply) into an empty namespace, median
  of several rounds, each in a fresh namespace;
* the kernel's floor: the same objects (rendered from the desired state) written with
  ``ip -batch`` and ``bridge -batch`` into another fresh namespace;
* one change on top: a remote node's VTEP moves (its FDB entries, neighbour, route and the
  masquerade table change), and a no-op reconcile (nothing drifted);
* memory: the process's peak RSS (VmHWM) after each size, the sizes run smallest first.

Targets on the 2-core reference machine, printed beside the figures: 500+500 from scratch
<= 1 s, one change <= 100 ms, 5,000+5,000 <= 10 s, RSS <= 150 MB at 5,000. Prints figures,
asserts nothing.

    python -m bench.datapath_scale [--sizes 500,5000] [--rounds 3] [--changes 9] [--json FILE]
"""

from __future__ import annotations

import argparse
import collections
import functools
import ipaddress
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

from bench.stats import write_json
from hybridnet import lab as testbed
from hybridnet.api.meta import ObjectMeta
from hybridnet.api.resources import (
    AddressRange,
    Network,
    NetworkSpec,
    NodeInfo,
    NodeInfoSpec,
    Subnet,
    SubnetConfig,
    SubnetSpec,
    VTEPInfo,
)
from hybridnet.daemon.datapath import observe
from hybridnet.daemon.datapath.apply import apply
from hybridnet.daemon.datapath.config import NodeConfig
from hybridnet.daemon.datapath.desired import desired_state
from hybridnet.daemon.datapath.model import (
    FdbEntry,
    KernelObject,
    Neighbour,
    Route,
    Rule,
    VxlanLink,
)
from hybridnet.daemon.datapath.plan import plan
from hybridnet.daemon.datapath.view import NodeView
from hybridnet.netlink import ns

T = TypeVar("T")
NODE = "bench-node"
VTEP = "198.18.0.10"
CONFIG = NodeConfig(vtep_interface="eth0", underlay_interface="eth0")
REMOTE_VTEPS = ipaddress.ip_network("198.18.128.0/17")
"""Off the parent's subnet, with no route: tunnel packets to them are dropped at once."""
UNDERLAY_SPACE = ipaddress.ip_network("198.19.0.0/16")
OVERLAY_SUBNET = "198.18.64.0/18"
TARGETS = {
    500: {"scratch_s": 1.0, "change_ms": 100.0},
    5000: {"scratch_s": 10.0, "rss_mb": 150.0},
}


# --------------------------------------------------------------------------- the view


def remote(i: int, offset: int = 0) -> NodeInfo:
    ip = str(REMOTE_VTEPS.network_address + 1 + i + offset)
    mac = (
        f"52:54:{(i >> 24) & 0xFF:02x}:{(i >> 16) & 0xFF:02x}:{(i >> 8) & 0xFF:02x}:{i & 0xFF:02x}"
    )
    return NodeInfo(ObjectMeta(name=f"remote{i}"), NodeInfoSpec(VTEPInfo(ip=ip, mac=mac)))


def build_view(size: int, moved: int | None = None) -> NodeView:
    """``size`` remote nodes and underlay subnets; ``moved`` names a remote whose VTEP is
    elsewhere (the one change)."""
    networks = (
        Network(ObjectMeta(name="overlay"), NetworkSpec(type="Overlay", mode="VXLAN", net_id=4)),
        Network(
            ObjectMeta(name="underlay"),
            NetworkSpec(type="Underlay", mode="VLAN", net_id=0, node_selector={"bench": "yes"}),
        ),
    )
    subnets = [
        Subnet(
            ObjectMeta(name="overlay-v4"),
            SubnetSpec(
                network="overlay",
                range=AddressRange(version="4", cidr=OVERLAY_SUBNET),
                config=SubnetConfig(auto_nat_outgoing=True),
            ),
        )
    ]
    for i in range(size):
        block = ipaddress.ip_network(f"{UNDERLAY_SPACE.network_address + 4 * i}/30")
        subnets.append(
            Subnet(
                ObjectMeta(name=f"underlay-{i}"),
                SubnetSpec(
                    network="underlay",
                    range=AddressRange(
                        version="4", cidr=str(block), gateway=str(block.network_address + 1)
                    ),
                ),
            )
        )
    infos = [
        remote(i, offset=REMOTE_VTEPS.num_addresses // 2 if i == moved else 0) for i in range(size)
    ]
    return NodeView(
        node_name=NODE,
        node_labels={"bench": "yes"},
        networks=networks,
        subnets=tuple(subnets),
        node_infos=tuple(infos),
    )


# --------------------------------------------------------------------------- namespaces


def fresh_node(bed: testbed.TestbedRun) -> testbed.Namespace:
    node = testbed.create_namespace(bed.unique("dp"))
    node.ip("link", "add", "eth0", "type", "veth", "peer", "name", "peer0")
    node.ip("addr", "add", f"{VTEP}/24", "dev", "eth0")
    node.ip("link", "set", "eth0", "up")
    node.ip("link", "set", "peer0", "up")
    return node


def inside(node: testbed.Namespace, work: Callable[[], T]) -> T:
    return ns.run_inside(node.path, work)


def timed(work: Callable[[], T]) -> tuple[T, float]:
    started = time.perf_counter()
    result = work()
    return result, time.perf_counter() - started


def reconcile_phases(view: NodeView, *, keep_objects: bool = False) -> dict[str, Any]:
    """One reconcile, step by step (what Reconciler.reconcile does), each step timed. The
    desired objects are returned only when asked: kept, they would weigh on later runs."""
    snapshot, observe_s = timed(lambda: observe.snapshot(CONFIG))
    desired, desired_s = timed(lambda: desired_state(view, CONFIG, snapshot.host))
    observed, sysctl_s = timed(lambda: snapshot.objects + observe.sysctls(desired.objects))
    drift, plan_s = timed(lambda: plan(desired.objects, observed))
    outcome, apply_s = timed(lambda: apply(drift, CONFIG))
    return {
        "objects": len(desired.objects),
        "operations": len(drift.operations),
        "failures": [str(f) for f in outcome.failures[:5]],
        "problems": [str(p) for p in desired.problems[:5]],
        "seconds": {
            "observe": observe_s + sysctl_s,
            "desired": desired_s,
            "plan": plan_s,
            "apply": apply_s,
            "total": observe_s + sysctl_s + desired_s + plan_s + apply_s,
        },
        "desired_objects": desired.objects if keep_objects else (),
        "by_kind": dict(collections.Counter(type(o).__name__ for o in desired.objects)),
    }


# --------------------------------------------------------------------------- the kernel's floor


def batch_files(objects: tuple[KernelObject, ...]) -> list[tuple[list[str], list[str]]]:
    """The objects as (command, batch lines) in the order a reconcile writes them: the link,
    FDB entries (``bridge``), neighbours and routes, rules, IPv6 ones in their own batch
    (``ip -6``: a batch line cannot carry options). Sysctls are few and left out."""
    proto = CONFIG.numbers.route_protocol
    links: list[str] = []
    fdb: list[str] = []
    by_family: dict[int, list[str]] = {4: [], 6: []}
    rules: dict[int, list[str]] = {4: [], 6: []}
    for obj in objects:
        if isinstance(obj, VxlanLink):
            links.append(
                f"link add {obj.name} type vxlan id {obj.vni} local {obj.local} "
                f"dev {obj.parent} dstport {obj.port} nolearning"
            )
            links.append(f"link set {obj.name} mtu {obj.mtu} address {obj.mac} up")
        elif isinstance(obj, FdbEntry):
            verb = "append" if obj.mac == "00:00:00:00:00:00" else "add"
            fdb.append(f"fdb {verb} {obj.mac} dst {obj.dst} dev {obj.link} self permanent")
        elif isinstance(obj, Neighbour):
            family = ipaddress.ip_address(obj.address).version
            if obj.proxy:
                by_family[family].append(f"neigh add proxy {obj.address} dev {obj.link}")
            else:
                by_family[family].append(
                    f"neigh add {obj.address} lladdr {obj.lladdr} dev {obj.link} "
                    f"nud permanent proto {proto}"
                )
        elif isinstance(obj, Route):
            via = f" via {obj.gateway}" if obj.gateway else ""
            src = f" src {obj.prefsrc}" if obj.prefsrc else ""
            scope = " scope link" if obj.scope == 253 else ""
            onlink = " onlink" if obj.onlink else ""
            by_family[obj.family].append(
                f"route add {obj.dst}{via} dev {obj.oif} table {obj.table} proto {proto}"
                f"{scope}{src}{onlink}"
            )
        elif isinstance(obj, Rule):
            source = f" from {obj.src}" if obj.src else ""
            rules[obj.family].append(
                f"rule add{source} lookup {obj.table} pref {obj.priority} proto {proto}"
            )
    return [
        (["ip"], links),
        (["bridge"], fdb),
        (["ip", "-4"], by_family[4] + rules[4]),
        (["ip", "-6"], by_family[6] + rules[6]),
    ]


def kernel_floor(bed: testbed.TestbedRun, objects: tuple[KernelObject, ...]) -> dict[str, Any]:
    batches = batch_files(objects)
    node = fresh_node(bed)
    try:
        with tempfile.TemporaryDirectory(prefix="hnt-bench-") as tmp:
            commands = []
            for number, (command, lines) in enumerate(batches):
                path = Path(tmp) / f"batch{number}"
                path.write_text("\n".join(lines) + "\n")
                commands.append([*command, "-n", node.name, "-batch", str(path)])
            started = time.perf_counter()
            for argv in commands:
                testbed.run(argv, timeout=300)
            seconds = time.perf_counter() - started
    finally:
        node.delete()
    return {"lines": sum(len(lines) for _, lines in batches), "seconds": seconds}


# --------------------------------------------------------------------------- one size


def peak_rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def measure(bed: testbed.TestbedRun, size: int, rounds: int, changes: int) -> dict[str, Any]:
    view = build_view(size)
    scratch: list[dict[str, Any]] = []
    for round_number in range(rounds):
        node = fresh_node(bed)
        try:
            keep = round_number == 0  # the kernel floor writes the same objects
            scratch.append(
                inside(node, functools.partial(reconcile_phases, view, keep_objects=keep))
            )
        finally:
            node.delete()
    objects = scratch[0].pop("desired_objects")
    floors = [kernel_floor(bed, objects) for _ in range(rounds)]
    del objects

    node = fresh_node(bed)
    try:
        inside(node, lambda: reconcile_phases(view))
        change_runs, noop_runs = [], []
        for i in range(changes):
            # Alternate: move a remote's VTEP away, then back; each followed by a no-op.
            step = build_view(size, moved=i % size) if i % 2 == 0 else view
            change_runs.append(inside(node, functools.partial(reconcile_phases, step)))
            noop_runs.append(inside(node, functools.partial(reconcile_phases, step)))
    finally:
        node.delete()

    return {
        "size": size,
        "objects": scratch[0]["objects"],
        "objects_by_kind": dict(sorted(scratch[0]["by_kind"].items())),
        "scratch_operations": scratch[0]["operations"],
        "failures": scratch[0]["failures"],
        "problems": scratch[0]["problems"],
        "scratch_s": _median_phases(scratch),
        "floor_s": statistics.median(f["seconds"] for f in floors),
        "floor_lines": floors[0]["lines"],
        "change_operations": statistics.median(r["operations"] for r in change_runs),
        "change_ms": {k: v * 1000 for k, v in _median_phases(change_runs).items()},
        "noop_ms": {k: v * 1000 for k, v in _median_phases(noop_runs).items()},
        "noop_operations": max(r["operations"] for r in noop_runs),
        "peak_rss_mb": round(peak_rss_mb(), 1),
    }


def _median_phases(runs: list[dict[str, Any]]) -> dict[str, float]:
    return {
        phase: statistics.median(r["seconds"][phase] for r in runs) for phase in runs[0]["seconds"]
    }


def report(result: dict[str, Any]) -> Iterator[str]:
    size = result["size"]
    target = TARGETS.get(size, {})
    scratch, change, noop = result["scratch_s"], result["change_ms"], result["noop_ms"]

    def against(value: float, key: str, unit: str) -> str:
        return f"(target <= {target[key]:g} {unit})" if key in target else ""

    kinds = result["objects_by_kind"]
    yield f"\n{size} remote nodes + {size} subnets: {result['objects']} objects {kinds}"
    if result["failures"] or result["problems"]:
        yield f"  failures {result['failures']} problems {result['problems']}"
    yield (
        f"  from scratch  {scratch['total']:8.3f} s  {against(scratch['total'], 'scratch_s', 's')}"
        f"   observe {scratch['observe']:.3f}  desired {scratch['desired']:.3f}  "
        f"plan {scratch['plan']:.3f}  apply {scratch['apply']:.3f}"
    )
    ratio = scratch["apply"] / result["floor_s"] if result["floor_s"] else float("nan")
    yield (
        f"  kernel floor  {result['floor_s']:8.3f} s  ip/bridge -batch, "
        f"{result['floor_lines']} lines"
        f"  (our apply / floor: {ratio:.1f}x)"
    )
    yield (
        f"  one change    {change['total']:8.1f} ms {against(change['total'], 'change_ms', 'ms')}"
        f"   {result['change_operations']:g} operations; observe {change['observe']:.1f}  "
        f"desired {change['desired']:.1f}  plan {change['plan']:.1f}  apply {change['apply']:.1f}"
    )
    yield (
        f"  no-op         {noop['total']:8.1f} ms   {result['noop_operations']} operations; "
        f"observe {noop['observe']:.1f}  desired {noop['desired']:.1f}  plan {noop['plan']:.1f}"
    )
    yield f"  peak RSS      {result['peak_rss_mb']:8.1f} MB {against(0, 'rss_mb', 'MB')}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="500,5000")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--changes", type=int, default=9)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    sizes = sorted(int(s) for s in args.sizes.split(","))
    results = []
    with testbed.testbed_run() as bed:
        for size in sizes:
            result = measure(bed, size, args.rounds, args.changes)
            for line in report(result):
                print(line, flush=True)
            results.append(result)
    if args.json:
        write_json(args.json, {"datapath_scale": results})
    return 0


if __name__ == "__main__":
    sys.exit(main())
