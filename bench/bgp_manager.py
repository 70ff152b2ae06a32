"""Time from a BGP pod's IPInstance being created to its /32 present at BIRD, through the
leading hybridnet-manager, beside ExaBGP driven directly (no hybridnet) in the same run.

The lab: the test control plane (kube-apiserver + etcd, hack/controlplane), BIRD 2 in the
gateway namespace of the fabric, and three node namespaces: node 1 runs
``hybridnet-manager`` (its ExaBGP is its child, as on a host-network manager pod), node 2 a
stock ExaBGP for the baseline, node 3 is where every route points (a Node object with that
InternalIP, Ready). A BGP network (netID 65010, BIRD as its peer) and a /16 subnet.

The bench writes IPInstances itself, as the manager's allocation would (bound to node 3), so
the manager's part measured is the BGP path alone: its informer, the plan, the speaker,
ExaBGP, the session, and the ``bgp-announced`` marks it writes back. Bursts are created by
``--processes`` child processes of ``--threads`` client threads each, all started at one
instant, as fast as the API server accepts them.

**Clock.** Everything is on this host's wall clock: each create is stamped (time.time())
when it is sent and when its answer is back, and BIRD exports what it learns into a kernel
table of its namespace, where ``ip -ts monitor route`` stamps each arrival itself. A route's
latency is from ITS OWN IPInstance's create answered (the API server has stored it) to its
/32 in that table; "from sent" beside it is the upper bound (the IPInstance exists somewhere
between the two; a route can even arrive before its answer is read, a negative latency).
``creationTimestamp`` has whole seconds only, too coarse to measure by.

Per burst (500 and 5,000 at once) it prints each route's latency (median, p90, max), the
burst's wall time (first create sent -> last route at BIRD), the creates alone (first sent
-> last answered, with the manager watching and marking; and again before the manager runs:
the API server's share, a floor for that wall time), the create rate, and the last route's
lag behind the last create. Then the same routes "at once" for hybridnet: the pods' node goes
NotReady (routes withdrawn) and Ready again, one Node write, and every route is timed from
it: the manager's path with the API server's create pace taken out.

The baseline is bench.bgp_announce's direct ExaBGP with batched commands: single routes; the
whole set in one write; and "paced like the creates": each route written to ExaBGP when its
IPInstance's create was answered in the last hybridnet burst of that size (replayed), which
is the best a speaker could do behind this API server. The ratios compare hybridnet with
those.

    python -m bench.bgp_manager [--singles 30] [--runs 3] [--processes 4] [--threads 8]
        [--counts 500,5000] [--json FILE] [--workdir DIR]

``--workdir`` keeps the manager's log (level info), ExaBGP's and BIRD's files; each line on
stderr is stamped on the wall clock, to line up a profile taken beside the run (py-spy on the
manager's PID, which the run prints) with the burst it covers.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import ipaddress
import multiprocessing
import multiprocessing.pool
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from bench.bgp_announce import Arrivals, DirectExaBGP, routes_in
from bench.stats import print_table, summarize_ms, write_json
from hack.controlplane import ControlPlane, build_binaries
from hybridnet import lab
from hybridnet.api import constants as c
from hybridnet.api.builtin import Namespace, Node
from hybridnet.api.meta import ObjectMeta
from hybridnet.api.resources import (
    AddressRange,
    BGPPeer,
    IPInstance,
    Network,
    NetworkConfig,
    NetworkSpec,
    Subnet,
    SubnetSpec,
)
from hybridnet.bgp.model import Route
from hybridnet.ipamcore.allocator import Allocation
from hybridnet.ipamstore import ipinstances
from hybridnet.lab.bird import Bird, BirdNeighbor
from hybridnet.lab.manager import manager_argv
from hybridnet.store.errors import NotFound
from hybridnet.store.kube import KubeStore

FABRIC_ASN, LOCAL_ASN = 65000, 65010
KERNEL_TABLE = 100
IPAM_NAMESPACE = "kube-system"
NETWORK, SUBNET, CIDR = "bench-bgp", "bench-bgp-v4", "198.19.0.0/16"
DIRECT_BASE = "198.20.0.1"
HOP_NODE = "bench-hop"
BOUND = 600.0
START_AHEAD = 0.3
"""Seconds between handing the creators their addresses and the instant they all start."""
TARGETS = {"single": "<= 50 ms median", "500": "<= 1 s", "5000": "<= 5 s"}


def wait_for(condition: Callable[[], bool], what: str, bound: float = 120.0) -> None:
    deadline = time.monotonic() + bound
    while not condition():
        if time.monotonic() > deadline:
            raise RuntimeError(f"not reached within {bound:.0f}s: {what}")
        time.sleep(0.05)


def note(what: str) -> None:
    """Progress on stderr, stamped on the wall clock (to line up with profiles taken
    beside the run)."""
    print(f"{time.time():.3f} {what}", file=sys.stderr, flush=True)


def host(address: str) -> str:
    return f"{address}/32"


def ipinstance(address: str) -> IPInstance:
    """The IPInstance the manager's allocation would write for a pod at ``address``."""
    allocation = Allocation(
        network=NETWORK, subnet=SUBNET, version=4, address=address, prefix_length=16,
        gateway=None, net_id=None, mac="02:00:00:00:00:01", owner=f"bench/p-{address}",
    )  # fmt: skip
    return ipinstances.build(
        allocation,
        ipam_namespace=IPAM_NAMESPACE,
        pod_namespace="bench",
        pod_name=f"p-{address.replace('.', '-')}",
        pod_uid=None,
        node_name=HOP_NODE,
        ordinal=None,
        families=(4,),
    )


