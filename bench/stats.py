"""Summaries every benchmark prints the same way: medians and p90s, never a single run."""

from __future__ import annotations

import json
import statistics
from collections.abc import Sequence
from pathlib import Path
from typing import Any


def percentile(samples: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile (fraction in 0..1) of a non-empty sample."""
    ordered = sorted(samples)
    rank = max(1, round(fraction * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


def summarize_ms(samples_seconds: Sequence[float]) -> dict[str, float]:
    """Median, p90, min and max in milliseconds, rounded to what the noise allows."""
    ms = [s * 1000 for s in samples_seconds]
    return {
        "n": len(ms),
        "median_ms": round(statistics.median(ms), 2),
        "p90_ms": round(percentile(ms, 0.9), 2),
        "min_ms": round(min(ms), 2),
        "max_ms": round(max(ms), 2),
    }


def print_table(title: str, rows: dict[str, dict[str, float]]) -> None:
    print(f"\n{title}")
    print(f"  {'measure':<28}{'n':>6}{'median ms':>12}{'p90 ms':>10}{'min ms':>10}{'max ms':>10}")
    for name, row in rows.items():
        print(
            f"  {name:<28}{row['n']:>6}{row['median_ms']:>12.2f}{row['p90_ms']:>10.2f}"
            f"{row['min_ms']:>10.2f}{row['max_ms']:>10.2f}"
        )


def write_json(path: Path | None, report: dict[str, Any]) -> None:
    text = json.dumps(report, indent=2, sort_keys=True)
    if path is None:
        print(text)
    else:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text + "\n")
        print(f"\nJSON written to {path}")
