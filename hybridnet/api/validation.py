"""Semantic validation shared by the store, the webhook and the CLI.

What a CRD schema cannot say (or says less readably) is checked here, object by object: canonical
CIDRs, every address inside its CIDR and of its family, start <= end, the type/mode/netID
combinations of a Network, immutable fields on update. Checks that need other objects (overlap
between subnets, one overlay network, ...) are in hybridnet.api.admission. Each problem is a
FieldError naming the field the way the API server does (``spec.range.gateway``).
"""

from __future__ import annotations

import dataclasses
import ipaddress
import re
from collections.abc import Callable, Iterable

from hybridnet.api import constants as c
from hybridnet.api.meta import Resource
from hybridnet.api.resources import (
    AddressRange,
    BGPPeer,
    IPInstance,
    Network,
    NodeInfo,
    Subnet,
)

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

MAX_VLAN_ID = 4094
MAX_VNI = 2**24 - 1
MAX_ASN = 2**32 - 1
MAX_HOLD_TIME = 65535
MAX_GRACEFUL_RESTART_SECONDS = 4095
MAX_MD5_PASSWORD_BYTES = 80
"""TCP_MD5SIG_MAXKEYLEN."""

_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_MAC = re.compile(r"^[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}$")


@dataclasses.dataclass(frozen=True)
class FieldError:
    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


class ValidationFailed(ValueError):
    """An object failed validation; ``errors`` lists every problem found, not just the first."""

    def __init__(self, kind: str, name: str, errors: Iterable[FieldError]):
        self.kind = kind
        self.name = name
        self.errors = list(errors)
        detail = "; ".join(str(e) for e in self.errors)
        super().__init__(f"{kind} {name!r} is invalid: {detail}")


# --------------------------------------------------------------------------- small checks


def parse_ip(value: str, path: str, errors: list[FieldError]) -> IPAddress | None:
    try:
        return ipaddress.ip_address(value)
    except ValueError:
        errors.append(FieldError(path, f"{value!r} is not an IP address"))
        return None


def parse_canonical_cidr(value: str, path: str, errors: list[FieldError]) -> IPNetwork | None:
    """A CIDR with no host bits set; the message suggests the canonical form."""
    try:
        network = ipaddress.ip_network(value, strict=False)
    except ValueError:
        errors.append(FieldError(path, f"{value!r} is not a CIDR (address/prefix length)"))
        return None
    if "/" not in value:
        errors.append(FieldError(path, f"{value!r} has no prefix length; did you mean {network}?"))
        return None
    if str(network) != value:
        errors.append(FieldError(path, f"{value!r} is not canonical; did you mean {network}?"))
        return None
    return network


def _family(version: str) -> int | None:
    return {c.IPV4: 4, c.IPV6: 6}.get(version)


def _check_name(resource: Resource, errors: list[FieldError]) -> None:
    name = resource.metadata.name
    if not name:
        errors.append(FieldError("metadata.name", "is required"))
    elif len(name) > 253 or not _DNS_SUBDOMAIN.match(name):
        errors.append(
            FieldError("metadata.name", f"{name!r} must be a lowercase DNS subdomain (RFC 1123)")
        )


def check_mac(value: str, path: str, errors: list[FieldError]) -> None:
    if not _MAC.match(value):
        errors.append(FieldError(path, f"{value!r} is not a MAC address (aa:bb:cc:dd:ee:ff)"))
    elif int(value.split(":", maxsplit=1)[0], 16) & 1:
        errors.append(FieldError(path, f"{value!r} is a multicast MAC; a pod needs unicast"))


# --------------------------------------------------------------------------- Subnet


def _address_in_range(
    value: str, path: str, network: IPNetwork, errors: list[FieldError]
) -> IPAddress | None:
    address = parse_ip(value, path, errors)
    if address is None:
        return None
    if address.version != network.version:
        errors.append(
            FieldError(path, f"{value} is IPv{address.version}, the CIDR is IPv{network.version}")
        )
        return None
    if address not in network:
        errors.append(FieldError(path, f"{value} is outside {network}"))
        return None
    return address


