"""Netlink sockets for the node's namespace and for a pod's namespace (by path)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from pyroute2 import IPRoute

Socket = IPRoute
"""The netlink socket type callers pass around (so only this package names pyroute2)."""


class NetnsGone(Exception):
    """The pod's network namespace does not exist (any more)."""


@contextlib.contextmanager
def node() -> Iterator[IPRoute]:
    """A netlink socket in the caller's own namespace (the node's)."""
    with IPRoute() as ipr:
        yield ipr


@contextlib.contextmanager
def pod(path: str) -> Iterator[IPRoute]:
    """A netlink socket inside the namespace at ``path``; never creates it (flags=0)."""
    try:
        ipr = IPRoute(netns=path, flags=0)
    except (FileNotFoundError, OSError) as exc:
        raise NetnsGone(f"network namespace {path} does not exist") from exc
    with ipr:
        yield ipr
