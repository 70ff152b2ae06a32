"""How the embedded daemon reads a pod's request from the store, as the manager would."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from hybridnet.api import constants as c
from hybridnet.api.annotations import AnnotationError
from hybridnet.api.builtin import Namespace, Pod
from hybridnet.api.meta import ObjectMeta
from hybridnet.api.resources import Network, NetworkSpec
from hybridnet.daemon.embedded_request import (
    NoNetworkOnNode,
    PodAnnotations,
    read_annotations,
    resolve,
)
from hybridnet.ipamcore.errors import NoSuchNetwork
from hybridnet.store.sqlite import SQLiteStore

NETWORKS = [
    Network(ObjectMeta(name="vx"), NetworkSpec(type="Overlay", mode="VXLAN", net_id=5)),
    Network(
        ObjectMeta(name="rack1"),
        NetworkSpec(type="Underlay", mode="VLAN", net_id=0, node_selector={"rack": "r1"}),
    ),
    Network(
        ObjectMeta(name="rack2"),
        NetworkSpec(type="Underlay", mode="VLAN", net_id=0, node_selector={"rack": "r2"}),
    ),
]
RACK1 = {"rack": "r1"}


def where(network: str | None, family: str, labels: dict[str, str]) -> dict[str, Any]:
    """The daemon's side of the decision: its defaults, its node's labels, the networks."""
    return {
        "default_network": network,
        "default_family": family,
        "node_labels": labels,
        "networks": NETWORKS,
    }


def chosen(pod: dict[str, str], namespace: dict[str, str], default: str | None) -> str:
    _, network = resolve("p", PodAnnotations(pod, namespace), **where(default, "IPv4", RACK1))
    return network


@pytest.mark.parametrize(
    ("pod", "namespace", "default", "network"),
    [
        ({}, {}, "vx", "vx"),  # chooses nothing: the daemon's --network
        ({}, {}, None, "rack1"),  # nor is there one: Underlay, by the node's labels
        ({c.ANNOTATION_NETWORK_TYPE: "Overlay"}, {}, "rack1", "vx"),
        ({c.ANNOTATION_NETWORK_TYPE: "underlay"}, {}, "vx", "rack1"),  # any case, as upstream
        ({c.ANNOTATION_SPECIFIED_NETWORK: "rack2"}, {}, "vx", "rack2"),  # named: placement later
        ({}, {c.ANNOTATION_NETWORK_TYPE: "Overlay"}, "rack1", "vx"),  # the namespace's
        ({c.ANNOTATION_NETWORK_TYPE: "Underlay"}, {c.ANNOTATION_NETWORK_TYPE: "Overlay"}, None,
         "rack1"),  # the pod's own wins
        ({c.ANNOTATION_IP_FAMILY: "DualStack"}, {}, "vx", "vx"),  # a family is no choice
    ],
)  # fmt: skip
def test_the_network_a_pod_gets(
    pod: dict[str, str], namespace: dict[str, str], default: str | None, network: str
) -> None:
    assert chosen(pod, namespace, default) == network


def test_the_family_comes_from_the_annotation_else_the_daemon() -> None:
    annotations = PodAnnotations({c.ANNOTATION_IP_FAMILY: "DualStack"}, {})
    request, _ = resolve("p", annotations, **where("vx", "IPv6", RACK1))
    assert request.versions == (4, 6)
    request, _ = resolve("p", PodAnnotations({}, {}), **where("vx", "IPv6", RACK1))
    assert request.versions == (6,)


def test_a_bad_annotation_is_named() -> None:
    with pytest.raises(AnnotationError, match=c.ANNOTATION_NETWORK_TYPE):
        chosen({c.ANNOTATION_NETWORK_TYPE: "Underground"}, {}, "vx")


def test_no_underlay_network_for_the_node_is_a_refusal_naming_its_labels() -> None:
    with pytest.raises(NoNetworkOnNode, match=r"attached to no Underlay network \(labels"):
        resolve("p", PodAnnotations({}, {}), **where(None, "IPv4", {"rack": "r9"}))


def test_no_overlay_network_at_all_is_no_such_network() -> None:
    """Not a refusal: creating the network is all it takes."""
    with pytest.raises(NoSuchNetwork, match="no Overlay network exists"):
        overlay = PodAnnotations({c.ANNOTATION_NETWORK_TYPE: "Overlay"}, {})
        resolve("p", overlay, **{**where(None, "IPv4", RACK1), "networks": NETWORKS[1:]})


def test_annotations_are_read_from_the_pod_and_its_namespace(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "store.db")
    try:
        store.create(Namespace(ObjectMeta(name="team", annotations={"a": "namespace"})))
        store.create(Pod(ObjectMeta(name="web", namespace="team", annotations={"b": "pod"})))
        read = read_annotations(store, "team", "web")
        assert (dict(read.pod), dict(read.namespace)) == ({"b": "pod"}, {"a": "namespace"})
        absent = read_annotations(store, "other", "ghost")  # neither object: the defaults
        assert (dict(absent.pod), dict(absent.namespace)) == ({}, {})
    finally:
        store.close()
