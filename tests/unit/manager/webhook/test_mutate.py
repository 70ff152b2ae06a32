"""Pod mutation: network resolution per branch, node selectors, recorded decisions, JSON Patch
escaping, and refusals that name the annotation."""

from __future__ import annotations

from typing import Any

import pytest

from hybridnet.api import constants as c
from hybridnet.api.annotations import ClusterDefaults
from hybridnet.manager.webhook.mutate import Mutation, escape, map_patch, mutate_pod
from tests.unit.manager.webhook.objects import apply_patch, overlay, pod_json, subnet, underlay

NETWORKS = [underlay("net1", {"rack": "r1", "example.com/zone": "z1"}), overlay("ovl")]
SUBNETS = [
    subnet("s4", "198.19.0.0/24", network="net1"),
    subnet("s6", "2001:db8::/64", network="net1"),
    subnet("o4", "10.0.0.0/16", network="ovl"),
]


def mutated(
    pod: dict[str, Any],
    namespace: dict[str, str] | None = None,
    networks: list[Any] | None = None,
    defaults: ClusterDefaults | None = None,
) -> tuple[Mutation, dict[str, Any]]:
    mutation = mutate_pod(
        pod, namespace or {}, NETWORKS if networks is None else networks, SUBNETS, defaults
    )
    return mutation, apply_patch(pod, mutation.patch) if mutation.allowed else pod


def test_underlay_pod_with_a_network_gets_its_node_selector() -> None:
    pod = pod_json(
        annotations={c.ANNOTATION_NETWORK_TYPE: "Underlay", c.ANNOTATION_SPECIFIED_NETWORK: "net1"}
    )
    mutation, result = mutated(pod)
    assert mutation.allowed
    assert result["spec"]["nodeSelector"] == {
        "rack": "r1",
        "example.com/zone": "z1",
        c.LABEL_IPV4_QUOTA: c.QUOTA_NONEMPTY,
    }
    assert result["metadata"]["annotations"] == {
        c.ANNOTATION_NETWORK_TYPE: "Underlay",
        c.ANNOTATION_SPECIFIED_NETWORK: "net1",
        c.ANNOTATION_IP_FAMILY: "IPv4",
    }


def test_underlay_pod_without_a_network_goes_to_attached_nodes() -> None:
    pod = pod_json()  # no annotations at all: the cluster default (Underlay, IPv4)
    mutation, result = mutated(pod)
    assert result["spec"]["nodeSelector"] == {
        c.LABEL_UNDERLAY_ATTACHMENT: "true",
        c.LABEL_IPV4_QUOTA: c.QUOTA_NONEMPTY,
    }
    assert c.ANNOTATION_SPECIFIED_NETWORK not in result["metadata"]["annotations"]
    assert result["metadata"]["annotations"][c.ANNOTATION_NETWORK_TYPE] == "Underlay"
    # metadata.annotations and spec.nodeSelector were absent: each is added whole.
    assert [op["path"] for op in mutation.patch] == ["/metadata/annotations", "/spec/nodeSelector"]


@pytest.mark.parametrize(
    ("family", "label"),
    [("IPv6", c.LABEL_IPV6_QUOTA), ("DualStack", c.LABEL_DUALSTACK_QUOTA)],
)
def test_the_quota_selector_follows_the_family(family: str, label: str) -> None:
    _, result = mutated(pod_json(annotations={c.ANNOTATION_IP_FAMILY: family}))
    assert result["spec"]["nodeSelector"][label] == c.QUOTA_NONEMPTY
    assert result["metadata"]["annotations"][c.ANNOTATION_IP_FAMILY] == family


def test_overlay_pod_resolves_to_the_overlay_network() -> None:
    mutation, result = mutated(pod_json(annotations={c.ANNOTATION_NETWORK_TYPE: "overlay"}))
    assert mutation.allowed
    assert "nodeSelector" not in result["spec"]
    assert result["metadata"]["annotations"] == {
        c.ANNOTATION_NETWORK_TYPE: "Overlay",
        c.ANNOTATION_SPECIFIED_NETWORK: "ovl",
        c.ANNOTATION_IP_FAMILY: "IPv4",
    }
    # The key existed: its normalised value replaces it.
    assert mutation.patch[0] == {
        "op": "replace",
        "path": "/metadata/annotations/networking.alibaba.com~1network-type",
        "value": "Overlay",
    }


def test_overlay_pod_without_an_overlay_network_is_refused() -> None:
    mutation, _ = mutated(
        pod_json(annotations={c.ANNOTATION_NETWORK_TYPE: "Overlay"}), networks=[underlay("net1")]
    )
    assert not mutation.allowed
    assert c.ANNOTATION_NETWORK_TYPE in mutation.message and "has none" in mutation.message


def test_namespace_annotations_and_cluster_defaults_are_recorded_on_the_pod() -> None:
    namespace = {c.ANNOTATION_SPECIFIED_NETWORK: "ovl"}
    _, result = mutated(pod_json(), namespace, defaults=ClusterDefaults(c.TYPE_UNDERLAY, "IPv6"))
    annotations = result["metadata"]["annotations"]
    # The network decides the type when nobody names one.
    assert annotations[c.ANNOTATION_NETWORK_TYPE] == "Overlay"
    assert annotations[c.ANNOTATION_SPECIFIED_NETWORK] == "ovl"
    assert annotations[c.ANNOTATION_IP_FAMILY] == "IPv6"