# --------------------------------------------------------------------------- creators


@dataclasses.dataclass
class _Creator:
    """A creator process's client (set by its pool's initializer)."""

    store: KubeStore | None = None
    threads: int = 1

    def client(self) -> KubeStore:
        if self.store is None:
            raise RuntimeError("creator process not started")
        return self.store


_creator = _Creator()


def _creator_start(kubeconfig: str, threads: int) -> None:
    """In each creator process: its own client (pool sized to its threads)."""
    _creator.store = KubeStore.from_kubeconfig(kubeconfig, connections=threads)
    _creator.threads = threads


def _create_one(address: str) -> tuple[str, float, float]:
    instance = ipinstance(address)
    store = _creator.client()
    sent = time.time()
    store.create(instance)
    return address, sent, time.time()


def _create_all(task: tuple[list[str], float]) -> list[tuple[str, float, float]]:
    addresses, start_at = task
    time.sleep(max(0.0, start_at - time.time()))
    with ThreadPoolExecutor(_creator.threads) as pool:
        return list(pool.map(_create_one, addresses))


def _delete_one(address: str) -> None:
    with contextlib.suppress(NotFound):
        _creator.client().delete(IPInstance, ipinstances.instance_name(address), IPAM_NAMESPACE)


def _delete_all(addresses: list[str]) -> None:
    with ThreadPoolExecutor(_creator.threads) as pool:
        list(pool.map(_delete_one, addresses))


@dataclasses.dataclass(frozen=True)
class Created:
    sent: float
    answered: float


class Creators:
    """Child processes that create (and delete) a burst of IPInstances at one instant:
    one Python client's GIL would otherwise pace the burst, not the API server."""

    def __init__(self, kubeconfig: Path, processes: int, threads: int):
        self.processes = processes
        context = multiprocessing.get_context("spawn")
        self._pool: multiprocessing.pool.Pool = context.Pool(
            processes, _creator_start, (str(kubeconfig), threads)
        )

    def create(self, addresses: Sequence[str]) -> dict[str, Created]:
        chunks = [list(addresses[i :: self.processes]) for i in range(self.processes)]
        start_at = time.time() + START_AHEAD
        done = self._pool.map(_create_all, [(chunk, start_at) for chunk in chunks], chunksize=1)
        return {
            address: Created(sent, answered)
            for results in done
            for address, sent, answered in results
        }

    def delete(self, addresses: Sequence[str]) -> None:
        chunks = [list(addresses[i :: self.processes]) for i in range(self.processes)]
        self._pool.map(_delete_all, chunks, chunksize=1)

    def close(self) -> None:
        self._pool.terminate()
        self._pool.join()


class Addresses:
    """Fresh pod addresses in the subnet, never reused within a run (a route withdrawn late
    is never taken for a new one)."""

    def __init__(self) -> None:
        self._next = 1

    def take(self, count: int) -> list[str]:
        base = ipaddress.ip_network(CIDR).network_address
        first, self._next = self._next, self._next + count
        return [str(base + first + i) for i in range(count)]


# --------------------------------------------------------------------------- scenarios


