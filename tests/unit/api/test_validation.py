"""Semantic validation: every rule, with the field it names; properties over random ranges."""

from __future__ import annotations

import ipaddress
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hybridnet.api import validation
from hybridnet.api.meta import ObjectMeta
from hybridnet.api.resources import (
    Address,
    AddressRange,
    BGPPeer,
    IPInstance,
    IPInstanceSpec,
    Network,
    NetworkConfig,
    NetworkSpec,
    NodeInfo,
    NodeInfoSpec,
    Subnet,
    SubnetSpec,
    VTEPInfo,
)


def subnet(**range_fields: Any) -> Subnet:
    fields = {"version": "4", "cidr": "198.19.0.0/24", **range_fields}
    return Subnet(ObjectMeta(name="s1"), SubnetSpec(network="n1", range=AddressRange(**fields)))


def paths(errors: list[validation.FieldError]) -> list[str]:
    return [e.path for e in errors]


def test_a_complete_valid_subnet_passes() -> None:
    valid = subnet(
        gateway="198.19.0.1",
        start="198.19.0.10",
        end="198.19.0.20",
        reserved_ips=["198.19.0.11"],
        exclude_ips=["198.19.0.12"],
    )
    assert validation.subnet_errors(valid) == []
    v6 = subnet(version="6", cidr="2001:db8:1::/64", gateway="2001:db8:1::1")
    assert validation.subnet_errors(v6) == []


@pytest.mark.parametrize(
    ("fields", "path", "fragment"),
    [
        ({"cidr": "198.19.0.5/24"}, "spec.range.cidr", "did you mean 198.19.0.0/24"),
        ({"cidr": "198.19.0.0"}, "spec.range.cidr", "no prefix length"),
        ({"cidr": "banana"}, "spec.range.cidr", "not a CIDR"),
        ({"cidr": "2001:db8::/64"}, "spec.range.cidr", "is IPv6, version is 4"),
        ({"version": "5"}, "spec.range.version", 'must be "4" or "6"'),
        ({"gateway": "198.19.1.1"}, "spec.range.gateway", "outside 198.19.0.0/24"),
        ({"gateway": "198.19.0.0"}, "spec.range.gateway", "network address"),
        ({"gateway": "198.19.0.255"}, "spec.range.gateway", "broadcast address"),
        ({"gateway": "2001:db8::1"}, "spec.range.gateway", "is IPv6, the CIDR is IPv4"),
        ({"start": "198.19.0.20", "end": "198.19.0.10"}, "spec.range.end", "before start"),
        ({"end": "198.20.0.1"}, "spec.range.end", "outside"),
        ({"reserved_ips": ["198.19.0.9", "x"]}, "spec.range.reservedIPs[1]", "not an IP"),
        ({"exclude_ips": ["198.19.0.9", "198.19.0.9"]}, "spec.range.excludeIPs[1]", "twice"),
    ],
)
def test_subnet_range_errors_name_the_field(
    fields: dict[str, Any], path: str, fragment: str
) -> None:
    errors = validation.subnet_errors(subnet(**fields))
    assert path in paths(errors), errors
    assert any(fragment in e.message for e in errors if e.path == path), errors


def test_every_problem_is_reported_not_just_the_first() -> None:
    bad = subnet(gateway="198.20.0.1", start="x")
    bad.metadata.name = "Bad_Name"
    bad.spec.network = ""
    assert set(paths(validation.subnet_errors(bad))) == {
        "metadata.name",
        "spec.network",
        "spec.range.gateway",
        "spec.range.start",
    }


def test_validate_raises_with_every_message() -> None:
    with pytest.raises(validation.ValidationFailed) as raised:
        validation.validate(subnet(cidr="198.19.0.1/24"))
    assert "Subnet 's1' is invalid: spec.range.cidr" in str(raised.value)


def network(
    type_: str = "Underlay",
    mode: str | None = None,
    net_id: int | None = None,
    selector: dict[str, str] | None = None,
    peers: list[BGPPeer] | None = None,
) -> Network:
    spec = NetworkSpec(
        type=type_,
        mode=mode,
        net_id=net_id,
        node_selector=selector or {},
        config=NetworkConfig(bgp_peers=peers) if peers else None,
    )
    return Network(ObjectMeta(name="n1"), spec)


@pytest.mark.parametrize(
    ("net", "path"),
    [
        (network(selector={"a": "b"}, net_id=100), None),
        (network("Overlay", net_id=4), None),
        (
            network(
                mode="BGP",
                net_id=65001,
                selector={"a": "b"},
                peers=[BGPPeer(address="198.18.0.1", asn=65000)],
            ),
            None,
        ),
        (network("Bogus"), "spec.type"),
        (network(mode="VXLAN", selector={"a": "b"}), "spec.mode"),
        (network(selector={"a": "b"}, net_id=4095), "spec.netID"),
        (network("Overlay"), "spec.netID"),
        (network("Overlay", net_id=2**24), "spec.netID"),
        (network(net_id=1), "spec.nodeSelector"),
        (network("Overlay", net_id=1, selector={"a": "b"}), "spec.nodeSelector"),
        (
            network(selector={"a": "b"}, peers=[BGPPeer(address="198.18.0.1", asn=1)]),
            "spec.config.bgpPeers",
        ),
        (
            network(
                mode="BGP",
                net_id=1,
                selector={"a": "b"},
                peers=[BGPPeer(address="nope", asn=0, hold_time=2)],
            ),
            "spec.config.bgpPeers[0].address",
        ),
    ],
)
def test_network_rules(net: Network, path: str | None) -> None:
    errors = validation.network_errors(net)
    if path is None:
        assert errors == []
    else:
        assert path in paths(errors), errors


