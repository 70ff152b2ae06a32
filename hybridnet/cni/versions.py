"""The CNI spec versions the plugin speaks, and which commands each of them knows."""

from __future__ import annotations

SUPPORTED = ("0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0")
LATEST = SUPPORTED[-1]

# The first spec version that has each command (a runtime speaking an older version cannot
# ask for it, so a request that does is refused with "incompatible version").
INTRODUCED = {"ADD": "0.3.0", "DEL": "0.3.0", "VERSION": "0.3.0", "CHECK": "0.4.0",
              "STATUS": "1.1.0", "GC": "1.1.0"}  # fmt: skip


def key(version: str) -> tuple[int, ...]:
    """Sort key of a supported version string."""
    return tuple(int(part) for part in version.split("."))


def is_legacy(version: str) -> bool:
    """0.3.x and 0.4.0 results carry ``"version": "4"|"6"`` in each IP entry; 1.x do not."""
    return key(version) < (1, 0, 0)


def allows(version: str, command: str) -> bool:
    return key(version) >= key(INTRODUCED[command])
