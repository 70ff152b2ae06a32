"""Interface addresses."""

from __future__ import annotations

import ipaddress

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError

EEXIST = 17
IFA_F_NODAD = 0x02
IFA_F_NOPREFIXROUTE = 0x200


def ensure(ipr: IPRoute, idx: int, cidr: str, *, prefix_route: bool = True) -> None:
    """Add ``cidr`` to the link unless present. Without ``prefix_route`` the kernel adds no
    connected route for the subnet (pod traffic goes through the gateway instead); IPv6
    addresses skip duplicate address detection (the IPAM guarantees uniqueness)."""
    interface = ipaddress.ip_interface(cidr)
    flags = 0 if prefix_route else IFA_F_NOPREFIXROUTE
    if interface.version == 6:
        flags |= IFA_F_NODAD
    try:
        ipr.addr(
            "add",
            index=idx,
            address=str(interface.ip),
            prefixlen=interface.network.prefixlen,
            IFA_FLAGS=flags,
        )
    except NetlinkError as exc:
        if exc.code != EEXIST:
            raise


def listed(ipr: IPRoute, idx: int) -> set[str]:
    """The link's global-scope addresses in CIDR form."""
    return {
        f"{a.get('IFA_ADDRESS')}/{a['prefixlen']}"
        for a in ipr.get_addr(index=idx)
        if a["scope"] == 0
    }
