"""The datapath's errors. Each names the object it is about; apply reports them per
operation instead of stopping at the first, so one bad object never blocks the others."""

from __future__ import annotations

from hybridnet.daemon.datapath.model import Kind


class DatapathError(Exception):
    """Base of every datapath error."""


class ObserveError(DatapathError):
    """The kernel's state could not be read (netlink or nft failed)."""


class ApplyError(DatapathError):
    """An operation failed. ``subject`` describes the object, ``errno`` is the kernel's
    code when it refused (None for other failures)."""

    def __init__(self, subject: str, message: str, errno: int | None = None):
        super().__init__(f"{subject}: {message}")
        self.subject = subject
        self.errno = errno


class LinkError(ApplyError):
    pass


class SysctlError(ApplyError):
    pass


class FdbError(ApplyError):
    pass


class NeighbourError(ApplyError):
    pass


class RouteError(ApplyError):
    pass


class RuleError(ApplyError):
    pass


class PacketFilterError(ApplyError):
    pass


class PolicyTableError(ApplyError):
    """The NetworkPolicy table could not be written; the kernel kept the previous one whole
    (every write is one nft transaction)."""


ERROR_BY_KIND: dict[Kind, type[ApplyError]] = {
    Kind.LINK: LinkError,
    Kind.SYSCTL: SysctlError,
    Kind.FDB: FdbError,
    Kind.NEIGHBOUR: NeighbourError,
    Kind.ROUTE: RouteError,
    Kind.RULE: RuleError,
    Kind.PACKET_FILTER: PacketFilterError,
    Kind.NETWORK_POLICY: PolicyTableError,
}
