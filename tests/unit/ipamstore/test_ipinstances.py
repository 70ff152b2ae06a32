"""Every IPInstance says which families its pod's allocation has, so the daemon knows from the
first of a dual-stack pair to wait for the second, without reading the pod."""

from __future__ import annotations

from pathlib import Path

import pytest

from hybridnet.api.annotations import ClusterDefaults, parse_pod_request
from hybridnet.api.meta import ObjectMeta
from hybridnet.api.resources import (
    AddressRange,
    IPInstance,
    Network,
    NetworkSpec,
    Subnet,
    SubnetSpec,
)
from hybridnet.ipamcore.allocator import Allocator
from hybridnet.ipamstore import ipinstances
from hybridnet.ipamstore.service import IPAMService, PodRef
from hybridnet.store.sqlite import SQLiteStore


@pytest.mark.parametrize(
    ("family", "expected"), [("IPv4", "4"), ("IPv6", "6"), ("DualStack", "4,6")]
)
def test_each_instance_names_the_families_of_the_allocation(
    tmp_path: Path, family: str, expected: str
) -> None:
    store = SQLiteStore(tmp_path / "store.db")
    store.create(
        Network(ObjectMeta(name="pods"), NetworkSpec(type="Overlay", mode="VXLAN", net_id=5))
    )
    for version, cidr in (("4", "198.19.0.0/24"), ("6", "2001:db8::/64")):
        store.create(
            Subnet(
                ObjectMeta(name=f"pods-v{version}"), SubnetSpec("pods", AddressRange(version, cidr))
            )
        )
    service = IPAMService(store, Allocator(), "kube-system")
    service.rebuild()
    request = parse_pod_request("web", {}, {}, (), ClusterDefaults(ip_family=family))
    service.ensure_allocated(PodRef("default", "web", None, "n1"), request, "pods")
    stored = store.list(IPInstance, "kube-system").items
    assert len(stored) == len(expected.split(","))
    for instance in stored:
        assert instance.metadata.annotations[ipinstances.ANNOTATION_FAMILIES] == expected
        assert ipinstances.families_of(instance) == frozenset(expected.split(","))
    store.close()


@pytest.mark.parametrize("text", [None, "", "4,5", "IPv4"])
def test_an_absent_or_unreadable_annotation_says_nothing(text: str | None) -> None:
    instance = IPInstance(ObjectMeta(name="198-19-0-5", namespace="kube-system"))
    if text is not None:
        instance.metadata.annotations[ipinstances.ANNOTATION_FAMILIES] = text
    assert ipinstances.families_of(instance) is None
