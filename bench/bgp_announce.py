"""Time from "desired route added" to the route present at BIRD, hybridnet's speaker beside
ExaBGP driven directly, in the same run.

The lab: BIRD 2 in the gateway namespace peers with hybridnet's speaker (ExaBGP under
hybridnet.bgp, in node 1) and with a plain ExaBGP (node 2); every route points at node 3.
BIRD exports what it learns into a kernel table of its namespace, and ``ip -ts monitor
route`` there stamps each prefix's arrival (ip's own wall-clock stamp, so a busy bench reading
the pipe late does not make routes look late), so nothing polls. The clock (time.time()) starts
just before ``Speaker.set_routes`` (hybridnet) or before the command is written to ExaBGP's
API (direct).

The direct ExaBGP runs with its defaults except what running it needs here (no privilege
drop, no CLI pipes, no acknowledgements: its API process is ``cat`` of a FIFO the benchmark
writes to), driven two ways: one ``announce route`` per prefix, and batched ``announce
attributes ... nlri`` lines of 1,000 prefixes (what hybridnet writes).

Scenarios: single routes, each after the previous arrived; a dual-stack pod's /32 and /128
at once (two UPDATEs back to back: Nagle's algorithm shows here); routes added back to back
(each its own change, without waiting); 500 and 5,000 at once.

    python -m bench.bgp_announce [--singles 50] [--runs 5] [--json bench/results/bgp.json]
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime
import ipaddress
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import IO, Any

from bench.stats import print_table, summarize_ms, write_json
from hybridnet import lab
from hybridnet.bgp.model import NO_EXPORT, Peer, Route
from hybridnet.bgp.speaker import Speaker
from hybridnet.lab.bird import Bird, BirdNeighbor

FABRIC_ASN, LOCAL_ASN = 65000, 65010
KERNEL_TABLE = 100
BOUND = 60.0
PER_COMMAND = 1000
TARGETS = {"single": "<= 50 ms median", "500": "<= 1 s", "5000": "<= 5 s"}
"""Issue 11's targets (there measured from IPInstance creation, which adds the manager)."""


# --------------------------------------------------------------------------- arrivals


@dataclasses.dataclass(frozen=True)
class RouteChange:
    """One line of ``ip -ts -o monitor route`` about a route of the watched table."""

    prefix: str
    deleted: bool
    at: float
    """When ``ip`` read the kernel's message, as wall-clock seconds (time.time())."""


def parse_monitor_line(line: str, table: int) -> RouteChange | None:
    """A route change of ``table`` from one ``ip -ts -o monitor route`` line (``[stamp]
    [Deleted ]PREFIX ... table N ...``); None for other tables and other lines. The stamp is
    ip's local time with microseconds, so it does not depend on when this process read the
    line (a busy bench reads its pipe late; the stamp is not late with it)."""
    stamp, closing, rest = line.strip().partition("] ")
    if not closing or not stamp.startswith("[") or f" table {table} " not in f" {rest} ":
        return None
    words = rest.split()
    deleted = words[0] == "Deleted"
    word = words[1] if deleted else words[0]
    prefix = ipaddress.ip_network(word if "/" in word else f"{word}/{32 if '.' in word else 128}")
    at = datetime.datetime.fromisoformat(stamp[1:]).timestamp()
    return RouteChange(str(prefix), deleted, at)


