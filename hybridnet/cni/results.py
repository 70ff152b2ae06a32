"""CNI results: the daemon's AddReply to the requested version's JSON, and JSON back.

One version-independent model (:class:`Result`) sits between them. 0.3.x and 0.4.0 results
carry ``"version": "4"|"6"`` in every IP entry, 1.x results do not; an interface's ``mtu`` exists
from 1.1.0 on. Parsing accepts any supported version, so a ``prevResult`` written in one can be
read back and turned into another.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, NamedTuple

from hybridnet.cni import versions
from hybridnet.cni.errors import CniError
from hybridnet.rpc import messages as m
from hybridnet.rpc.codes import INVALID_CONFIG

NO_DNS: Mapping[str, Any] = MappingProxyType({})


class Interface(NamedTuple):
    name: str
    mac: str = ""
    sandbox: str = ""
    mtu: int = 0
    """0 = not reported (results before 1.1.0 cannot carry it)."""


class IPConfig(NamedTuple):
    address: str
    """CIDR form, e.g. 198.19.0.5/24."""
    gateway: str = ""
    interface: int | None = None

    @property
    def family(self) -> int:
        return 6 if ":" in self.address else 4


class Route(NamedTuple):
    dst: str
    gw: str = ""


class Result(NamedTuple):
    interfaces: tuple[Interface, ...] = ()
    ips: tuple[IPConfig, ...] = ()
    routes: tuple[Route, ...] = ()
    dns: Mapping[str, Any] = NO_DNS


# ----------------------------------------------------------------- daemon <-> model


def from_add_reply(reply: m.AddReply) -> Result:
    """The daemon's answer to ADD as a result (version-independent)."""
    return Result(
        interfaces=tuple(
            Interface(name=i.name, mac=i.mac, sandbox=i.sandbox, mtu=i.mtu)
            for i in reply.interfaces
        ),
        ips=tuple(
            IPConfig(address=ip.address, gateway=ip.gateway, interface=ip.interface)
            for ip in reply.ips
        ),
        routes=tuple(Route(dst=r.dst, gw=r.gw) for r in reply.routes),
    )


def to_add_reply(result: Result) -> m.AddReply:
    """A result in the daemon's own shape (what CHECK sends as ``expected``)."""
    return m.AddReply(
        interfaces=tuple(m.Interface(i.name, i.mac, i.sandbox, i.mtu) for i in result.interfaces),
        ips=tuple(
            m.IPConfig(ip.address, ip.gateway, ip.interface if ip.interface is not None else -1)
            for ip in result.ips
        ),
        routes=tuple(m.Route(r.dst, r.gw) for r in result.routes),
    )


# ----------------------------------------------------------------- model -> JSON


def to_json(result: Result, cni_version: str) -> dict[str, Any]:
    """The result as the runtime expects it for ``cni_version`` (a supported version)."""
    legacy = versions.is_legacy(cni_version)
    with_mtu = versions.key(cni_version) >= (1, 1, 0)
    interfaces = []
    for interface in result.interfaces:
        entry: dict[str, Any] = {"name": interface.name}
        if interface.mac:
            entry["mac"] = interface.mac
        if interface.sandbox:
            entry["sandbox"] = interface.sandbox
        if with_mtu and interface.mtu:
            entry["mtu"] = interface.mtu
        interfaces.append(entry)
    ips = []
    for ip in result.ips:
        item: dict[str, Any] = {}
        if legacy:
            item["version"] = str(ip.family)
        item["address"] = ip.address
        if ip.gateway:
            item["gateway"] = ip.gateway
        if ip.interface is not None:
            item["interface"] = ip.interface
        ips.append(item)
    routes = [{"dst": r.dst, **({"gw": r.gw} if r.gw else {})} for r in result.routes]
    document: dict[str, Any] = {"cniVersion": cni_version}
    if interfaces:
        document["interfaces"] = interfaces
    if ips:
        document["ips"] = ips
    if routes:
        document["routes"] = routes
    document["dns"] = dict(result.dns)
    return document


# ----------------------------------------------------------------- JSON -> model


def parse_result(document: Any, cni_version: str) -> Result:
    """Read a result (e.g. ``prevResult``) written for ``cni_version``; CniError(7) if bad."""
    if not isinstance(document, dict):
        raise _bad("prevResult", "must be an object")
    interfaces = tuple(
        _interface(entry, f"prevResult.interfaces[{n}]")
        for n, entry in enumerate(_list(document, "interfaces"))
    )
    ips = tuple(
        _ip(entry, f"prevResult.ips[{n}]", cni_version, len(interfaces))
        for n, entry in enumerate(_list(document, "ips"))
    )
    routes = tuple(
        _route(entry, f"prevResult.routes[{n}]")
        for n, entry in enumerate(_list(document, "routes"))
    )
    dns = document.get("dns", {})
    if not isinstance(dns, dict):
        raise _bad("prevResult.dns", "must be an object")
    return Result(interfaces=interfaces, ips=ips, routes=routes, dns=dns)


