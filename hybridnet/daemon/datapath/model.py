"""The kernel objects the node datapath owns, as frozen values.

Every object has a ``key``: what makes two objects the same one (a route's family, table and
destination; a link's name). Everything else is an attribute, which can differ between the
desired and the observed object; ``updatable_to`` says whether the kernel can change it in
place or the object must be deleted and created again. ``links`` names the links an object
lives on: deleting such a link takes the object with it.
"""

from __future__ import annotations

import abc
import dataclasses
import enum
from collections.abc import Hashable
from typing import ClassVar


class Kind(enum.StrEnum):
    LINK = "link"
    SYSCTL = "sysctl"
    FDB = "fdb"
    NEIGHBOUR = "neighbour"
    ROUTE = "route"
    RULE = "rule"
    PACKET_FILTER = "packet-filter"
    NETWORK_POLICY = "network-policy"


CREATE_ORDER: tuple[Kind, ...] = (
    Kind.LINK,
    Kind.SYSCTL,
    Kind.FDB,
    Kind.NEIGHBOUR,
    Kind.ROUTE,
    Kind.RULE,  # last: a table is filled before traffic is steered into it
    Kind.PACKET_FILTER,
    Kind.NETWORK_POLICY,  # after the links and routes its pods' traffic takes
)
"""Parents before children; deletes run in the reverse order (sysctls are never deleted)."""
DELETE_ORDER: tuple[Kind, ...] = tuple(k for k in reversed(CREATE_ORDER) if k is not Kind.SYSCTL)


@dataclasses.dataclass(frozen=True, slots=True)
class KernelObject(abc.ABC):
    kind: ClassVar[Kind]

    @property
    @abc.abstractmethod
    def key(self) -> Hashable:
        """What makes two objects the same one (attributes may still differ)."""

    @property
    def links(self) -> tuple[str, ...]:
        return ()

    def updatable_to(self, other: KernelObject) -> bool:
        """Whether the kernel can turn ``self`` into ``other`` (same key) in place."""
        return False

    @abc.abstractmethod
    def describe(self) -> str:
        """The object as a person reads it in a log line or a problem."""

    def changes_from(self, current: KernelObject) -> str | None:
        """What ``current`` (same key) holds differently, when listing the differing fields
        would not say it well (a whole table); None: list the fields."""
        return None


# --------------------------------------------------------------------------- links

LINK_ALIAS_PREFIX = "hybridnet-datapath:"
"""Links the datapath creates carry the alias ``hybridnet-datapath:<kind>``; observe owns
exactly those. (Pod host ends carry ``hybridnet:<container>/<ifname>``, a different mark.)"""


@dataclasses.dataclass(frozen=True, slots=True)
class Link(KernelObject):
    kind: ClassVar[Kind] = Kind.LINK
    IN_PLACE: ClassVar[frozenset[str]] = frozenset({"up"})
    """Attributes the kernel changes on a live link; any other difference means replace."""

    name: str

    @property
    def key(self) -> Hashable:
        return (Kind.LINK, self.name)

    @property
    def alias(self) -> str:
        return LINK_ALIAS_PREFIX + self.link_kind

    @property
    @abc.abstractmethod
    def link_kind(self) -> str:
        """The kernel's name for the device type (vxlan, vlan, ...)."""

    def updatable_to(self, other: KernelObject) -> bool:
        if type(other) is not type(self):
            return False
        differing = {
            f.name
            for f in dataclasses.fields(self)
            if getattr(self, f.name) != getattr(other, f.name)
        }
        return differing <= self.IN_PLACE


@dataclasses.dataclass(frozen=True, slots=True)
class VxlanLink(Link):
    IN_PLACE: ClassVar[frozenset[str]] = frozenset({"up", "mtu", "mac"})

    vni: int
    local: str
    parent: str
    port: int
    mtu: int
    mac: str
    learning: bool = False
    """Always off in what hybridnet builds: the FDB holds exactly what NodeInfos say."""
    up: bool = True

    @property
    def link_kind(self) -> str:
        return "vxlan"

    def describe(self) -> str:
        return (
            f"vxlan {self.name} (vni {self.vni}, local {self.local}, dev {self.parent}, "
            f"port {self.port}, mtu {self.mtu})"
        )


@dataclasses.dataclass(frozen=True, slots=True)
class VlanLink(Link):
    parent: str
    vlan_id: int
    up: bool = True

    @property
    def link_kind(self) -> str:
        return "vlan"

    def describe(self) -> str:
        return f"vlan {self.name} (id {self.vlan_id} on {self.parent})"


@dataclasses.dataclass(frozen=True, slots=True)
class OtherLink(Link):
    """A link carrying our alias whose kind the datapath never creates: only ever deleted."""

    found_kind: str | None = None

    @property
    def link_kind(self) -> str:
        return self.found_kind or "unknown"

    def describe(self) -> str:
        return f"link {self.name} ({self.link_kind})"


# --------------------------------------------------------------------------- sysctls


@dataclasses.dataclass(frozen=True, slots=True)
class Sysctl(KernelObject):
    """A value under /proc/sys (``/``-separated path). Set, never removed: a sysctl no longer
    desired keeps its value (the link it belonged to is usually gone anyway)."""

    kind: ClassVar[Kind] = Kind.SYSCTL

    path: str
    value: str
    link: str | None = None

    @property
    def key(self) -> Hashable:
        return (Kind.SYSCTL, self.path)

    @property
    def links(self) -> tuple[str, ...]:
        return (self.link,) if self.link else ()

    def updatable_to(self, other: KernelObject) -> bool:
        return True

    def describe(self) -> str:
        return f"sysctl {self.path.replace('/', '.')}={self.value}"


# --------------------------------------------------------------------------- FDB and neighbours


