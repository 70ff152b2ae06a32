"""Start-up time of the hybridnet CNI plugin: the VERSION command, executed like a runtime does.

The plugin is measured as ``hybridnet-daemon install`` writes it (the bundled zip application,
run with ``-I -S``). VERSION makes no daemon call, so this is the cost every CNI call pays before
any work: the interpreter, the plugin's imports, parsing and printing. STATUS against a socket
nobody listens on adds what every daemon call pays on top (the gRPC client's imports and a
refused connection), without daemon work. Printed beside two baselines from the same run:
``python -I -S -c pass`` (the interpreter alone, the floor for any Python plugin) and the
reference ``bridge`` plugin's VERSION (a Go binary, what runtimes are used to). Needs no root.

    python -m bench.cni_startup --runs 50 [--json bench/results/cni_startup.json]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench.stats import print_table, summarize_ms, write_json
from hybridnet.daemon import bundle
from hybridnet.daemon import install as installer

REFERENCE_PLUGIN = "/usr/lib/cni/bridge"
WARMUP_RUNS = 3
VERSION_STDIN = json.dumps({"cniVersion": "1.1.0"}).encode()
STATUS_STDIN = json.dumps(
    {"cniVersion": "1.1.0", "name": "bench", "type": "hybridnet", "socket": "/nonexistent.sock"}
).encode()


def install_plugin(directory: Path) -> str:
    """The plugin exactly as installed on a node."""
    return str(installer.install_plugin(bundle.default_interpreter(), directory))


def time_runs(
    argv: Sequence[str], stdin: bytes, runs: int, command: str = "VERSION", exit_code: int = 0
) -> list[float]:
    """Seconds per run of ``argv`` with CNI_COMMAND=``command``, after a few warm-up runs."""
    env = {"CNI_COMMAND": command, "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}
    samples = []
    for n in range(WARMUP_RUNS + runs):
        started = time.perf_counter()
        done = subprocess.run(argv, input=stdin, env=env, capture_output=True, check=False)
        elapsed = time.perf_counter() - started
        if done.returncode != exit_code:
            raise SystemExit(f"{argv[0]} failed: {done.stdout!r} {done.stderr!r}")
        if n >= WARMUP_RUNS:
            samples.append(elapsed)
    return samples


def run(runs: int, plugin: str) -> dict[str, Any]:
    floor = [bundle.default_interpreter(), "-I", "-S", "-c", "pass"]
    measures = {
        "python -I -S -c pass": time_runs(floor, b"", runs),
        "hybridnet VERSION": time_runs([plugin], VERSION_STDIN, runs),
        # STATUS with no daemon listening: the path every daemon call takes (client loaded,
        # connection refused at once), without the daemon's own work.
        "hybridnet STATUS, no daemon": time_runs(
            [plugin], STATUS_STDIN, runs, command="STATUS", exit_code=1
        ),
    }
    if Path(REFERENCE_PLUGIN).exists():
        measures["bridge VERSION (reference)"] = time_runs([REFERENCE_PLUGIN], VERSION_STDIN, runs)
    else:
        print(f"{REFERENCE_PLUGIN} not found: no reference baseline", file=sys.stderr)
    summaries = {name: summarize_ms(samples) for name, samples in measures.items()}
    ratios = {
        f"{ours} / {name}": round(summaries[ours]["median_ms"] / summary["median_ms"], 2)
        for ours in ("hybridnet VERSION", "hybridnet STATUS, no daemon")
        for name, summary in summaries.items()
        if not name.startswith("hybridnet") and summary["median_ms"] > 0
    }
    return {"benchmark": "cni_startup", "runs": runs, "results": summaries, "ratios": ratios}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=50, help="measured runs each (default 50)")
    parser.add_argument("--json", type=Path, help="also write the report as JSON here")
    args = parser.parse_args()
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    with tempfile.TemporaryDirectory(prefix="hybridnet-bench-") as directory:
        report = run(args.runs, install_plugin(Path(directory)))
    print_table(f"CNI plugin start-up (VERSION), {args.runs} runs each", report["results"])
    print("\n  ratios of medians")
    for name, ratio in report["ratios"].items():
        print(f"  {name:<58}{ratio:>8.2f}x")
    if args.json:
        write_json(args.json, report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
