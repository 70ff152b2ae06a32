"""NetworkPolicy compile and render cost on one node: 1,000 policies, 2,000 pods.

A synthetic cluster (20 namespaces of 100 pods; labels ``app``, ``tier``, named ports) with
policies of every kind the compiler handles: pod selectors, namespace selectors (matchLabels
and matchExpressions), both together, ipBlocks with excepts, numbered, named and ranged ports,
egress with named ports. This node holds ``--local-pods`` of the pods. Measured, each over
``--rounds`` runs: parsing the policies' specs, compiling, rendering the full script, and the
update after one pod is relabelled (compile + render + diff); beside them the same with no
policies at all, measured in the same run. With ``--apply`` (needs root or user namespaces),
``nft -f`` of the full script inside a fresh network namespace, beside an empty table's.

    python -m bench.policy_compile [--policies 1000] [--pods 2000] [--local-pods 110]
                                   [--rounds 7] [--apply] [--json FILE]
"""

from __future__ import annotations

import argparse
import dataclasses
import ipaddress
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from bench.stats import print_table, summarize_ms, write_json
from hybridnet.policy.compiler import Compilation, compile_node
from hybridnet.policy.model import (
    NamedPort,
    NamespaceInfo,
    PodEndpoint,
    Policy,
    Protocol,
    parse_policy,
)
from hybridnet.policy.render import Ruleset, full_script, ruleset, update_script

NAMESPACES = 20
APPS = 20
TIERS = ("web", "db", "cache")
FRONT_TIERS = {"matchExpressions": [{"key": "tier", "operator": "In", "values": ["web", "cache"]}]}
NODE = (ipaddress.ip_address("198.18.0.10"), ipaddress.ip_address("2001:db8::a"))


def cluster(pod_count: int, local: int) -> tuple[list[PodEndpoint], list[NamespaceInfo]]:
    namespaces = [
        NamespaceInfo(f"ns{n}", {"team": f"t{n % 5}", "env": "prod" if n % 2 else "dev"})
        for n in range(NAMESPACES)
    ]
    pods = []
    for i in range(pod_count):
        host, low = divmod(i + 1, 256)
        pods.append(
            PodEndpoint(
                namespace=f"ns{i % NAMESPACES}",
                name=f"pod{i}",
                labels={"app": f"app{i % APPS}", "tier": TIERS[i % len(TIERS)]},
                addresses=(
                    ipaddress.ip_address(f"10.{host // 256}.{host % 256}.{low}"),
                    ipaddress.ip_address(f"2001:db8:1::{i + 1:x}"),
                ),
                named_ports=(
                    NamedPort("http", Protocol.TCP, 8000 + i % 3),
                    NamedPort("dns", Protocol.UDP, 53),
                ),
                host_interface=f"veth{i}" if i < local else None,
            )
        )
    return pods, namespaces


def policy_specs(count: int, rng: random.Random) -> list[tuple[str, str, dict[str, Any]]]:
    """``count`` (namespace, name, spec) of mixed kinds, deterministic for a seed."""
    specs = []
    for i in range(count):
        namespace = f"ns{i % NAMESPACES}"
        target = {"matchLabels": {"app": f"app{rng.randrange(APPS)}"}}
        kind = i % 5
        if kind == 0:
            spec = {"podSelector": target, "ingress": [{
                "from": [{"podSelector": {"matchLabels": {"app": f"app{rng.randrange(APPS)}"}}}],
                "ports": [{"port": 80}, {"port": "http"}]}]}  # fmt: skip
        elif kind == 1:
            spec = {"podSelector": target, "ingress": [{"from": [{
                "namespaceSelector": {"matchLabels": {"team": f"t{rng.randrange(5)}"}},
                "podSelector": FRONT_TIERS}]}]}  # fmt: skip
        elif kind == 2:
            spec = {"podSelector": target, "policyTypes": ["Egress"], "egress": [
                {"to": [{"ipBlock": {"cidr": "10.0.0.0/16", "except": ["10.0.3.0/24"]}}],
                 "ports": [{"port": 5432, "endPort": 5440}]},
                {"ports": [{"port": "dns", "protocol": "UDP"}]}]}  # fmt: skip
        elif kind == 3:
            spec = {"podSelector": {"matchLabels": {"tier": "db"}}, "ingress": [{"from": [
                {"namespaceSelector": {"matchExpressions": [
                    {"key": "env", "operator": "NotIn", "values": ["dev"]}]}}]}]}  # fmt: skip
        else:
            spec = {"podSelector": target, "policyTypes": ["Ingress", "Egress"], "egress": [
                {"to": [{"podSelector": {"matchLabels": {"tier": "db"}}}],
                 "ports": [{"port": "http"}, {"protocol": "SCTP", "port": 9000}]}]}  # fmt: skip
        specs.append((namespace, f"p{i}", spec))
    return specs