class Arrivals:
    """When each prefix entered and left a kernel table of a namespace, from ``ip -ts -o
    monitor route`` (every table; the lines of ours are picked), stamped by ``ip`` itself on
    the wall clock: compare them with time.time() of this host."""

    def __init__(self, netns: str, table: int):
        self._process = subprocess.Popen(
            ["ip", "netns", "exec", netns, "ip", "-ts", "-o", "monitor", "route"],
            stdout=subprocess.PIPE,
            text=True,
        )
        self._table = table
        self._present: dict[str, float] = {}
        self._changed = threading.Condition()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        stdout: IO[str] | None = self._process.stdout
        if stdout is None:
            return
        for line in stdout:
            change = parse_monitor_line(line, self._table)
            if change is None:
                continue
            with self._changed:
                if change.deleted:
                    self._present.pop(change.prefix, None)
                else:
                    self._present.setdefault(change.prefix, change.at)
                self._changed.notify_all()

    def wait_present(self, prefixes: Iterable[str], bound: float = BOUND) -> float:
        """The time the last of ``prefixes`` arrived."""
        wanted = set(prefixes)
        with self._changed:
            if not self._changed.wait_for(lambda: wanted <= self._present.keys(), bound):
                missing = len(wanted - self._present.keys())
                raise RuntimeError(f"{missing} of {len(wanted)} routes never reached BIRD")
            return max(self._present[p] for p in wanted)

    def arrived(self, prefixes: Iterable[str]) -> dict[str, float]:
        """When each of ``prefixes`` (all present) arrived."""
        with self._changed:
            return {prefix: self._present[prefix] for prefix in prefixes}

    def wait_absent(self, prefixes: Iterable[str], bound: float = BOUND) -> None:
        wanted = set(prefixes)
        with self._changed:
            if not self._changed.wait_for(lambda: not wanted & self._present.keys(), bound):
                raise RuntimeError("routes were not withdrawn from BIRD")

    def close(self) -> None:
        self._process.terminate()
        self._process.wait()
        if self._process.stdout is not None:
            self._process.stdout.close()


# --------------------------------------------------------------------------- drivers


class HybridnetDriver:
    """hybridnet's speaker: the desired set grows and shrinks."""

    def __init__(self, speaker: Speaker):
        self.speaker = speaker
        self.current: set[Route] = set()

    def announce(self, routes: Sequence[Route]) -> None:
        self.current |= set(routes)
        self.speaker.set_routes(self.current)

    def withdraw(self, routes: Sequence[Route]) -> None:
        self.current -= set(routes)
        self.speaker.set_routes(self.current)


class DirectExaBGP:
    """Stock ExaBGP whose API process is ``cat`` of a FIFO: the benchmark writes commands
    into the FIFO, ExaBGP reads them as its helper's output."""

    def __init__(self, node: lab.Node, directory: Path, peer_address: str, batched: bool):
        self.batched = batched
        directory.mkdir(parents=True, exist_ok=True)
        fifo = directory / "commands.fifo"
        os.mkfifo(fifo)
        config = directory / "exabgp.conf"
        config.write_text(
            f"process direct {{\n    run /bin/cat {fifo};\n    encoder text;\n}}\n"
            f"neighbor {peer_address} {{\n    router-id {node.ipv4};\n"
            f"    local-address {node.ipv4};\n    local-as {LOCAL_ASN};\n"
            f"    peer-as {FABRIC_ASN};\n    family {{ ipv4 unicast; ipv6 unicast; }}\n"
            "    api { processes [ direct ]; }\n}\n"
        )
        env = {
            key: value for key, value in os.environ.items() if not key.lower().startswith("exabgp")
        }
        env.update(
            {
                "exabgp.daemon.user": "root",
                "exabgp.daemon.drop": "false",
                "exabgp.api.ack": "false",
                "exabgp.api.cli": "false",
                "EXABGP_ENVFILE": str(directory / "none.env"),
            }
        )
        self.process = lab.Process(
            [sys.executable, "-m", "exabgp", str(config)],
            netns=node.name,
            env=env,
            log_path=directory / "exabgp.log",
        )
        self._fifo = self._open_for_writing(fifo)

    def _open_for_writing(self, fifo: Path) -> IO[str]:
        """The FIFO once ExaBGP's cat has opened it for reading (ENXIO until then)."""
        deadline = time.monotonic() + BOUND
        while True:
            try:
                fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
            except OSError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(
                        f"ExaBGP did not start its API process:\n{self.process.log_path}"
                    ) from None
                time.sleep(0.05)
                continue
            os.set_blocking(fd, True)
            return os.fdopen(fd, "w")

    def _lines(self, verb: str, routes: Sequence[Route]) -> list[str]:
        if not self.batched:
            return [
                f"{verb} route {r.prefix} next-hop {r.next_hop} community [no-export]"
                for r in routes
            ]
        lines = []
        by_hop: dict[object, list[Route]] = {}
        for route in routes:
            by_hop.setdefault(route.next_hop, []).append(route)
        for hop, group in by_hop.items():
            for start in range(0, len(group), PER_COMMAND):
                chunk = " ".join(str(r.prefix) for r in group[start : start + PER_COMMAND])
                lines.append(f"{verb} attributes next-hop {hop} community [no-export] nlri {chunk}")
        return lines

    def announce(self, routes: Sequence[Route]) -> None:
        self._fifo.write("".join(f"{line}\n" for line in self._lines("announce", routes)))
        self._fifo.flush()

    def withdraw(self, routes: Sequence[Route]) -> None:
        self._fifo.write("".join(f"{line}\n" for line in self._lines("withdraw", routes)))
        self._fifo.flush()

    def close(self) -> None:
        self._fifo.close()
        self.process.stop()


