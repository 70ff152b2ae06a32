"""hybridnet's CNI ADD/DEL latency beside the reference bridge + host-local, and a 100-pod burst.

A node namespace runs ``hybridnet-daemon`` on the embedded store; the real ``hybridnet-cni`` is
executed the way a runtime executes it (hybridnet/lab/cni_runtime.py), into fresh pod
namespaces. The reference chain is measured in the same run (bench/cni_baseline.py) and the
ratio printed. Targets on the 2-core reference machine: ADD median <= 150 ms and within 8x the
reference; 100 concurrent ADDs done in <= 10 s with no failure.

    python -m bench.cni_hybridnet [--runs 30] [--burst 100] [--json FILE]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from bench import cni_baseline
from bench.stats import print_table, summarize_ms, write_json
from hybridnet import lab
from hybridnet.lab import daemon as lab_daemon
from hybridnet.lab.cni_runtime import Attachment, CniRuntime


def _runtime(socket: Path, plugin_dir: Path, cache: Path) -> CniRuntime:
    conflist = {
        "cniVersion": "1.1.0",
        "name": "hybridnet",
        "plugins": [{"type": "hybridnet", "socket": str(socket)}],
    }
    return CniRuntime(conflist, [str(plugin_dir)], cache)


def _attachment(pod: lab.Namespace) -> Attachment:
    return Attachment(
        container_id=pod.name,
        netns=pod.path,
        ifname="eth0",
        args={"K8S_POD_NAMESPACE": "bench", "K8S_POD_NAME": pod.name},
    )


def measure(runs: int, burst: int) -> dict[str, Any]:
    with lab.testbed_run() as bed, tempfile.TemporaryDirectory(prefix="hnt-bench-") as tmp:
        work = Path(tmp)
        node = lab.create_namespace(bed.name("node1"))
        node.sysctl("net.ipv4.ip_forward", "1")
        daemon, socket = lab_daemon.start_embedded_daemon(
            node, work, "198.19.0.0/16", None, "--log-level", "warning"
        )
        plugin_dir = lab_daemon.plugin_dir(work / "bin")
        runtime = _runtime(socket, plugin_dir, work / "cache")
        pods = [lab.create_namespace(bed.unique("pod")) for _ in range(runs + 3)]
        print(f"hybridnet: {runs} ADDs then DELs (+3 warm-up)", file=sys.stderr)
        for pod in pods:
            runtime.add(_attachment(pod))
        for pod in pods:
            runtime.delete(_attachment(pod))
        add = [c.seconds for c in runtime.calls if c.command == "ADD"][3:]
        delete = [c.seconds for c in runtime.calls if c.command == "DEL"][3:]
        burst_pods = [lab.create_namespace(bed.unique("burst")) for _ in range(burst)]
        print(
            f"hybridnet: {burst} concurrent ADDs (8 at a time, as a busy kubelet)", file=sys.stderr
        )
        burst_runtime = _runtime(socket, plugin_dir, work / "cache-burst")
        started = time.perf_counter()
        failures = 0
        with ThreadPoolExecutor(8) as pool:
            for outcome in pool.map(lambda p: _try_add(burst_runtime, p), burst_pods):
                failures += not outcome
        burst_seconds = time.perf_counter() - started
        daemon.stop()
        for pod in [*pods, *burst_pods]:
            pod.delete()
        node.delete()
    return {
        "add": summarize_ms(add),
        "del": summarize_ms(delete),
        "burst": {"pods": burst, "seconds": round(burst_seconds, 2), "failures": failures},
    }


def _try_add(runtime: CniRuntime, pod: lab.Namespace) -> bool:
    try:
        runtime.add(_attachment(pod))
    except Exception:
        return False
    return True


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--burst", type=int, default=100)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    reference = cni_baseline.run(args.runs)
    ours = measure(args.runs, args.burst)
    print_table(
        "CNI latency, same run",
        {
            "bridge+host-local ADD": reference["add"],
            "bridge+host-local DEL": reference["del"],
            "hybridnet ADD": ours["add"],
            "hybridnet DEL": ours["del"],
        },
    )
    ratio = ours["add"]["median_ms"] / reference["add"]["median_ms"]
    print(
        f"\n  ADD median ratio hybridnet / reference: {ratio:.2f}x  (target <= 8x, and <= 150 ms)"
    )
    burst = ours["burst"]
    print(
        f"  {burst['pods']}-pod burst: {burst['seconds']} s, {burst['failures']} failures "
        f"(target <= 10 s, none)"
    )
    if args.json:
        write_json(
            args.json,
            {
                "benchmark": "cni_hybridnet",
                "reference": reference,
                "hybridnet": ours,
                "add_median_ratio": round(ratio, 2),
            },
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