def parse_all(specs: Sequence[tuple[str, str, dict[str, Any]]]) -> list[Policy]:
    return [parse_policy(ns, name, spec).policy for ns, name, spec in specs]


def timed(rounds: int, work: Callable[[], object]) -> tuple[list[float], Any]:
    samples, result = [], None
    for _ in range(rounds):
        started = time.perf_counter()
        result = work()
        samples.append(time.perf_counter() - started)
    return samples, result


def relabelled(pods: list[PodEndpoint]) -> list[PodEndpoint]:
    """One remote pod moved out of its tier: what a label change costs a node."""
    changed = list(pods)
    victim = changed[-1]
    changed[-1] = dataclasses.replace(victim, labels={**victim.labels, "tier": "edge"})
    return changed


def _namespace_prefix() -> list[str]:
    if os.geteuid() == 0:
        return ["unshare", "--net", "--"]
    return ["unshare", "--map-root-user", "--net", "--"]


def apply_seconds(script: str, rounds: int) -> list[float]:
    """Wall time of ``nft -f`` with the script, each in a fresh network namespace."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "table.nft"
        path.write_text(script)
        samples = []
        for _ in range(rounds):
            started = time.perf_counter()
            subprocess.run([*_namespace_prefix(), "nft", "-f", str(path)], check=True)
            samples.append(time.perf_counter() - started)
    return samples


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--policies", type=int, default=1000)
    parser.add_argument("--pods", type=int, default=2000)
    parser.add_argument("--local-pods", type=int, default=110)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--apply", action="store_true", help="also time nft -f (netns)")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    pods, namespaces = cluster(args.pods, args.local_pods)
    specs = policy_specs(args.policies, random.Random(15))  # noqa: S311 (a fixed mix, not secrets)
    policies = parse_all(specs)
    rows: dict[str, dict[str, float]] = {}
    samples, _ = timed(args.rounds, lambda: parse_all(specs))
    rows["parse policies"] = summarize_ms(samples)
    figures = {}
    for label, chosen in (("none", []), (f"{args.policies}", policies)):
        figures[label] = measure(label, chosen, pods, namespaces, args=args, rows=rows)
    print_table(
        f"{args.policies} policies, {args.pods} pods, {args.local_pods} on this node "
        f"({args.rounds} rounds)",
        rows,
    )
    if args.json:
        report = {"benchmark": "policy_compile", "rows": rows, "figures": figures}
        write_json(
            args.json, report | {"args": {k: v for k, v in vars(args).items() if k != "json"}}
        )
    return 0


def measure(
    label: str,
    chosen: list[Policy],
    pods: list[PodEndpoint],
    namespaces: list[NamespaceInfo],
    *,
    args: argparse.Namespace,
    rows: dict[str, dict[str, float]],
) -> dict[str, int]:
    """Adds the rows of one policy set; returns its sizes."""
    moved = relabelled(pods)
    samples, compiled = timed(args.rounds, lambda: compile_node(chosen, pods, namespaces, NODE))
    rows[f"compile ({label})"] = summarize_ms(samples)
    samples, (rendered, script) = timed(args.rounds, lambda: render(compiled))
    rows[f"render ({label})"] = summarize_ms(samples)

    def update() -> str:
        return update_script(rendered, ruleset(compile_node(chosen, moved, namespaces, NODE)))

    samples, diff = timed(args.rounds, update)
    rows[f"relabel update ({label})"] = summarize_ms(samples)
    sizes = {
        "rules": rendered.rule_count,
        "elements": rendered.element_count,
        "pod_chains": len(rendered.chains),
        "script_bytes": len(script),
        "relabel_commands": len(diff.splitlines()),
        "problems": len(compiled.problems),
    }
    print(
        f"{label} policies: {sizes['rules']} rules, {sizes['elements']} set and map elements, "
        f"{sizes['pod_chains']} pod chains, full script {sizes['script_bytes']} bytes; "
        f"relabel update {sizes['relabel_commands']} commands; {sizes['problems']} problems"
    )
    if args.apply and shutil.which("nft"):
        rows[f"nft -f, new netns ({label})"] = summarize_ms(apply_seconds(script, args.rounds))
    return sizes


def render(compiled: Compilation) -> tuple[Ruleset, str]:
    rendered = ruleset(compiled)
    return rendered, full_script(rendered)


if __name__ == "__main__":
    sys.exit(main())
