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


def read_path(path: str) -> str | None:
    """The value of the sysctl at ``path`` (relative to /proc/sys, ``/``-separated, so link
    names with dots stay whole), None when it does not exist (e.g. its link is missing)."""
    try:
        return (PROC_SYS / path).read_text().strip()
    except FileNotFoundError:
        return None


def write_path(path: str, value: str) -> None:
    """Set the sysctl at ``path`` (see :func:`read_path`); raises OSError."""
    (PROC_SYS / path).write_text(value)