def _check_range(rng: AddressRange, errors: list[FieldError]) -> None:
    family = _family(rng.version)
    if family is None:
        errors.append(FieldError("spec.range.version", f'{rng.version!r} must be "4" or "6"'))
    network = parse_canonical_cidr(rng.cidr, "spec.range.cidr", errors)
    if network is None:
        return
    if family is not None and network.version != family:
        errors.append(
            FieldError(
                "spec.range.cidr", f"{rng.cidr} is IPv{network.version}, version is {rng.version}"
            )
        )
        return
    if rng.gateway is not None:
        gateway = _address_in_range(rng.gateway, "spec.range.gateway", network, errors)
        if gateway is not None and network.num_addresses > 2 and gateway == network.network_address:
            errors.append(FieldError("spec.range.gateway", f"{gateway} is the network address"))
        if (
            gateway is not None
            and network.version == 4
            and network.num_addresses > 2
            and gateway == network.broadcast_address
        ):
            errors.append(FieldError("spec.range.gateway", f"{gateway} is the broadcast address"))
    start = _address_in_range(rng.start, "spec.range.start", network, errors) if rng.start else None
    end = _address_in_range(rng.end, "spec.range.end", network, errors) if rng.end else None
    if start is not None and end is not None and start > end:  # type: ignore[operator]
        errors.append(FieldError("spec.range.end", f"{end} is before start {start}"))
    for list_name, values in (("reservedIPs", rng.reserved_ips), ("excludeIPs", rng.exclude_ips)):
        seen: set[str] = set()
        for index, value in enumerate(values):
            path = f"spec.range.{list_name}[{index}]"
            address = _address_in_range(value, path, network, errors)
            if address is not None and str(address) in seen:
                errors.append(FieldError(path, f"{value} is listed twice"))
            if address is not None:
                seen.add(str(address))


def subnet_errors(subnet: Subnet) -> list[FieldError]:
    errors: list[FieldError] = []
    _check_name(subnet, errors)
    if not subnet.spec.network:
        errors.append(FieldError("spec.network", "is required"))
    if subnet.spec.net_id is not None and not 0 <= subnet.spec.net_id <= MAX_VLAN_ID:
        errors.append(FieldError("spec.netID", f"{subnet.spec.net_id} is not a VLAN id (0-4094)"))
    _check_range(subnet.spec.range, errors)
    return errors


# --------------------------------------------------------------------------- Network


def network_errors(network: Network) -> list[FieldError]:
    errors: list[FieldError] = []
    _check_name(network, errors)
    spec = network.spec
    modes = c.MODES_BY_TYPE.get(spec.type)
    if modes is None:
        errors.append(
            FieldError("spec.type", f"{spec.type!r} must be one of {', '.join(c.MODES_BY_TYPE)}")
        )
        return errors
    mode = spec.mode or c.DEFAULT_MODE_BY_TYPE[spec.type]
    if mode not in modes:
        errors.append(
            FieldError(
                "spec.mode", f"{mode!r} is not a mode of a {spec.type} network ({', '.join(modes)})"
            )
        )
        return errors
    _check_net_id(mode, spec.net_id, errors)
    if spec.type == c.TYPE_UNDERLAY and not spec.node_selector:
        errors.append(
            FieldError(
                "spec.nodeSelector",
                "an Underlay network needs a node selector (which nodes are attached)",
            )
        )
    if spec.type != c.TYPE_UNDERLAY and spec.node_selector:
        errors.append(
            FieldError("spec.nodeSelector", f"only Underlay networks select nodes, not {spec.type}")
        )
    _check_peers(mode, spec.config.bgp_peers if spec.config else [], errors)
    return errors