@dataclasses.dataclass
class Burst:
    """One burst through hybridnet: each route's arrival beside its create's stamps."""

    created: dict[str, Created]
    arrived: dict[str, float]

    @property
    def first_sent(self) -> float:
        return min(stamp.sent for stamp in self.created.values())

    @property
    def last_answered(self) -> float:
        return max(stamp.answered for stamp in self.created.values())

    @property
    def last_arrival(self) -> float:
        return max(self.arrived.values())

    def from_answered(self) -> list[float]:
        return [self.arrived[host(a)] - stamp.answered for a, stamp in self.created.items()]

    def from_sent(self) -> list[float]:
        return [self.arrived[host(a)] - stamp.sent for a, stamp in self.created.items()]

    def schedule(self) -> list[float]:
        """Each create's answer, in order, as seconds after the first create was sent."""
        first = self.first_sent
        return sorted(stamp.answered - first for stamp in self.created.values())


def pod_singles(
    store: KubeStore, addresses: Addresses, arrivals: Arrivals, count: int
) -> tuple[list[float], list[float]]:
    """One pod at a time: each route's latency from its create answered, and from sent."""
    answered_samples, sent_samples = [], []
    taken = addresses.take(count)
    for address in taken:
        instance = ipinstance(address)
        sent = time.time()
        store.create(instance)
        answered = time.time()
        arrived = arrivals.wait_present([host(address)])
        answered_samples.append(arrived - answered)
        sent_samples.append(arrived - sent)
    for address in taken:
        with contextlib.suppress(NotFound):
            store.delete(IPInstance, ipinstances.instance_name(address), IPAM_NAMESPACE)
    arrivals.wait_absent(host(a) for a in taken)
    return answered_samples, sent_samples


def pod_burst(creators: Creators, arrivals: Arrivals, addresses: list[str]) -> Burst:
    created = creators.create(addresses)
    arrivals.wait_present((host(a) for a in addresses), BOUND)
    return Burst(created, arrivals.arrived(host(a) for a in addresses))


def set_ready(store: KubeStore, ready: bool) -> float:
    """Set the hop node's Ready condition; when the write was sent."""
    node = store.get(Node, HOP_NODE)
    node.body.setdefault("status", {})["conditions"] = [
        {"type": "Ready", "status": "True" if ready else "False"}
    ]
    sent = time.time()
    store.update_status(node)
    return sent


def node_ready_again(store: KubeStore, arrivals: Arrivals, addresses: list[str]) -> list[float]:
    """The burst's node NotReady (every route withdrawn), then Ready: each route's latency
    from that one Node write (sent). The routes stay for the caller to delete."""
    prefixes = [host(a) for a in addresses]
    set_ready(store, False)
    arrivals.wait_absent(prefixes, BOUND)
    sent = set_ready(store, True)
    arrivals.wait_present(prefixes, BOUND)
    return [at - sent for at in arrivals.arrived(prefixes).values()]


def creates_alone(creators: Creators, addresses: list[str]) -> tuple[float, float]:
    """A burst of creates with nothing watching: first sent -> last answered, and the rate."""
    created = creators.create(addresses)
    first = min(stamp.sent for stamp in created.values())
    took = max(stamp.answered for stamp in created.values()) - first
    creators.delete(addresses)
    return took, len(addresses) / took


def direct_at_once(direct: DirectExaBGP, arrivals: Arrivals, routes: list[Route]) -> list[float]:
    """All ``routes`` in one write: each route's latency from that write."""
    prefixes = [str(r.prefix) for r in routes]
    started = time.time()
    direct.announce(routes)
    arrivals.wait_present(prefixes, BOUND)
    samples = [at - started for at in arrivals.arrived(prefixes).values()]
    direct.withdraw(routes)
    arrivals.wait_absent(prefixes, BOUND)
    return samples


def direct_paced(
    direct: DirectExaBGP, arrivals: Arrivals, routes: list[Route], schedule: list[float]
) -> tuple[list[float], float]:
    """Each route written when the schedule says (seconds after the start; the routes that
    are due together go in one write): each route's latency from its write, and the last
    route's lag behind the last write."""
    prefixes = [str(r.prefix) for r in routes]
    written: dict[str, float] = {}
    start = time.time()
    index = 0
    while index < len(routes):
        time.sleep(max(0.0, start + schedule[index] - time.time()))
        now = time.time()
        due = index
        while due < len(routes) and start + schedule[due] <= now:
            due += 1
        batch = routes[index:due]
        direct.announce(batch)
        written.update((str(r.prefix), now) for r in batch)
        index = due
    last = arrivals.wait_present(prefixes, BOUND)
    arrived = arrivals.arrived(prefixes)
    direct.withdraw(routes)
    arrivals.wait_absent(prefixes, BOUND)
    return [arrived[p] - written[p] for p in prefixes], last - max(written.values())