@pytest.mark.parametrize(
    ("net", "path", "message"),
    [
        (network(mode="BGP", net_id=1, selector={"a": "b"}), "spec.config.bgpPeers",
         "a BGP network needs at least one peer"),
        (network(mode="BGP", net_id=1, selector={"a": "b"},
                 peers=[BGPPeer(address="198.18.0.1", asn=1),
                        BGPPeer(address="198.18.0.1", asn=2)]),
         "spec.config.bgpPeers[1].address", "198.18.0.1 is listed twice"),
        (network(mode="BGP", net_id=1, selector={"a": "b"},
                 peers=[BGPPeer(address="198.18.0.1", asn=1, password='say "hi"')]),  # noqa: S106
         "spec.config.bgpPeers[0].password", "cannot hold a quote"),
        (network(mode="BGP", net_id=1, selector={"a": "b"},
                 peers=[BGPPeer(address="198.18.0.1", asn=1, password="x" * 81)]),
         "spec.config.bgpPeers[0].password", "longer than 80 bytes"),
    ],
)  # fmt: skip
def test_bgp_networks_and_their_peers(net: Network, path: str, message: str) -> None:
    found = [str(e) for e in validation.network_errors(net) if e.path == path]
    assert any(message in e for e in found), validation.network_errors(net)


def test_a_global_bgp_network_needs_no_peers_of_its_own() -> None:
    """Its pods go to the peers of the BGP network that attaches their node."""
    assert validation.network_errors(network("GlobalBGP")) == []


def test_bgp_peer_fields_are_each_checked() -> None:
    net = network(
        mode="BGP",
        net_id=1,
        selector={"a": "b"},
        peers=[BGPPeer(address="nope", asn=0, hold_time=2, graceful_restart_seconds=5000)],
    )
    assert set(paths(validation.network_errors(net))) == {
        f"spec.config.bgpPeers[0].{f}"
        for f in ("address", "asn", "holdTime", "gracefulRestartSeconds")
    }


def test_immutable_fields_on_update() -> None:
    old = subnet()
    new = subnet(cidr="198.19.1.0/24")
    new.spec.network = "other"
    assert set(paths(validation.update_errors(old, new))) == {"spec.range.cidr", "spec.network"}
    grown = subnet(reserved_ips=["198.19.0.5"])
    assert validation.update_errors(old, grown) == []
    defaulted = network(selector={"a": "b"}, mode="VLAN")
    assert validation.update_errors(network(selector={"a": "b"}), defaulted) == []
    assert paths(
        validation.update_errors(defaulted, network(mode="BGP", net_id=1, selector={"a": "b"}))
    ) == [
        "spec.mode",
        "spec.netID",
    ]


def test_ipinstance_and_nodeinfo_rules() -> None:
    good = IPInstance(
        ObjectMeta(name="198-19-0-5", namespace="default"),
        IPInstanceSpec(
            network="n",
            subnet="s",
            address=Address(
                version="4", ip="198.19.0.5/24", mac="02:00:00:00:00:01", gateway="198.19.0.1"
            ),
        ),
    )
    assert validation.ipinstance_errors(good) == []
    good.spec.address.ip = "198.19.0.5"
    good.spec.address.mac = "01:00:5e:00:00:01"
    good.spec.address.gateway = "2001:db8::1"
    assert set(paths(validation.ipinstance_errors(good))) == {
        "spec.address.ip",
        "spec.address.mac",
        "spec.address.gateway",
    }
    info = NodeInfo(
        ObjectMeta(name="node1"),
        NodeInfoSpec(vtep_info=VTEPInfo(ip="x", mac="zz", local_ips=["1.2.3"])),
    )
    assert set(paths(validation.nodeinfo_errors(info))) == {
        "spec.vtepInfo.ip",
        "spec.vtepInfo.mac",
        "spec.vtepInfo.localIPs[0]",
    }


@given(
    base=st.ip_addresses(v=4),
    prefix=st.integers(min_value=8, max_value=30),
    probe=st.ip_addresses(v=4),
)
def test_gateway_accepted_exactly_when_inside_and_a_host(
    base: ipaddress.IPv4Address, prefix: int, probe: ipaddress.IPv4Address
) -> None:
    cidr = ipaddress.ip_network(f"{base}/{prefix}", strict=False)
    errors = validation.subnet_errors(subnet(cidr=str(cidr), gateway=str(probe)))
    usable = probe in cidr and probe not in (cidr.network_address, cidr.broadcast_address)
    assert (errors == []) == usable, errors


@given(address=st.ip_addresses(), prefix=st.integers(min_value=0, max_value=128))
def test_only_canonical_cidrs_pass(
    address: ipaddress.IPv4Address | ipaddress.IPv6Address, prefix: int
) -> None:
    prefix = min(prefix, address.max_prefixlen)
    text = f"{address}/{prefix}"
    version = str(address.version)
    errors = validation.subnet_errors(subnet(version=version, cidr=text))
    canonical = ipaddress.ip_network(text, strict=False)
    assert (errors == []) == (str(canonical) == text), errors