def test_specified_subnets_are_recorded_and_checked() -> None:
    pod = pod_json(
        annotations={
            c.ANNOTATION_SPECIFIED_NETWORK: "net1",
            c.ANNOTATION_SPECIFIED_SUBNET: "s4/s6",
            c.ANNOTATION_IP_FAMILY: "DualStack",
        }
    )
    mutation, result = mutated(pod)
    assert mutation.allowed, mutation.message
    assert result["metadata"]["annotations"][c.ANNOTATION_SPECIFIED_SUBNET] == "s4/s6"
    for value, problem in (("o4", "belongs to network 'ovl'"), ("nope", "does not exist")):
        pod = pod_json(
            annotations={
                c.ANNOTATION_SPECIFIED_NETWORK: "net1",
                c.ANNOTATION_SPECIFIED_SUBNET: value,
            }
        )
        mutation, _ = mutated(pod)
        assert not mutation.allowed and problem in mutation.message
        assert mutation.message.startswith(f"annotation {c.ANNOTATION_SPECIFIED_SUBNET}:")
    v6_as_v4 = pod_json(
        annotations={c.ANNOTATION_SPECIFIED_NETWORK: "net1", c.ANNOTATION_SPECIFIED_SUBNET: "s6"}
    )
    mutation, _ = mutated(v6_as_v4)
    assert not mutation.allowed and "is IPv6, not IPv4" in mutation.message


def test_a_missing_network_is_refused_naming_the_annotation() -> None:
    mutation, _ = mutated(pod_json(annotations={c.ANNOTATION_SPECIFIED_NETWORK: "nope"}))
    assert not mutation.allowed
    assert mutation.message == (
        f"annotation {c.ANNOTATION_SPECIFIED_NETWORK}: network 'nope' does not exist"
    )


def test_type_and_network_must_agree() -> None:
    pod = pod_json(
        annotations={c.ANNOTATION_NETWORK_TYPE: "Overlay", c.ANNOTATION_SPECIFIED_NETWORK: "net1"}
    )
    mutation, _ = mutated(pod)
    assert not mutation.allowed
    assert "Overlay does not match network 'net1', which is Underlay" in mutation.message


def test_a_conflicting_node_selector_is_refused() -> None:
    pod = pod_json(
        annotations={c.ANNOTATION_SPECIFIED_NETWORK: "net1"}, node_selector={"rack": "r9"}
    )
    mutation, _ = mutated(pod)
    assert not mutation.allowed
    assert mutation.message == (
        "spec.nodeSelector: rack='r9' conflicts with rack='r1', which network 'net1' needs"
    )


def test_an_agreeing_node_selector_is_kept_and_extended_key_by_key() -> None:
    pod = pod_json(
        annotations={"keep": "me"},
        node_selector={"rack": "r1", "disk": "ssd"},
    )
    pod["metadata"]["annotations"][c.ANNOTATION_SPECIFIED_NETWORK] = "net1"
    mutation, result = mutated(pod)
    assert mutation.allowed
    assert result["spec"]["nodeSelector"] == {
        "rack": "r1",
        "disk": "ssd",
        "example.com/zone": "z1",
        c.LABEL_IPV4_QUOTA: c.QUOTA_NONEMPTY,
    }
    assert result["metadata"]["annotations"]["keep"] == "me"
    paths = {op["path"] for op in mutation.patch}
    assert "/spec/nodeSelector/example.com~1zone" in paths
    assert "/spec/nodeSelector/rack" not in paths  # already right: no operation


def test_annotation_errors_refuse_naming_the_annotation() -> None:
    mutation, _ = mutated(pod_json(annotations={c.ANNOTATION_IP_FAMILY: "IPv5"}))
    assert not mutation.allowed
    assert mutation.message.startswith(f"annotation {c.ANNOTATION_IP_FAMILY}:")
    assert "IPv5" in mutation.message
    mutation, _ = mutated(pod_json(), {c.ANNOTATION_NETWORK_TYPE: "Wireless"})
    assert not mutation.allowed and c.ANNOTATION_NETWORK_TYPE in mutation.message


def test_host_network_pods_are_left_alone() -> None:
    pod = pod_json(annotations={c.ANNOTATION_IP_FAMILY: "IPv5"}, hostNetwork=True)
    assert mutate_pod(pod, {}, [], [], None) == Mutation(allowed=True)


def test_a_pod_without_spec_or_with_bad_maps_is_refused() -> None:
    assert not mutate_pod({"metadata": {"name": "x"}}, {}, NETWORKS, SUBNETS).allowed
    bad = pod_json(node_selector={"a": 1})  # type: ignore[dict-item]
    mutation = mutate_pod(bad, {}, NETWORKS, SUBNETS)
    assert not mutation.allowed and "spec.nodeSelector" in mutation.message


def test_generate_name_pods_are_handled() -> None:
    pod = pod_json(name="")
    pod["metadata"]["generateName"] = "web-"
    assert mutated(pod)[0].allowed


# --------------------------------------------------------------------------- JSON Patch


def test_pointer_escaping() -> None:
    assert escape("networking.alibaba.com/network-type") == "networking.alibaba.com~1network-type"
    assert escape("a~b/c") == "a~0b~1c"


def test_map_patch_adds_whole_maps_and_single_keys() -> None:
    assert map_patch("/m", None, {"a/b": "1"}) == [
        {"op": "add", "path": "/m", "value": {"a/b": "1"}}
    ]
    assert map_patch("/m", None, {}) == []
    assert map_patch("/m", {"a/b": "0", "x": "y"}, {"a/b": "1", "~": "2", "x": "y"}) == [
        {"op": "replace", "path": "/m/a~1b", "value": "1"},
        {"op": "add", "path": "/m/~0", "value": "2"},
    ]


def test_a_null_annotation_map_is_replaced_whole() -> None:
    pod = pod_json()
    pod["metadata"]["annotations"] = None
    mutation, result = mutated(pod)
    assert mutation.patch[0]["path"] == "/metadata/annotations"
    assert result["metadata"]["annotations"][c.ANNOTATION_NETWORK_TYPE] == "Underlay"