def _check_peers(mode: str, peers: list[BGPPeer], errors: list[FieldError]) -> None:
    if peers and mode not in (c.MODE_BGP, c.MODE_GLOBAL_BGP):
        errors.append(FieldError("spec.config.bgpPeers", f"BGP peers need mode BGP, not {mode}"))
    # A GlobalBGP network's pods are announced to the peers of the BGP network that attaches
    # their node (as in the reference, peers of its own are accepted and not used).
    if mode == c.MODE_BGP and not peers:
        errors.append(FieldError("spec.config.bgpPeers", "a BGP network needs at least one peer"))
    seen: set[str] = set()
    for index, peer in enumerate(peers):
        path = f"spec.config.bgpPeers[{index}]"
        address = parse_ip(peer.address, f"{path}.address", errors)
        if address is not None and str(address) in seen:
            errors.append(FieldError(f"{path}.address", f"{peer.address} is listed twice"))
        if address is not None:
            seen.add(str(address))
        if peer.password is not None:
            for problem in md5_password_problems(peer.password):
                errors.append(FieldError(f"{path}.password", problem))
        if not 1 <= peer.asn <= MAX_ASN:
            errors.append(
                FieldError(f"{path}.asn", f"{peer.asn} is not an AS number (1-{MAX_ASN})")
            )
        if peer.hold_time is not None and not (
            peer.hold_time == 0 or 3 <= peer.hold_time <= MAX_HOLD_TIME
        ):
            errors.append(
                FieldError(
                    f"{path}.holdTime", f"{peer.hold_time} must be 0 or 3-{MAX_HOLD_TIME} seconds"
                )
            )
        grace = peer.graceful_restart_seconds
        if grace is not None and not 0 <= grace <= MAX_GRACEFUL_RESTART_SECONDS:
            errors.append(
                FieldError(
                    f"{path}.gracefulRestartSeconds",
                    f"{grace} must be 0-{MAX_GRACEFUL_RESTART_SECONDS}",
                )
            )


def md5_password_problems(password: str) -> list[str]:
    """What keeps a BGP session's TCP MD5 password from being used: the kernel takes at most
    80 bytes; ExaBGP's configuration reads text lines and has no escape for a quote inside a
    quoted word, so control characters and quotes cannot be carried."""
    found = []
    if not password:
        found.append("password is empty (leave it out for no password)")
    if len(password.encode()) > MAX_MD5_PASSWORD_BYTES:
        found.append(f"password is longer than {MAX_MD5_PASSWORD_BYTES} bytes")
    if any(not (0x20 <= ord(ch) < 0x7F) for ch in password):
        found.append("password must be printable ASCII")
    if '"' in password or "'" in password:
        found.append("password cannot hold a quote (' or \")")
    return found


def effective_mode(network: Network) -> str | None:
    """The mode a network runs in: its own, or its type's default when left out."""
    return network.spec.mode or c.DEFAULT_MODE_BY_TYPE.get(network.spec.type)


def _check_net_id(mode: str, net_id: int | None, errors: list[FieldError]) -> None:
    limits = {
        c.MODE_VLAN: (0, MAX_VLAN_ID, "a VLAN id"),
        c.MODE_VXLAN: (1, MAX_VNI, "a VXLAN VNI"),
        c.MODE_BGP: (1, MAX_ASN, "an AS number"),
    }
    if mode not in limits:
        return
    low, high, what = limits[mode]
    if net_id is None:
        if mode != c.MODE_VLAN:
            errors.append(FieldError("spec.netID", f"is required for mode {mode} ({what})"))
        return
    if not low <= net_id <= high:
        errors.append(FieldError("spec.netID", f"{net_id} is not {what} ({low}-{high})"))


# --------------------------------------------------------------------------- IPInstance / NodeInfo


