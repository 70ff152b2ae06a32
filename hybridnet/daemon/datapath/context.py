"""What the overlay and underlay builders of ``desired`` share: the inputs, the objects
collected so far, the problems found, and small helpers."""

from __future__ import annotations

import dataclasses
import ipaddress
from collections.abc import Iterable

from hybridnet.daemon.datapath import inputs
from hybridnet.daemon.datapath.config import NodeConfig
from hybridnet.daemon.datapath.model import (
    LINK_ALIAS_PREFIX,
    SCOPE_LINK,
    SCOPE_UNIVERSE,
    KernelObject,
    Sysctl,
)
from hybridnet.daemon.datapath.problems import Problem, ProblemCode
from hybridnet.daemon.datapath.view import HostFacts, HostLink, NodeView

IFNAMSIZ = 15
"""Longest link name the kernel accepts."""


class Collector:
    """Desired objects by key: an exact repeat is dropped, a conflicting one (two inputs
    wanting different versions of one object) is a problem and the first one stays."""

    def __init__(self, problems: list[Problem]):
        self._by_key: dict[object, KernelObject] = {}
        self._problems = problems

    def add(self, obj: KernelObject) -> None:
        current = self._by_key.setdefault(obj.key, obj)
        if current is not obj and current != obj:
            message = f"also wanted as {current.describe()}; keeping that"
            self._problems.append(
                Problem(ProblemCode.CONFLICTING_OBJECTS, f"{obj.kind}/{obj.describe()}", message)
            )

    def all(self) -> tuple[KernelObject, ...]:
        return tuple(self._by_key.values())


@dataclasses.dataclass
class Context:
    """What the overlay and underlay builders share."""

    view: NodeView
    config: NodeConfig
    host: HostFacts
    subnets: list[inputs.SubnetInput]
    """Every valid subnet of the cluster (any network)."""
    tables: dict[str, int]
    pods: list[inputs.PodAddress]
    objects: Collector
    problems: list[Problem]

    def problem(self, code: ProblemCode, subject: str, message: str) -> None:
        self.problems.append(Problem(code, subject, message))

    def parent(self, name: str | None, role: str, network: str) -> HostLink | None:
        """The configured interface for ``role``, or None with a problem."""
        if name is None:
            message = f"no {role} interface is configured"
            self.problem(ProblemCode.INTERFACE_NOT_CONFIGURED, f"network/{network}", message)
            return None
        link = self.host.links.get(name)
        if link is None:
            message = f"the {role} interface {name} does not exist"
            self.problem(ProblemCode.PARENT_MISSING, f"link/{name}", message)
        return link

    def name_taken(self, name: str) -> HostLink | None:
        """The link called ``name`` when it exists and is not hybridnet's."""
        found = self.host.links.get(name)
        if found is None or (found.alias or "").startswith(LINK_ALIAS_PREFIX):
            return None
        return found


def scope(version: int) -> int:
    """Device routes are link-scoped in IPv4; IPv6 routes have no scope (universe)."""
    return SCOPE_LINK if version == 4 else SCOPE_UNIVERSE


def default_route(version: int) -> str:
    return "0.0.0.0/0" if version == 4 else "::/0"


def addresses_of(link: HostLink, version: int) -> list[str]:
    """The link's global addresses of one family, without prefix length."""
    found = (ipaddress.ip_interface(a) for a in link.addresses)
    return [str(a.ip) for a in found if a.version == version]


def link_sysctls(link: str, versions: Iterable[int], proxy_arp: str | None) -> list[Sysctl]:
    """What a link answering ARP/NDP for local pods from proxy entries needs. ``proxy_arp``:
    "0" on our own links (route-based proxy ARP would answer for every address the node routes
    out of another device), None leaves the site's setting alone."""
    found = []
    for version in sorted(set(versions)):
        conf, neigh = f"net/ipv{version}/conf/{link}", f"net/ipv{version}/neigh/{link}"
        if version == 4:
            if proxy_arp is not None:
                found.append(Sysctl(f"{conf}/proxy_arp", proxy_arp, link))
            found.append(Sysctl(f"{conf}/rp_filter", "0", link))
        else:
            found.append(Sysctl(f"{conf}/proxy_ndp", "1", link))
        found.append(Sysctl(f"{neigh}/proxy_delay", "0", link))
    return found