def direct_singles(direct: DirectExaBGP, arrivals: Arrivals, routes: list[Route]) -> list[float]:
    samples = []
    for route in routes:
        started = time.time()
        direct.announce([route])
        samples.append(arrivals.wait_present([str(route.prefix)]) - started)
    direct.withdraw(routes)
    arrivals.wait_absent(str(r.prefix) for r in routes)
    return samples


# --------------------------------------------------------------------------- the run


def set_up(store: KubeStore, hop: lab.Node, gateway_v4: str) -> None:
    with contextlib.suppress(Exception):
        store.create(Namespace(ObjectMeta(name=IPAM_NAMESPACE)))
    node = store.create(Node(ObjectMeta(name=HOP_NODE)))
    node.body["status"] = {
        "addresses": [{"type": "InternalIP", "address": hop.ipv4}],
        "conditions": [{"type": "Ready", "status": "True"}],
    }
    store.update_status(node)
    peers = [BGPPeer(address=gateway_v4, asn=FABRIC_ASN)]
    spec = NetworkSpec(
        type=c.TYPE_UNDERLAY, mode=c.MODE_BGP, net_id=LOCAL_ASN,
        node_selector={"bench": "bgp"}, config=NetworkConfig(bgp_peers=peers),
    )  # fmt: skip
    store.create(Network(ObjectMeta(name=NETWORK), spec))
    subnet = SubnetSpec(network=NETWORK, range=AddressRange(version="4", cidr=CIDR))
    store.create(Subnet(ObjectMeta(name=SUBNET), subnet))


@dataclasses.dataclass
class Results:
    rows: dict[str, dict[str, float]] = dataclasses.field(default_factory=dict)
    figures: dict[str, float] = dataclasses.field(default_factory=dict)
    """Rates (per second) and ratios."""

    def ms(self, name: str, samples: Sequence[float]) -> None:
        self.rows[name] = summarize_ms(samples)


class Bench:
    """The control plane, the fabric with BIRD, the arrivals watch and the creators."""

    def __init__(self, args: argparse.Namespace, work: Path, cleanup: contextlib.ExitStack):
        run = cleanup.enter_context(lab.testbed_run())
        self.plane = ControlPlane(bin_dir=build_binaries())
        self.plane.start()
        cleanup.callback(self.plane.stop)
        self.plane.install_crds(Path(__file__).resolve().parents[1] / "deploy" / "crds")
        fabric = lab.Fabric(run)
        cleanup.callback(fabric.teardown)
        self.fabric = fabric
        self.manager_node, self.direct_node = fabric.add_node(), fabric.add_node()
        self.hop = fabric.add_node()
        self.bird = Bird(
            fabric.gateway, work / "bird", router_id=fabric.gateway_ipv4, asn=FABRIC_ASN,
            neighbors=[BirdNeighbor("hn", self.manager_node.ipv4, LOCAL_ASN),
                       BirdNeighbor("plain", self.direct_node.ipv4, LOCAL_ASN)],
            kernel_table=KERNEL_TABLE,
        )  # fmt: skip
        self.bird.start()
        cleanup.callback(self.bird.stop)
        self.arrivals = Arrivals(fabric.gateway.name, KERNEL_TABLE)
        cleanup.callback(self.arrivals.close)
        self.store = KubeStore.from_kubeconfig(self.plane.kubeconfig_path, connections=8)
        cleanup.callback(self.store.close)
        set_up(self.store, self.hop, fabric.gateway_ipv4)
        self.creators = Creators(self.plane.kubeconfig_path, args.processes, args.threads)
        cleanup.callback(self.creators.close)
        self.addresses = Addresses()
        # Every creator process imported, connected and warm before anything is timed.
        warm = self.addresses.take(args.processes * args.threads * 2)
        self.creators.create(warm)
        self.creators.delete(warm)

    def start_manager(self, work: Path, cleanup: contextlib.ExitStack) -> lab.Process:
        url = self.plane.expose_in_namespace(self.fabric.gateway.name, self.fabric.gateway_ipv4)
        cleanup.callback(self.plane.unexpose, url)
        argv = manager_argv(
            self.plane.kubeconfig_for(url), IPAM_NAMESPACE, "bench-manager",
            "--metrics-address", "", "--log-level", "info",
            "--bgp-workdir", str(work / "exabgp"),
        )  # fmt: skip
        manager = lab.Process(argv, netns=self.manager_node.name, log_path=work / "manager.log")
        cleanup.callback(manager.stop, 20)
        wait_for(lambda: self.bird.protocol("hn").state == "Established", "the manager's session")
        note(f"manager running, pid {manager.pid}")
        return manager


