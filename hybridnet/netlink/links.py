"""veth pairs and link state."""

from __future__ import annotations

import dataclasses

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError

from hybridnet.netlink.ns import NetnsGone

ENODEV = 19


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


def names(ipr: IPRoute) -> list[str]:
    return [str(link.get("IFLA_IFNAME")) for link in ipr.get_links()]


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
    )


def create_veth_into(
    ipr: IPRoute, host_name: str, peer_name: str, pod_netns: str, mtu: int
) -> None:
    """Create a veth pair whose peer lands directly in ``pod_netns`` (a path), so no
    half-moved state is ever visible. Precondition: neither end exists."""
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
