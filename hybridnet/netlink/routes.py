"""Routes, in the main table or a numbered one."""

from __future__ import annotations

import ipaddress
from typing import Any

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError

ESRCH = 3
EEXIST = 17
MAIN_TABLE = 254


def _family(dst: str) -> int:
    return 10 if ipaddress.ip_network(dst, strict=False).version == 6 else 2


def ensure(
    ipr: IPRoute,
    dst: str,
    *,
    oif: int,
    gateway: str | None = None,
    table: int = MAIN_TABLE,
    scope_link: bool = False,
) -> None:
    """Add or replace the route to ``dst`` (CIDR or ``default``) in ``table``."""
    family = 10 if (gateway and ":" in gateway) or (":" in dst) else 2
    spec: dict[str, Any] = {"dst": dst, "oif": oif, "table": table, "family": family}
    if dst == "default":
        spec["dst"] = "::/0" if family == 10 else "0.0.0.0/0"
    if gateway:
        spec["gateway"] = gateway
    if scope_link:
        spec["scope"] = 253
    ipr.route("replace", **spec)


def delete(ipr: IPRoute, dst: str, *, table: int = MAIN_TABLE) -> bool:
    """Remove the route to ``dst`` from ``table``; False when there was none."""
    try:
        ipr.route("del", dst=dst, table=table, family=_family(dst))
    except NetlinkError as exc:
        if exc.code not in (ESRCH,):
            raise
        return False
    return True


def in_table(ipr: IPRoute, table: int, family: int) -> dict[str, int]:
    """Destination (CIDR) -> output link index of every route in ``table``."""
    found = {}
    for route in ipr.get_routes(table=table, family=family):
        dst = route.get("RTA_DST")
        if dst is None:
            continue
        found[f"{dst}/{route['dst_len']}"] = int(route.get("RTA_OIF") or 0)
    return found


def has_default(ipr: IPRoute, family: int) -> bool:
    """Whether the main table has a default route of the family."""
    return any(route["dst_len"] == 0 for route in ipr.get_routes(table=MAIN_TABLE, family=family))