def runs_of(args: argparse.Namespace, count: int) -> int:
    runs = int(args.runs)
    return runs if count <= 500 else max(1, (runs + 1) // 2)


def measure(args: argparse.Namespace, work: Path) -> Results:
    out = Results()
    schedules: dict[int, list[float]] = {}
    with contextlib.ExitStack() as cleanup:
        bench = Bench(args, work, cleanup)
        for count in args.counts:
            alone = [creates_alone(bench.creators, bench.addresses.take(count))
                     for _ in range(runs_of(args, count))]  # fmt: skip
            out.ms(f"API server alone {count}: creates", [took for took, _ in alone])
            out.figures[f"API server alone {count}: creates/s"] = statistics.median(
                rate for _, rate in alone
            )
        note("measured the API server alone")

        manager = bench.start_manager(work, cleanup)
        pod_singles(bench.store, bench.addresses, bench.arrivals, 3)  # warm-up
        answered, sent = pod_singles(bench.store, bench.addresses, bench.arrivals, args.singles)
        out.ms("hybridnet single: from answered", answered)
        out.ms("hybridnet single: from sent", sent)
        for count in args.counts:
            bursts, ready = [], []
            for _ in range(runs_of(args, count)):
                addresses = bench.addresses.take(count)
                note(f"burst of {count}")
                bursts.append(pod_burst(bench.creators, bench.arrivals, addresses))
                note(f"burst of {count} at BIRD; node NotReady and Ready")
                ready += node_ready_again(bench.store, bench.arrivals, addresses)
                note("deleting")
                bench.creators.delete(addresses)
                bench.arrivals.wait_absent((host(a) for a in addresses), BOUND)
            schedules[count] = bursts[-1].schedule()
            out.ms(f"hybridnet {count}: each, from answered",
                   [s for b in bursts for s in b.from_answered()])  # fmt: skip
            out.ms(f"hybridnet {count}: each, from sent",
                   [s for b in bursts for s in b.from_sent()])  # fmt: skip
            out.ms(f"hybridnet {count}: first create -> last route",
                   [b.last_arrival - b.first_sent for b in bursts])  # fmt: skip
            out.ms(f"hybridnet {count}: creates", [b.last_answered - b.first_sent for b in bursts])
            out.ms(f"hybridnet {count}: last create -> last route",
                   [b.last_arrival - b.last_answered for b in bursts])  # fmt: skip
            out.ms(f"hybridnet {count}: node Ready -> each", ready)
            out.figures[f"hybridnet {count}: creates/s"] = statistics.median(
                count / (b.last_answered - b.first_sent) for b in bursts
            )
            note(f"measured hybridnet, {count}")
        manager.stop(20)

        direct = DirectExaBGP(bench.direct_node, work / "direct", bench.fabric.gateway_ipv4, True)
        with contextlib.closing(direct):
            wait_for(lambda: bench.bird.protocol("plain").state == "Established", "direct ExaBGP")
            hop_ip = bench.hop.ipv4
            direct_singles(direct, bench.arrivals, routes_in(DIRECT_BASE, 3, hop_ip))
            out.ms("direct single", direct_singles(
                direct, bench.arrivals, routes_in(DIRECT_BASE, args.singles, hop_ip)))  # fmt: skip
            for count in args.counts:
                routes = routes_in(DIRECT_BASE, count, hop_ip)
                at_once, paced, lags = [], [], []
                for _ in range(runs_of(args, count)):
                    at_once += direct_at_once(direct, bench.arrivals, routes)
                    each, lag = direct_paced(direct, bench.arrivals, routes, schedules[count])
                    paced += each
                    lags.append(lag)
                out.ms(f"direct {count} at once: each", at_once)
                out.ms(f"direct {count} paced: each", paced)
                out.ms(f"direct {count} paced: last write -> last", lags)
        note("measured direct ExaBGP")
    add_ratios(out, args.counts)
    return out


def add_ratios(out: Results, counts: Sequence[int]) -> None:
    rows, figures = out.rows, out.figures

    def ratio(name: str, over: str, under: str, key: str) -> None:
        below = rows[under][key]
        if below > 0:
            figures[name] = round(rows[over][key] / below, 2)

    ratio("single: hybridnet / direct (median)", "hybridnet single: from answered",
          "direct single", "median_ms")  # fmt: skip
    for count in counts:
        for key, word in (("median_ms", "median"), ("p90_ms", "p90")):
            ratio(
                f"{count} each: hybridnet / direct paced ({word})",
                f"hybridnet {count}: each, from answered",
                f"direct {count} paced: each",
                key,
            )
            ratio(
                f"{count} at once: hybridnet node Ready / direct ({word})",
                f"hybridnet {count}: node Ready -> each",
                f"direct {count} at once: each",
                key,
            )
        ratio(f"{count}: first create -> last route / API server alone (median)",
              f"hybridnet {count}: first create -> last route",
              f"API server alone {count}: creates", "median_ms")  # fmt: skip


def verdicts(out: Results, counts: Sequence[int]) -> list[str]:
    """Issue 11's targets beside the figures they are read against."""
    lines = []
    single = out.rows["hybridnet single: from answered"]["median_ms"]
    lines.append(f"single: median {single:.1f} ms (target 50 ms)")
    bounds = {500: 1000.0, 5000: 5000.0}
    for count in counts:
        bound = bounds.get(count)
        each = out.rows[f"hybridnet {count}: each, from answered"]
        wall = out.rows[f"hybridnet {count}: first create -> last route"]["median_ms"]
        alone = out.rows[f"API server alone {count}: creates"]["median_ms"]
        ready = out.rows[f"hybridnet {count}: node Ready -> each"]["max_ms"]
        target = f" (target {bound / 1000:g} s)" if bound else ""
        lines.append(
            f"{count}{target}: each route median {each['median_ms']:.0f} ms, p90 "
            f"{each['p90_ms']:.0f} ms, max {each['max_ms']:.0f} ms; burst wall {wall:.0f} ms "
            f"(the API server alone needs {alone:.0f} ms for the creates); all {count} at "
            f"once after the node turns Ready: last route {ready:.0f} ms"
        )
    return lines


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--singles", type=int, default=30, help="pods one by one")
    parser.add_argument("--runs", type=int, default=3, help="runs per burst of 500 or fewer "
                        "(larger bursts: half as many, rounded up)")  # fmt: skip
    parser.add_argument("--counts", default="500,5000", help="burst sizes, comma-separated")
    parser.add_argument("--processes", type=int, default=4, help="creator processes")
    parser.add_argument("--threads", type=int, default=8, help="client threads per creator")
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--workdir", type=Path, default=None,
                        help="keep the logs (manager, ExaBGP, BIRD) here")  # fmt: skip
    args = parser.parse_args(argv)
    args.counts = [int(word) for word in args.counts.split(",") if word]
    if os.geteuid() != 0:
        parser.exit(1, "bgp_manager: needs root (network namespaces)\n")
    started, load = time.time(), os.getloadavg()
    with contextlib.ExitStack() as scratch:
        work = args.workdir or Path(
            scratch.enter_context(tempfile.TemporaryDirectory(prefix="hnbgpm-"))
        )
        out = measure(args, work)
    print_table("IPInstance created -> its /32 at BIRD (wall clock; see the module docstring)",
                out.rows)  # fmt: skip
    print("\n  rates and ratios")
    for name, value in out.figures.items():
        print(f"  {name:<62}{value:>10.2f}")
    print("\n  issue 11 targets: " + ", ".join(f"{k} {v}" for k, v in TARGETS.items()))
    for line in verdicts(out, args.counts):
        print(f"  {line}")
    conditions: dict[str, Any] = {
        "creators": f"{args.processes} processes x {args.threads} threads",
        "cpus": os.cpu_count(),
        "load_average_at_start": [round(x, 2) for x in load],
        "load_average_at_end": [round(x, 2) for x in os.getloadavg()],
        "seconds": round(time.time() - started),
    }
    print(f"\n  conditions: {conditions}")
    write_json(args.json, {"bgp_manager": out.rows, "figures": out.figures,
                           "targets": TARGETS, "conditions": conditions})  # fmt: skip


if __name__ == "__main__":
    main()
