"""The view's resources, checked and reduced to what the datapath needs. Pure.

Bad input becomes a Problem and is left out; everything else comes back in a deterministic
order (oldest first), so desired state never depends on the order informers delivered.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import zlib
from collections.abc import Iterable, Sequence

from hybridnet.api.ordering import oldest_first
from hybridnet.api.resources import IPInstance, Network, NodeInfo, Subnet
from hybridnet.daemon.datapath.config import RoutingNumbers
from hybridnet.daemon.datapath.problems import Problem, ProblemCode
from hybridnet.daemon.datapath.view import NodeView

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclasses.dataclass(frozen=True)
class SubnetInput:
    name: str
    network: Network
    cidr: IPNetwork
    text: str
    """The CIDR, canonical (how routes and rules spell it)."""
    gateway: str | None
    net_id: int | None
    auto_nat: bool
    created: str | None

    @property
    def version(self) -> int:
        return self.cidr.version


@dataclasses.dataclass(frozen=True)
class RemoteNode:
    name: str
    vtep: str
    mac: str
    addresses: tuple[str, ...]
    """The VTEP address first, then the node's other addresses (canonical)."""


def version_of(address: str) -> int:
    """The family of a canonical address (as this module produces them)."""
    return 6 if ":" in address else 4


@dataclasses.dataclass(frozen=True)
class PodAddress:
    subnet: str
    address: str


def selects(network: Network, labels: dict[str, str]) -> bool:
    """Kubernetes equality-selector semantics: every pair must match (empty matches all)."""
    return all(labels.get(key) == value for key, value in network.spec.node_selector.items())


def pick_oldest(
    candidates: Iterable[Network], code: ProblemCode, what: str, problems: list[Problem]
) -> Network | None:
    """The oldest candidate; a problem naming all of them when there are several."""
    ordered = oldest_first(candidates)
    if len(ordered) > 1:
        names = ", ".join(n.name for n in ordered)
        message = f"{what}: {names}; using {ordered[0].name}"
        problems.append(Problem(code, f"network/{ordered[0].name}", message))
    return ordered[0] if ordered else None


def subnets(view: NodeView, problems: list[Problem]) -> list[SubnetInput]:
    networks = {n.name: n for n in view.networks}
    parsed = []
    ordered = oldest_first(view.subnets)
    for subnet in ordered:
        network = networks.get(subnet.spec.network)
        if network is None:
            _invalid(subnet, f"network {subnet.spec.network} not found", problems)
            continue
        try:
            cidr = ipaddress.ip_network(subnet.spec.range.cidr)
        except ValueError as exc:
            _invalid(subnet, f"CIDR: {exc}", problems)
            continue
        if subnet.spec.range.version != str(cidr.version):
            version = subnet.spec.range.version
            _invalid(subnet, f"version {version} but {cidr} is IPv{cidr.version}", problems)
            continue
        config = subnet.spec.config
        parsed.append(
            SubnetInput(
                name=subnet.name,
                network=network,
                cidr=cidr,
                text=str(cidr),
                gateway=_gateway(subnet, cidr, problems),
                net_id=subnet.spec.net_id,
                auto_nat=bool(config and config.auto_nat_outgoing),
                created=subnet.metadata.creation_timestamp,
            )
        )
    return parsed


def _invalid(subnet: Subnet, message: str, problems: list[Problem]) -> None:
    problems.append(Problem(ProblemCode.SUBNET_INVALID, f"subnet/{subnet.name}", message))


def _gateway(subnet: Subnet, cidr: IPNetwork, problems: list[Problem]) -> str | None:
    raw = subnet.spec.range.gateway
    if raw is None:
        return None
    try:
        gateway = ipaddress.ip_address(raw)
    except ValueError as exc:
        _invalid(subnet, f"gateway: {exc}", problems)
        return None
    if gateway not in cidr:
        _invalid(subnet, f"gateway {raw} is outside {cidr}", problems)
        return None
    return str(gateway)


