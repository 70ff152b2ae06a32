"""Sysctls of the caller's namespace (via /proc/sys, which is per network namespace)."""

from __future__ import annotations

from pathlib import Path

PROC_SYS = Path("/proc/sys")


def set_interface(version: int, ifname: str, name: str, value: str) -> None:
    """``net.ipv{4,6}.conf.IFNAME.NAME = value`` (built as a path: names may contain dots)."""
    (PROC_SYS / "net" / f"ipv{version}" / "conf" / ifname / name).write_text(value)


def get_interface(version: int, ifname: str, name: str) -> str:
    return (PROC_SYS / "net" / f"ipv{version}" / "conf" / ifname / name).read_text().strip()


def set_neighbour(version: int, ifname: str, name: str, value: str) -> None:
    """``net.ipv{4,6}.neigh.IFNAME.NAME = value``."""
    (PROC_SYS / "net" / f"ipv{version}" / "neigh" / ifname / name).write_text(value)
