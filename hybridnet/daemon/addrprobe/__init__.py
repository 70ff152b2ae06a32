"""The underlay address check: before a pod takes an address from the fabric, ask the segment
whether anyone holds it and whether the gateway is there; once the pod has it, announce it.

IPv4 uses ARP (RFC 5227 probes and announcements), IPv6 neighbor discovery (RFC 4862 duplicate
address detection, RFC 4861 unsolicited advertisements). Everything is sent from the MAC of the
interface given, the one the node answers for its underlay pods on, and works in the calling
thread's network namespace, so the daemon's concurrent ADDs each probe on their own socket::

    result = addrprobe.probe(ifname, address, gateway)  # AddressInUse, GatewayUnreachable,
    ...                                                  # ProbeFailed
    addrprobe.announce(ifname, address)                  # once the pod's routes are in place

Modules: ``frames`` (scapy, building and parsing), ``verdict`` (what a received packet means,
pure), ``link`` (the packet socket), ``check`` (the probe window and the announcements).
"""

from hybridnet.daemon.addrprobe.check import (
    DEFAULT_ANNOUNCE_INTERVAL,
    DEFAULT_ANNOUNCEMENTS,
    DEFAULT_PROBES,
    DEFAULT_TIMEOUT,
    ProbeResult,
    announce,
    announce_ipv4,
    announce_ipv6,
    probe,
    probe_ipv4,
    probe_ipv6,
)
from hybridnet.daemon.addrprobe.errors import (
    AddressCheckError,
    AddressInUse,
    GatewayUnreachable,
    ProbeFailed,
)

__all__ = [
    "DEFAULT_ANNOUNCEMENTS",
    "DEFAULT_ANNOUNCE_INTERVAL",
    "DEFAULT_PROBES",
    "DEFAULT_TIMEOUT",
    "AddressCheckError",
    "AddressInUse",
    "GatewayUnreachable",
    "ProbeFailed",
    "ProbeResult",
    "announce",
    "announce_ipv4",
    "announce_ipv6",
    "probe",
    "probe_ipv4",
    "probe_ipv6",
]