def assign_tables(
    ordered: Sequence[SubnetInput], numbers: RoutingNumbers, problems: list[Problem]
) -> dict[str, int]:
    """Subnet name -> routing table: CRC-32 of the name into the configured range, a taken
    table probing onwards. ``ordered`` comes oldest first, so a new subnet never moves an
    older one's table."""
    size = numbers.subnet_tables
    taken: set[int] = set()
    tables: dict[str, int] = {}
    for subnet in ordered:
        if len(taken) >= size:
            first, last = numbers.subnet_table_first, numbers.subnet_table_last
            message = f"all {size} tables of {first}-{last} are in use"
            problems.append(Problem(ProblemCode.TABLES_EXHAUSTED, f"subnet/{subnet.name}", message))
            continue
        slot = zlib.crc32(subnet.name.encode()) % size
        while numbers.subnet_table_first + slot in taken:
            slot = (slot + 1) % size
        tables[subnet.name] = numbers.subnet_table_first + slot
        taken.add(tables[subnet.name])
    return tables


def pod_addresses(ips: Iterable[IPInstance]) -> list[PodAddress]:
    """Every local pod address that parses (the manager wrote them; a bad one is skipped)."""
    found = []
    for instance in ips:
        try:
            address = ipaddress.ip_interface(instance.spec.address.ip).ip
        except ValueError:
            continue
        found.append(PodAddress(instance.spec.subnet, str(address)))
    return found


def canonical_mac(raw: str) -> str:
    parts = raw.lower().replace("-", ":").split(":")
    hexdigits = set("0123456789abcdef")
    if len(parts) != 6 or not all(len(p) == 2 and set(p) <= hexdigits for p in parts):
        raise ValueError(f"MAC {raw!r} is not a MAC address")
    if int(parts[0], 16) & 1:
        raise ValueError(f"MAC {raw!r} is a multicast address")
    return ":".join(parts)


def remote_nodes(
    view: NodeView,
    family: int,
    local: tuple[str, str],
    own_addresses: set[str],
    problems: list[Problem],
) -> list[RemoteNode]:
    """Every other node with a published VTEP of ``family``, by name; ``local`` is this
    node's (VTEP, MAC): a remote claiming either is skipped, as is a repeat of an earlier
    remote's. Addresses that are this node's own are dropped from a remote's list."""
    seen_vteps, seen_macs = {local[0]}, {local[1]}
    remotes = []
    for info in sorted(view.node_infos, key=lambda i: i.name):
        if info.name == view.node_name:
            continue
        remote = _remote(info, family, problems)
        if remote is None:
            continue
        if remote.vtep in seen_vteps or remote.mac in seen_macs:
            message = f"VTEP {remote.vtep} / {remote.mac} is already another node's; skipped"
            problems.append(
                Problem(ProblemCode.REMOTE_NODE_INVALID, f"nodeinfo/{info.name}", message)
            )
            continue
        seen_vteps.add(remote.vtep)
        seen_macs.add(remote.mac)
        addresses = tuple(a for a in remote.addresses if a not in own_addresses)
        remotes.append(dataclasses.replace(remote, addresses=addresses))
    return remotes


def _remote(info: NodeInfo, family: int, problems: list[Problem]) -> RemoteNode | None:
    vtep = info.spec.vtep_info
    if vtep is None or not vtep.ip or not vtep.mac:
        return None  # not published yet: nothing to point at
    subject = f"nodeinfo/{info.name}"
    try:
        address = ipaddress.ip_address(vtep.ip)
        mac = canonical_mac(vtep.mac)
    except ValueError as exc:
        problems.append(Problem(ProblemCode.REMOTE_NODE_INVALID, subject, str(exc)))
        return None
    if address.version != family:
        message = f"VTEP {address} is IPv{address.version}, this node's is IPv{family}"
        problems.append(Problem(ProblemCode.REMOTE_NODE_INVALID, subject, message))
        return None
    addresses = [str(address)]
    for raw in vtep.local_ips:
        try:
            extra = str(ipaddress.ip_address(raw))
        except ValueError:
            message = f"local IP {raw!r} is not an address"
            problems.append(Problem(ProblemCode.REMOTE_NODE_INVALID, subject, message))
            continue
        if extra not in addresses:
            addresses.append(extra)
    return RemoteNode(info.name, str(address), mac, tuple(addresses))