# --------------------------------------------------------------------------- scenarios


def routes_in(base: str, count: int, next_hop: str) -> list[Route]:
    start = ipaddress.ip_address(base)
    hop = ipaddress.ip_address(next_hop)
    length = start.max_prefixlen
    return [
        Route(ipaddress.ip_network(f"{start + i}/{length}"), hop, frozenset({NO_EXPORT}))
        for i in range(count)
    ]


def singles(driver: Any, arrivals: Arrivals, routes: list[Route]) -> list[float]:
    """One route at a time, each after the previous has arrived."""
    samples = []
    for route in routes:
        started = time.time()
        driver.announce([route])
        samples.append(arrivals.wait_present([str(route.prefix)]) - started)
    driver.withdraw(routes)
    arrivals.wait_absent(str(r.prefix) for r in routes)
    return samples


def trickle(driver: Any, arrivals: Arrivals, routes: list[Route]) -> list[float]:
    """One route after another without waiting (pods created one by one in quick
    succession): where Nagle's algorithm holds an UPDATE back until the previous one is
    acknowledged, and the router delays its ACKs."""
    started = {}
    for route in routes:
        started[route] = time.time()
        driver.announce([route])
    samples = [arrivals.wait_present([str(r.prefix)]) - started[r] for r in routes]
    driver.withdraw(routes)
    arrivals.wait_absent(str(r.prefix) for r in routes)
    return samples


def dual_stack(driver: Any, arrivals: Arrivals, pairs: list[tuple[Route, Route]]) -> list[float]:
    """A dual-stack pod's /32 and /128 at once (two UPDATEs, one right after the other),
    each pair after the previous arrived: the time until both are there."""
    samples = []
    for pair in pairs:
        started = time.time()
        driver.announce(list(pair))
        samples.append(arrivals.wait_present(str(r.prefix) for r in pair) - started)
    every = [route for pair in pairs for route in pair]
    driver.withdraw(every)
    arrivals.wait_absent(str(r.prefix) for r in every)
    return samples


def bursts(driver: Any, arrivals: Arrivals, routes: list[Route], runs: int) -> list[float]:
    """All of ``routes`` at once, ``runs`` times (withdrawn in between, not timed)."""
    samples = []
    prefixes = [str(r.prefix) for r in routes]
    for _ in range(runs):
        started = time.time()
        driver.announce(routes)
        samples.append(arrivals.wait_present(prefixes) - started)
        driver.withdraw(routes)
        arrivals.wait_absent(prefixes)
    return samples


