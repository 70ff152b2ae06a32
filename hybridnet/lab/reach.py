"""Who reaches whom: a ping matrix between a cluster's pods, IPv4 and IPv6, and its table."""

from __future__ import annotations

import concurrent.futures
import dataclasses
from collections.abc import Sequence

from hybridnet.lab.cluster import ClusterPod
from hybridnet.lab.netns import Namespace
from hybridnet.lab.tables import render

REPLY_DEADLINE = 10
"""Seconds a ping keeps asking (every 0.2 s) before a pair counts as unreachable. A pair that
works answers at once; the first packets after an ADD may wait for the node's reconcile
(an IPv6 proxy entry), which takes well under a second."""
PARALLEL = 8


@dataclasses.dataclass(frozen=True)
class Reach:
    source: str
    target: str
    version: int
    ok: bool


def answers(namespace: Namespace, address: str, deadline: int = REPLY_DEADLINE) -> bool:
    """True as soon as one echo request from ``namespace`` to ``address`` gets a reply."""
    argv = ["ping", "-n", "-q", "-c", "1", "-i", "0.2", "-w", str(deadline), address]
    return namespace.exec(argv, check=False, timeout=deadline + 10).returncode == 0


def ping_matrix(pods: Sequence[ClusterPod], versions: Sequence[int] = (4, 6)) -> list[Reach]:
    """Every pod pings every other pod, in each family both have; pings run side by side."""
    pairs = [
        (source, target, version)
        for source in pods
        for target in pods
        if source is not target
        for version in versions
        if _has(source, version) and _has(target, version)
    ]
    with concurrent.futures.ThreadPoolExecutor(PARALLEL) as pool:
        results = pool.map(lambda p: answers(p[0].netns, p[1].address(p[2])), pairs)
        return [Reach(s.name, t.name, v, ok) for (s, t, v), ok in zip(pairs, results, strict=True)]


def _has(pod: ClusterPod, version: int) -> bool:
    return any((":" in a) == (version == 6) for a in pod.addresses)


def render_matrix(pods: Sequence[ClusterPod], reaches: Sequence[Reach]) -> str:
    """One row per source, one column per target; a cell lists the families that answered
    (``4 6``), ``FAIL`` marks a family that did not."""
    found = {(r.source, r.target, r.version): r.ok for r in reaches}

    def cell(source: str, target: str) -> str:
        if source == target:
            return "-"
        parts = []
        for version in (4, 6):
            ok = found.get((source, target, version))
            if ok is not None:
                parts.append(str(version) if ok else f"FAIL{version}")
        return " ".join(parts) or "n/a"

    names = [p.name for p in pods]
    rows = [[source, *(cell(source, target) for target in names)] for source in names]
    return render("ping matrix (from row to column; 4 6 = IPv4 and IPv6 answered)",
                  ["from \\ to", *names], rows)  # fmt: skip
