"""Allocator core throughput and memory: a /16 IPv4 and a /64 IPv6 subnet.

Prints allocations per second (median of several rounds; each round allocates into a fresh
allocator) and the memory held after 10,000 allocations in each subnet (tracemalloc), with the
/64 : /16 memory ratio. Targets on the 2-core reference machine: >= 50,000 allocations/s, and the
two memory figures within 10% of each other.

    python -m bench.ipam_allocator [--allocations 50000] [--rounds 5] [--json FILE]
"""

from __future__ import annotations

import argparse
import gc
import statistics
import sys
import time
import tracemalloc
from pathlib import Path
from typing import Any

from bench.stats import write_json
from hybridnet.ipamcore.allocator import Allocator, Request, SubnetConfig
from hybridnet.ipamcore.pool import RangeSpec

SUBNETS = {
    "ipv4 /16": ("IPv4", RangeSpec(cidr="198.18.0.0/16", gateway="198.18.0.1")),
    "ipv6 /64": ("IPv6", RangeSpec(cidr="2001:db8:1::/64", gateway="2001:db8:1::1")),
}
MEMORY_ALLOCATIONS = 10_000


def fresh_allocator(spec: RangeSpec) -> Allocator:
    allocator = Allocator()
    allocator.set_network("bench")
    allocator.set_subnet(SubnetConfig(name="s", network="bench", range=spec))
    return allocator


def allocations_per_second(family: Any, spec: RangeSpec, count: int) -> float:
    allocator = fresh_allocator(spec)
    requests = [Request(f"bench/pod-{i}", "bench", family=family) for i in range(count)]
    gc.collect()
    started = time.perf_counter()
    for request in requests:
        allocator.allocate(request)
    return count / (time.perf_counter() - started)


def memory_after(family: Any, spec: RangeSpec, count: int) -> int:
    """Bytes held by an allocator (with its subnet) after ``count`` allocations."""
    requests = [Request(f"bench/pod-{i}", "bench", family=family) for i in range(count)]
    gc.collect()
    tracemalloc.start()
    try:
        allocator = fresh_allocator(spec)
        for request in requests:
            allocator.allocate(request)
        gc.collect()
        held = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    del allocator
    return held


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--allocations", type=int, default=50_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    report: dict[str, Any] = {"benchmark": "ipam_allocator", "subnets": {}}
    print(f"{'subnet':<10}{'allocs/s (median)':>20}{'min':>10}{'max':>10}{'memory 10k':>14}")
    for label, (family, spec) in SUBNETS.items():
        rates = [allocations_per_second(family, spec, args.allocations) for _ in range(args.rounds)]
        memory = memory_after(family, spec, MEMORY_ALLOCATIONS)
        median = statistics.median(rates)
        report["subnets"][label] = {
            "allocations_per_second_median": round(median),
            "rounds": [round(r) for r in rates],
            "memory_bytes_after_10k": memory,
        }
        print(
            f"{label:<10}{median:>20,.0f}{min(rates):>10,.0f}{max(rates):>10,.0f}"
            f"{memory / 1024:>11,.0f} KiB"
        )
    v4 = report["subnets"]["ipv4 /16"]["memory_bytes_after_10k"]
    v6 = report["subnets"]["ipv6 /64"]["memory_bytes_after_10k"]
    report["memory_ratio_v6_to_v4"] = round(v6 / v4, 3)
    print(f"memory /64 : /16 = {v6 / v4:.3f}  (target: within 0.90-1.10)")
    if args.json:
        write_json(args.json, report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