def wait_for(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + BOUND
    while not condition():
        if time.monotonic() > deadline:
            raise RuntimeError(f"not reached within {BOUND}s: {what}")
        time.sleep(0.05)


def measure(args: argparse.Namespace, work: Path) -> dict[str, dict[str, float]]:
    rows: dict[str, dict[str, float]] = {}
    with lab.testbed_run() as run, contextlib.ExitStack() as cleanup:
        fabric = lab.Fabric(run)
        cleanup.callback(fabric.teardown)
        hn_node, direct_node, hop_node = fabric.add_node(), fabric.add_node(), fabric.add_node()
        bird = Bird(
            fabric.gateway,
            work / "bird",
            router_id=fabric.gateway_ipv4,
            asn=FABRIC_ASN,
            neighbors=[
                BirdNeighbor("hn", hn_node.ipv4, LOCAL_ASN),
                BirdNeighbor("plain", direct_node.ipv4, LOCAL_ASN),
            ],
            kernel_table=KERNEL_TABLE,
        )
        bird.start()
        cleanup.callback(bird.stop)
        arrivals = Arrivals(fabric.gateway.name, KERNEL_TABLE)
        cleanup.callback(arrivals.close)

        speaker = Speaker(
            [Peer(ipaddress.ip_address(fabric.gateway_ipv4), FABRIC_ASN, LOCAL_ASN)],
            hn_node.ipv4,
            workdir=work / "speaker",
            run_prefix=["ip", "netns", "exec", hn_node.name],
        )
        speaker.start()
        with contextlib.closing(speaker):
            wait_for(lambda: bird.protocol("hn").state == "Established", "hybridnet's session")
            rows |= scenarios(
                args,
                "hybridnet",
                HybridnetDriver(speaker),
                ("198.19.0.0", "2001:db8:50::"),
                arrivals=arrivals,
                next_hop=hop_node.ipv4,
                next_hop_v6=hop_node.ipv6,
            )

        # One direct ExaBGP at a time: BIRD has one neighbour for node 2.
        for batched, base in (
            (False, ("198.19.64.0", "2001:db8:51::")),
            (True, ("198.19.128.0", "2001:db8:52::")),
        ):
            name = "direct batched" if batched else "direct per-route"
            direct = DirectExaBGP(
                direct_node, work / name.replace(" ", "-"), fabric.gateway_ipv4, batched
            )
            with contextlib.closing(direct):
                wait_for(lambda: bird.protocol("plain").state == "Established", name)
                rows |= scenarios(
                    args,
                    name,
                    direct,
                    base,
                    arrivals=arrivals,
                    next_hop=hop_node.ipv4,
                    next_hop_v6=hop_node.ipv6,
                )
            wait_for(lambda: bird.protocol("plain").state != "Established", f"{name} gone")
    return rows


def scenarios(
    args: argparse.Namespace,
    name: str,
    driver: Any,
    bases: tuple[str, str],
    *,
    arrivals: Arrivals,
    next_hop: str,
    next_hop_v6: str,
) -> dict[str, dict[str, float]]:
    rows: dict[str, dict[str, float]] = {}
    base, base_v6 = bases
    singles(driver, arrivals, routes_in(base, 3, next_hop))  # warm-up
    rows[f"{name}: single"] = summarize_ms(
        singles(driver, arrivals, routes_in(base, args.singles, next_hop))
    )
    pairs = list(
        zip(
            routes_in(base, args.singles, next_hop),
            routes_in(base_v6, args.singles, next_hop_v6),
            strict=True,
        )
    )
    rows[f"{name}: IPv4 + IPv6 pair"] = summarize_ms(dual_stack(driver, arrivals, pairs))
    rows[f"{name}: back to back"] = summarize_ms(
        [
            sample
            for _ in range(args.runs)
            for sample in trickle(driver, arrivals, routes_in(base, args.trickle, next_hop))
        ]
    )
    for count in (500, 5000):
        runs = args.runs if count == 500 else max(1, args.runs // 2 + 1)
        rows[f"{name}: {count} at once"] = summarize_ms(
            bursts(driver, arrivals, routes_in(base, count, next_hop), runs)
        )
    print(f"measured {name}", file=sys.stderr)
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--singles", type=int, default=50, help="single routes, one by one")
    parser.add_argument(
        "--trickle", type=int, default=20, help="routes added back to back, per run"
    )
    parser.add_argument("--runs", type=int, default=5, help="runs of 500 (5,000: half as many + 1)")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        parser.exit(1, "bgp_announce: needs root (network namespaces)\n")
    with tempfile.TemporaryDirectory(prefix="hnbgp-") as work:
        rows = measure(args, Path(work))
    print_table("Desired route -> present at BIRD (ExaBGP 5.0.15 -> BIRD 2.0.12)", rows)
    print(
        "\n  issue 11 targets (from IPInstance creation): "
        + ", ".join(f"{k} {v}" for k, v in TARGETS.items())
    )
    write_json(args.json, {"bgp_announce": rows, "targets": TARGETS})


if __name__ == "__main__":
    main()