def ipinstance_errors(instance: IPInstance) -> list[FieldError]:
    errors: list[FieldError] = []
    _check_name(instance, errors)
    spec = instance.spec
    for name, value in (("network", spec.network), ("subnet", spec.subnet)):
        if not value:
            errors.append(FieldError(f"spec.{name}", "is required"))
    family = _family(spec.address.version)
    if family is None:
        errors.append(
            FieldError("spec.address.version", f'{spec.address.version!r} must be "4" or "6"')
        )
    try:
        interface = ipaddress.ip_interface(spec.address.ip)
        if "/" not in spec.address.ip:
            raise ValueError
        if family is not None and interface.version != family:
            errors.append(FieldError("spec.address.ip", f"{spec.address.ip} is not IPv{family}"))
    except ValueError:
        errors.append(
            FieldError("spec.address.ip", f"{spec.address.ip!r} must be address/prefix length")
        )
    if spec.address.gateway is not None:
        gateway = parse_ip(spec.address.gateway, "spec.address.gateway", errors)
        if gateway is not None and family is not None and gateway.version != family:
            errors.append(FieldError("spec.address.gateway", f"{gateway} is not IPv{family}"))
    check_mac(spec.address.mac, "spec.address.mac", errors)
    return errors


def nodeinfo_errors(info: NodeInfo) -> list[FieldError]:
    errors: list[FieldError] = []
    _check_name(info, errors)
    vtep = info.spec.vtep_info
    if vtep is not None:
        if vtep.ip is not None:
            parse_ip(vtep.ip, "spec.vtepInfo.ip", errors)
        if vtep.mac is not None:
            check_mac(vtep.mac, "spec.vtepInfo.mac", errors)
        for index, value in enumerate(vtep.local_ips):
            parse_ip(value, f"spec.vtepInfo.localIPs[{index}]", errors)
    return errors


# --------------------------------------------------------------------------- updates


def _immutable(pairs: Iterable[tuple[str, object, object]]) -> list[FieldError]:
    return [
        FieldError(path, f"is immutable (was {old!r}, now {new!r})")
        for path, old, new in pairs
        if old != new
    ]


def update_errors(old: Resource, new: Resource) -> list[FieldError]:
    """Fields that must not change once an object exists."""
    if isinstance(old, Subnet) and isinstance(new, Subnet):
        return _immutable(
            [
                ("spec.network", old.spec.network, new.spec.network),
                ("spec.netID", old.spec.net_id, new.spec.net_id),
                ("spec.range.version", old.spec.range.version, new.spec.range.version),
                ("spec.range.cidr", old.spec.range.cidr, new.spec.range.cidr),
            ]
        )
    if isinstance(old, Network) and isinstance(new, Network):
        return _immutable(
            [
                ("spec.type", old.spec.type, new.spec.type),
                ("spec.mode", effective_mode(old), effective_mode(new)),
                ("spec.netID", old.spec.net_id, new.spec.net_id),
            ]
        )
    if isinstance(old, IPInstance) and isinstance(new, IPInstance):
        return _immutable(
            [
                ("spec.network", old.spec.network, new.spec.network),
                ("spec.subnet", old.spec.subnet, new.spec.subnet),
                ("spec.address.ip", old.spec.address.ip, new.spec.address.ip),
            ]
        )
    return []


VALIDATORS: dict[type[Resource], Callable[..., list[FieldError]]] = {
    Subnet: subnet_errors,
    Network: network_errors,
    IPInstance: ipinstance_errors,
    NodeInfo: nodeinfo_errors,
}


def validate(resource: Resource, old: Resource | None = None) -> None:
    """Raise ValidationFailed listing every problem of ``resource`` (and of the change from
    ``old``); objects of kinds hybridnet does not own pass unchecked."""
    validator = VALIDATORS.get(type(resource))
    errors = validator(resource) if validator else []
    if old is not None:
        errors += update_errors(old, resource)
    if errors:
        raise ValidationFailed(resource.KIND.kind, resource.metadata.name, errors)
