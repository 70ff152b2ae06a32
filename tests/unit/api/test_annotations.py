"""Pod network requests from annotations: precedence, parsing, and errors naming the key."""

from __future__ import annotations

import pytest

from hybridnet.api import constants as c
from hybridnet.api.annotations import (
    AnnotationError,
    ClusterDefaults,
    parse_pod_request,
    stateful_ordinal,
)
from hybridnet.api.meta import OwnerReference

STS = [OwnerReference(api_version="apps/v1", kind="StatefulSet", name="web", uid="u")]


def test_defaults_apply_when_nothing_is_said() -> None:
    request = parse_pod_request("p", {}, {}, defaults=ClusterDefaults(c.TYPE_OVERLAY, "IPv6"))
    assert (request.network_type, request.family, request.network) == ("Overlay", "IPv6", None)
    assert request.retain and request.versions == (6,)


def test_pod_annotations_win_over_the_namespace() -> None:
    namespace = {c.ANNOTATION_NETWORK_TYPE: "Overlay", c.ANNOTATION_IP_FAMILY: "DualStack"}
    pod = {c.ANNOTATION_NETWORK_TYPE: "underlay"}
    request = parse_pod_request("p", pod, namespace)
    assert (request.network_type, request.family) == ("Underlay", "DualStack")


def test_specified_network_and_subnets() -> None:
    pod = {
        c.ANNOTATION_SPECIFIED_NETWORK: "net1",
        c.ANNOTATION_SPECIFIED_SUBNET: "s4/s6",
        c.ANNOTATION_IP_FAMILY: "DualStack",
    }
    request = parse_pod_request("p", pod, {})
    assert request.network == "net1" and dict(request.subnets) == {4: "s4", 6: "s6"}
    v6 = parse_pod_request(
        "p", {**pod, c.ANNOTATION_SPECIFIED_SUBNET: "s6", c.ANNOTATION_IP_FAMILY: "IPv6"}, {}
    )
    assert dict(v6.subnets) == {6: "s6"}


def test_ip_pool_is_indexed_by_statefulset_ordinal() -> None:
    pod = {c.ANNOTATION_IP_POOL: "198.19.0.10, 198.19.0.11,198.19.0.12"}
    assert stateful_ordinal("web-1", STS) == 1
    assert dict(parse_pod_request("web-2", pod, {}, STS).fixed_ips) == {4: "198.19.0.12"}
    dual = {c.ANNOTATION_IP_POOL: "198.19.0.10/2001:db8::10", c.ANNOTATION_IP_FAMILY: "DualStack"}
    assert dict(parse_pod_request("web-0", dual, {}, STS).fixed_ips) == {
        4: "198.19.0.10",
        6: "2001:db8::10",
    }
    assert stateful_ordinal("web-1", []) is None


@pytest.mark.parametrize(
    ("pod", "owners", "key", "fragment"),
    [
        ({c.ANNOTATION_NETWORK_TYPE: "Ethereal"}, [], c.ANNOTATION_NETWORK_TYPE, "must be one of"),
        ({c.ANNOTATION_IP_FAMILY: "IPv5"}, [], c.ANNOTATION_IP_FAMILY, "must be one of"),
        ({c.ANNOTATION_IP_POOL: "198.19.0.x"}, [], c.ANNOTATION_IP_POOL, "not an IP address"),
        (
            {c.ANNOTATION_IP_POOL: "198.19.0.1,198.19.0.2"},
            [],
            c.ANNOTATION_IP_POOL,
            "not a StatefulSet",
        ),
        (
            {c.ANNOTATION_IP_POOL: "198.19.0.1"},
            STS,
            c.ANNOTATION_IP_POOL,
            "too few for StatefulSet ordinal 5",
        ),
        (
            {c.ANNOTATION_IP_POOL: "2001:db8::1"},
            [],
            c.ANNOTATION_IP_POOL,
            "does not match ip-family IPv4",
        ),
        ({c.ANNOTATION_IP_POOL: ""}, [], c.ANNOTATION_IP_POOL, "is empty"),
        (
            {c.ANNOTATION_SPECIFIED_SUBNET: "s1"},
            [],
            c.ANNOTATION_SPECIFIED_SUBNET,
            "needs specified-network",
        ),
        (
            {c.ANNOTATION_SPECIFIED_NETWORK: "n", c.ANNOTATION_SPECIFIED_SUBNET: "a/b"},
            [],
            c.ANNOTATION_SPECIFIED_SUBNET,
            "need ip-family DualStack",
        ),
        ({c.ANNOTATION_IP_RETAIN: "maybe"}, [], c.ANNOTATION_IP_RETAIN, "true or false"),
        (
            {c.ANNOTATION_MAC_POOL: "01:00:5e:00:00:01"},
            [],
            c.ANNOTATION_MAC_POOL,
            "not a unicast MAC",
        ),
    ],
)
def test_bad_annotations_name_the_key(
    pod: dict[str, str], owners: list[OwnerReference], key: str, fragment: str
) -> None:
    with pytest.raises(AnnotationError) as raised:
        parse_pod_request("web-5", pod, {}, owners)
    assert raised.value.annotation == key
    assert fragment in str(raised.value)