@dataclasses.dataclass(frozen=True, slots=True)
class FdbEntry(KernelObject):
    """``mac -> dst`` on a VXLAN device; the all-zeros MAC lists flood destinations."""

    kind: ClassVar[Kind] = Kind.FDB

    link: str
    mac: str
    dst: str

    @property
    def key(self) -> Hashable:
        return (Kind.FDB, self.link, self.mac, self.dst)

    @property
    def links(self) -> tuple[str, ...]:
        return (self.link,)

    def describe(self) -> str:
        return f"fdb {self.mac} dst {self.dst} dev {self.link}"


@dataclasses.dataclass(frozen=True, slots=True)
class Neighbour(KernelObject):
    """A permanent neighbour entry (``lladdr`` set) or a proxy entry (``lladdr`` None: the
    node answers ARP/NDP for ``address`` on ``link``)."""

    kind: ClassVar[Kind] = Kind.NEIGHBOUR

    link: str
    address: str
    lladdr: str | None = None

    @property
    def proxy(self) -> bool:
        return self.lladdr is None

    @property
    def key(self) -> Hashable:
        return (Kind.NEIGHBOUR, self.link, self.address, self.proxy)

    @property
    def links(self) -> tuple[str, ...]:
        return (self.link,)

    def updatable_to(self, other: KernelObject) -> bool:
        return isinstance(other, Neighbour) and not other.proxy

    def describe(self) -> str:
        if self.proxy:
            return f"proxy neighbour {self.address} dev {self.link}"
        return f"neighbour {self.address} lladdr {self.lladdr} dev {self.link}"


# --------------------------------------------------------------------------- routes and rules

SCOPE_UNIVERSE = 0
SCOPE_LINK = 253
ROUTE_UNICAST = 1


@dataclasses.dataclass(frozen=True, slots=True)
class Route(KernelObject):
    kind: ClassVar[Kind] = Kind.ROUTE

    family: int
    """4 or 6."""
    table: int
    dst: str
    """Canonical CIDR; ``0.0.0.0/0`` / ``::/0`` for a default route."""
    oif: str | None
    gateway: str | None = None
    prefsrc: str | None = None
    onlink: bool = False
    scope: int = SCOPE_UNIVERSE
    type: int = ROUTE_UNICAST

    @property
    def key(self) -> Hashable:
        return (Kind.ROUTE, self.family, self.table, self.dst)

    @property
    def links(self) -> tuple[str, ...]:
        return (self.oif,) if self.oif else ()

    def updatable_to(self, other: KernelObject) -> bool:
        return True  # RTM_NEWROUTE with NLM_F_REPLACE

    def describe(self) -> str:
        via = f" via {self.gateway}" if self.gateway else ""
        dev = f" dev {self.oif}" if self.oif else ""
        src = f" src {self.prefsrc}" if self.prefsrc else ""
        onlink = " onlink" if self.onlink else ""
        return f"route {self.dst}{via}{dev}{src}{onlink} table {self.table}"


@dataclasses.dataclass(frozen=True, slots=True)
class Rule(KernelObject):
    """A policy-routing rule. Every field is identity (the kernel has no in-place change).
    The datapath sets only ``src``; the other selectors exist so a foreign rule found in
    our priority range is described, and deleted, exactly."""

    kind: ClassVar[Kind] = Kind.RULE

    family: int
    priority: int
    table: int
    src: str | None = None
    dst: str | None = None
    iifname: str | None = None
    oifname: str | None = None
    fwmark: int | None = None
    fwmask: int | None = None
    tos: int = 0
    invert: bool = False
    action: int = 1  # FR_ACT_TO_TBL

    @property
    def key(self) -> Hashable:
        return (
            Kind.RULE,
            self.family,
            self.priority,
            self.table,
            self.src,
            self.dst,
            self.iifname,
            self.oifname,
            self.fwmark,
            self.fwmask,
            self.tos,
            self.invert,
            self.action,
        )

    def describe(self) -> str:
        selectors = [f"from {self.src or 'all'}"]
        if self.dst:
            selectors.append(f"to {self.dst}")
        for label, value in (
            ("iif", self.iifname),
            ("oif", self.oifname),
            ("fwmark", self.fwmark),
            ("mask", self.fwmask),
        ):
            if value is not None:
                selectors.append(f"{label} {value}")
        negation = "not " if self.invert else ""
        return (
            f"rule ipv{self.family} pref {self.priority} {negation}{' '.join(selectors)} "
            f"lookup {self.table}"
        )


# --------------------------------------------------------------------------- packet filter


@dataclasses.dataclass(frozen=True, slots=True)
class NftSet:
    name: str
    type: str
    """``ipv4_addr`` or ``ipv6_addr``."""
    flags: tuple[str, ...]
    elements: tuple[str, ...]
    """Canonical CIDRs, sorted."""


@dataclasses.dataclass(frozen=True, slots=True)
class NftChain:
    name: str
    type: str
    hook: str
    priority: int
    policy: str
    rules: tuple[str, ...]
    """Each rule's expression list as canonical JSON (nft's own ``-j`` form)."""


@dataclasses.dataclass(frozen=True, slots=True)
class PacketFilter(KernelObject):
    """The nftables table hybridnet owns; changed only by replacing it whole, atomically."""

    kind: ClassVar[Kind] = Kind.PACKET_FILTER

    family: str
    name: str
    sets: tuple[NftSet, ...]
    chains: tuple[NftChain, ...]

    @property
    def key(self) -> Hashable:
        return (Kind.PACKET_FILTER, self.family, self.name)

    def updatable_to(self, other: KernelObject) -> bool:
        return True  # replaced in one transaction

    def describe(self) -> str:
        return f"nftables table {self.family} {self.name}"
