"""veth pairs, link state and link aliases (IFLA_IFALIAS, ``ip link set ... alias``)."""

from __future__ import annotations

import dataclasses

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError

from hybridnet.netlink.ns import NetnsGone

ENODEV = 19
MAX_ALIAS_BYTES = 255
"""The kernel keeps an alias of up to IFALIASZ (256) bytes, its NUL included."""


def index(ipr: IPRoute, name: str) -> int | None:
    """The link's index, None when there is no such link."""
    found = ipr.link_lookup(ifname=name)
    return int(found[0]) if found else None


@dataclasses.dataclass(frozen=True)
class LinkState:
    index: int
    mac: str
    mtu: int
    up: bool
    alias: str | None


def aliases(ipr: IPRoute) -> dict[str, str]:
    """Name -> alias of every link that has an alias."""
    found = {}
    for link in ipr.get_links():
        alias = link.get("IFLA_IFALIAS")
        if alias:
            found[str(link.get("IFLA_IFNAME"))] = str(alias)
    return found


def state(ipr: IPRoute, name: str) -> LinkState | None:
    """What the kernel says of a link, None when there is no such link."""
    idx = index(ipr, name)
    if idx is None:
        return None
    (link,) = ipr.get_links(idx)
    return LinkState(
        index=idx,
        mac=str(link.get("IFLA_ADDRESS")),
        mtu=int(link.get("IFLA_MTU")),
        up=bool(link["flags"] & 1),
        alias=link.get("IFLA_IFALIAS") or None,
    )


def create_veth_into(
    ipr: IPRoute, host_name: str, peer_name: str, pod_netns: str, mtu: int, *, alias: str
) -> None:
    """Create a veth pair whose peer lands directly in ``pod_netns`` (a path), so no
    half-moved state is ever visible, and give the host end ``alias``. Precondition: neither
    end exists.

    The kernel ignores an alias in the request that creates a link, so it is set right after;
    if that fails the pair is deleted again (a process killed in between leaves a pair without
    the alias, which a delete by name still removes). ``alias`` must fit in MAX_ALIAS_BYTES."""
    if len(alias.encode()) > MAX_ALIAS_BYTES:
        raise ValueError(f"link alias {alias!r} is longer than {MAX_ALIAS_BYTES} bytes")
    try:
        ipr.link(
            "add",
            ifname=host_name,
            kind="veth",
            mtu=mtu,
            peer={"ifname": peer_name, "net_ns_fd": pod_netns, "mtu": mtu},
        )
    except FileNotFoundError as exc:
        raise NetnsGone(f"network namespace {pod_netns} does not exist") from exc
    try:
        idx = index(ipr, host_name)
        if idx is None:
            raise NetlinkError(ENODEV, f"no link {host_name}")
        ipr.link("set", index=idx, ifalias=alias)
    except BaseException:
        delete(ipr, host_name)
        raise


def set_up(ipr: IPRoute, name: str, mac: str | None = None) -> int:
    idx = index(ipr, name)
    if idx is None:
        raise NetlinkError(ENODEV, f"no link {name}")
    if mac:
        ipr.link("set", index=idx, address=mac)
    ipr.link("set", index=idx, state="up")
    return idx


def delete(ipr: IPRoute, name: str) -> bool:
    """Delete a link; False when it was already gone (deleting one veth end removes both)."""
    idx = index(ipr, name)
    if idx is None:
        return False
    try:
        ipr.link("del", index=idx)
    except NetlinkError as exc:
        if exc.code != ENODEV:
            raise
        return False
    return True