def _bad(where: str, problem: str) -> CniError:
    return CniError(INVALID_CONFIG, "invalid prevResult", f"{where}: {problem}")


def _list(document: dict[str, Any], name: str) -> list[Any]:
    value = document.get(name)
    if value is None:
        return []
    if not isinstance(value, list):
        raise _bad(f"prevResult.{name}", "must be a list")
    return value


def _string(entry: dict[str, Any], name: str, where: str, required: bool = False) -> str:
    value = entry.get(name)
    if value is None:
        if required:
            raise _bad(where, f"{name!r} is required")
        return ""
    if not isinstance(value, str):
        raise _bad(where, f"{name!r} must be a string")
    return value


def _interface(entry: Any, where: str) -> Interface:
    if not isinstance(entry, dict):
        raise _bad(where, "must be an object")
    mtu = entry.get("mtu", 0)
    if isinstance(mtu, bool) or not isinstance(mtu, int) or mtu < 0:
        raise _bad(where, "'mtu' must be a non-negative integer")
    return Interface(
        name=_string(entry, "name", where, required=True),
        mac=_string(entry, "mac", where),
        sandbox=_string(entry, "sandbox", where),
        mtu=mtu,
    )


def _ip(entry: Any, where: str, cni_version: str, interface_count: int) -> IPConfig:
    import ipaddress  # noqa: PLC0415 - on first use only: VERSION never needs it

    if not isinstance(entry, dict):
        raise _bad(where, "must be an object")
    address = _string(entry, "address", where, required=True)
    try:
        family = ipaddress.ip_interface(address).version
    except ValueError:
        raise _bad(where, f"'address' {address!r} is not an address in CIDR form") from None
    if "/" not in address:
        raise _bad(where, f"'address' {address!r} has no prefix length")
    if versions.is_legacy(cni_version):
        version = _string(entry, "version", where, required=True)
        if version != str(family):
            raise _bad(where, f"'version' {version!r} does not match {address}")
    gateway = _string(entry, "gateway", where)
    if gateway:
        try:
            ipaddress.ip_address(gateway)
        except ValueError:
            raise _bad(where, f"'gateway' {gateway!r} is not an address") from None
    index = entry.get("interface")
    if index is not None and (
        isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < interface_count
    ):
        raise _bad(where, f"'interface' {index!r} is not an index into 'interfaces'")
    return IPConfig(address=address, gateway=gateway, interface=index)


def _route(entry: Any, where: str) -> Route:
    import ipaddress  # noqa: PLC0415

    if not isinstance(entry, dict):
        raise _bad(where, "must be an object")
    dst = _string(entry, "dst", where, required=True)
    try:
        ipaddress.ip_network(dst, strict=False)
    except ValueError:
        raise _bad(where, f"'dst' {dst!r} is not a prefix") from None
    return Route(dst=dst, gw=_string(entry, "gw", where))


# ----------------------------------------------------------------- chaining


def chain_after(previous: Result, ours: Result) -> Result:
    """Our result appended to a previous plugin's: its interfaces first, our indexes shifted."""
    shift = len(previous.interfaces)
    return Result(
        interfaces=previous.interfaces + ours.interfaces,
        ips=previous.ips
        + tuple(
            ip._replace(interface=None if ip.interface is None else ip.interface + shift)
            for ip in ours.ips
        ),
        routes=previous.routes + ours.routes,
        dns=previous.dns or ours.dns,
    )


def own_part(result: Result, ifname: str, netns: str) -> Result:
    """The part of a (possibly chained) result that is hybridnet's: the pod interface named
    ``ifname`` in ``netns``, the IPs on it (re-indexed), and the default routes."""
    keep = [
        n
        for n, interface in enumerate(result.interfaces)
        if interface.name == ifname and interface.sandbox == netns
    ]
    if not keep:
        return Result(routes=result.routes)
    new_index = {old: new for new, old in enumerate(keep)}
    return Result(
        interfaces=tuple(result.interfaces[n] for n in keep),
        ips=tuple(
            ip._replace(interface=new_index[ip.interface])
            for ip in result.ips
            if ip.interface in new_index
        ),
        routes=result.routes,
        dns=result.dns,
    )
