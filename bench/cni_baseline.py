"""CNI ADD/DEL latency of the reference bridge + host-local plugins, driven like a runtime.

The baseline later benchmarks print hybridnet's figures beside. A node namespace plays the host
(the bridge lives there, never in the root namespace); each pod gets a fresh namespace; the
plugins are executed by hybridnet/lab/cni_runtime.py exactly as libcni would (env, stdin,
cached result as prevResult on DEL). The measuring loop itself runs inside the node namespace
so that the figures contain the plugin's work and not ``ip netns exec``.

    python -m bench.cni_baseline --runs 50 [--json bench/results/cni_baseline.json]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from bench.stats import print_table, summarize_ms, write_json
from hybridnet import lab
from hybridnet.lab.cni_runtime import Attachment, CniRuntime

REFERENCE_PLUGIN_DIRS = ["/usr/lib/cni", "/opt/cni/bin"]
POD_RANGE = "198.19.0.0/16"
WARMUP_RUNS = 3


def reference_conflist(data_dir: Path) -> dict[str, Any]:
    """bridge + host-local as a typical single-node runtime configures them (no masquerade)."""
    return {
        "cniVersion": "1.0.0",
        "name": "bench-bridge",
        "plugins": [
            {
                "type": "bridge",
                "bridge": "cni0",
                "isGateway": True,
                "ipMasq": False,
                "ipam": {
                    "type": "host-local",
                    "ranges": [[{"subnet": POD_RANGE}]],
                    "dataDir": str(data_dir),
                },
            }
        ],
    }


def measure(pod_namespaces: list[str], work: Path) -> dict[str, list[float]]:
    """ADD every pod, then DEL every pod; return per-call seconds. Runs inside the node netns."""
    runtime = CniRuntime(reference_conflist(work / "ipam"), REFERENCE_PLUGIN_DIRS, work / "cache")
    attachments = [
        Attachment(container_id=f"bench{i:05d}", netns=f"/run/netns/{name}")
        for i, name in enumerate(pod_namespaces)
    ]
    for attachment in attachments:
        runtime.add(attachment)
    for attachment in attachments:
        runtime.delete(attachment)
    samples: dict[str, list[float]] = {"ADD": [], "DEL": []}
    for call in runtime.calls:
        samples[call.command].append(call.seconds)
    return {command: values[WARMUP_RUNS:] for command, values in samples.items()}


def run(runs: int) -> dict[str, Any]:
    with lab.testbed_run() as bed, tempfile.TemporaryDirectory(prefix="hnt-bench-") as tmp:
        node = lab.create_namespace(bed.name("node1"))
        pods = [lab.create_namespace(bed.unique("pod")) for _ in range(runs + WARMUP_RUNS)]
        print(
            f"driving bridge + host-local: {runs} ADDs then {runs} DELs (+{WARMUP_RUNS} warm-up)",
            file=sys.stderr,
        )
        inner = node.exec(
            [sys.executable, "-m", "bench.cni_baseline", "--inside", tmp, *[p.name for p in pods]],
            timeout=60 + runs * 5,
        )
        samples = json.loads(inner.stdout)
        for pod in pods:
            pod.delete()
        node.delete()
    return {
        "benchmark": "cni_baseline",
        "plugins": "bridge + host-local (containernetworking-plugins)",
        "plugin_version": _plugin_version(),
        "add": summarize_ms(samples["ADD"]),
        "del": summarize_ms(samples["DEL"]),
    }


def _plugin_version() -> str:
    done = subprocess.run(
        ["dpkg-query", "-W", "-f=${Version}", "containernetworking-plugins"],
        capture_output=True,
        text=True,
        check=False,
    )
    return done.stdout.strip() or "unknown"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=50, help="measured pods (default 50)")
    parser.add_argument("--json", type=Path, help="also write the report as JSON here")
    parser.add_argument("--inside", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.inside:
        work, *namespaces = args.inside
        print(json.dumps(measure(namespaces, Path(work))))
        return 0
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    report = run(args.runs)
    print_table(
        f"CNI latency, {report['plugins']} {report['plugin_version']}",
        {"ADD": report["add"], "DEL": report["del"]},
    )
    write_json(args.json, report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
