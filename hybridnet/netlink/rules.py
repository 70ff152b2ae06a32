"""Policy routing rules."""

from __future__ import annotations

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError

EEXIST = 17


def ensure_lookup(ipr: IPRoute, table: int, priority: int, family: int) -> None:
    """``from all lookup TABLE pref PRIORITY`` for the family, unless present."""
    for rule in ipr.get_rules(family=family):
        if rule.get("FRA_PRIORITY") == priority and rule.get("FRA_TABLE") == table:
            return
    try:
        ipr.rule("add", table=table, priority=priority, family=family)
    except NetlinkError as exc:
        if exc.code != EEXIST:
            raise
