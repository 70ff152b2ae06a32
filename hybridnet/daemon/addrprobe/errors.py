"""The address check's errors: each names the interface, the address and what was seen, so the
message alone tells a platform engineer where to look."""

from __future__ import annotations

import ipaddress

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class AddressCheckError(Exception):
    """Base of the address check's errors; ``ifname`` is the interface the check ran on."""

    def __init__(self, ifname: str, message: str):
        super().__init__(message)
        self.ifname = ifname


class AddressInUse(AddressCheckError):
    """Another host on the segment holds (or is claiming) the address: ``mac`` is that host's."""

    def __init__(self, address: IPAddress, mac: str, ifname: str, evidence: str):
        super().__init__(
            ifname,
            f"address {address} is already in use on {ifname}: {mac} {evidence}; "
            "find the host with that MAC, or take the address out of the pool",
        )
        self.address = address
        self.mac = mac
        self.evidence = evidence


class GatewayUnreachable(AddressCheckError):
    """No answer from the gateway within the probe's window: wrong VLAN, wrong gateway address
    in the subnet, or the gateway is down."""

    def __init__(self, gateway: IPAddress, ifname: str, requests: int, waited: float):
        protocol = "ARP" if gateway.version == 4 else "neighbor discovery"
        super().__init__(
            ifname,
            f"gateway {gateway} does not answer on {ifname}: no {protocol} reply to {requests} "
            f"request(s) in {waited:.2f} s; check the subnet's gateway address and that "
            f"{ifname} is on the gateway's VLAN",
        )
        self.gateway = gateway
        self.requests = requests
        self.waited = waited


class ProbeFailed(AddressCheckError):
    """The check could not run at all (no such interface, no permission, interface down): it
    says nothing about the address."""

    def __init__(self, ifname: str, reason: str, errno: int | None = None):
        super().__init__(ifname, f"cannot check addresses on {ifname}: {reason}")
        self.reason = reason
        self.errno = errno
