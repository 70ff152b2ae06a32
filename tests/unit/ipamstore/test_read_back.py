"""IPAMService against storage it did not write alone: reading a pod back from storage, and
claims that another manager's IPInstances beat."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from hybridnet.api import constants as c
from hybridnet.api.annotations import parse_pod_request
from hybridnet.api.resources import IPInstance
from hybridnet.ipamcore.allocator import Allocation, Allocator
from hybridnet.ipamcore.errors import AddressUnavailable
from hybridnet.ipamstore import ipinstances
from hybridnet.ipamstore.service import IPAMService, PodRef
from hybridnet.lab.manager import IPAM_NAMESPACE, Harness
from hybridnet.store.interface import ListResult, R, Store
from hybridnet.store.sqlite import SQLiteStore
from tests.unit.manager.stores import DelegatingStore


class AfterList(DelegatingStore):
    """Runs ``action`` once, right after a list has been read and before it is returned:
    what happens then is newer than the list."""

    def __init__(self, inner: Store):
        super().__init__(inner)
        self.action: Callable[[], None] | None = None

    def list(
        self, kind: type[R], namespace: str | None = None, label_selector: str | None = None
    ) -> ListResult[R]:
        listed = super().list(kind, namespace, label_selector)
        action, self.action = self.action, None
        if action is not None:
            action()
        return listed


@pytest.fixture
def store(tmp_path: Path) -> Iterator[AfterList]:
    inner = SQLiteStore(tmp_path / "store.db")
    harness = Harness(inner, "t")
    harness.underlay("u")
    harness.subnet("v4", "u", "198.19.60.0/24")
    harness.subnet("v6", "u", "2001:db8:60::/64", version="6")
    yield AfterList(inner)
    inner.close()


@pytest.fixture
def ipam(store: AfterList) -> IPAMService:
    ipam = IPAMService(store, Allocator(), IPAM_NAMESPACE)
    ipam.rebuild()
    return ipam


def another_managers(store: Store, owner: str, address: str) -> IPInstance:
    """Store an IPInstance for ``owner`` as another manager would have."""
    namespace, name = owner.split("/")
    version = 6 if ":" in address else 4
    allocation = Allocation(
        network="u",
        subnet=f"v{version}",
        version=version,
        address=address,
        prefix_length=64 if version == 6 else 24,
        gateway=None,
        net_id=0,
        mac="02:00:00:00:60:01",
        owner=owner,
    )
    built = ipinstances.build(
        allocation,
        ipam_namespace=IPAM_NAMESPACE,
        pod_namespace=namespace,
        pod_name=name,
        pod_uid=None,
        node_name="n1",
        ordinal=None,
        families=[version],
    )
    return store.create(built)


def held(ipam: IPAMService, owner: str) -> list[str]:
    return [a.address for a in ipam.held_by(owner)]


def test_read_back_makes_the_allocator_hold_what_storage_holds(
    store: AfterList, ipam: IPAMService
) -> None:
    gone = another_managers(store, "apps/p", "198.19.60.7")
    assert ipam.on_stored(gone)
    store.inner.delete(IPInstance, gone.name, IPAM_NAMESPACE)  # its event not heard yet
    another_managers(store, "apps/p", "198.19.60.8")
    stored = ipam.read_back("apps/p")
    assert stored is not None and [i.name for i in stored] == ["198-19-60-8"]
    assert held(ipam, "apps/p") == ["198.19.60.8"]


def test_read_back_gives_way_to_an_event_heard_during_the_read(
    store: AfterList, ipam: IPAMService
) -> None:
    """The read still has the IPInstance; its deletion, newer, is heard before the read
    returns. The read must not put the address back."""
    instance = another_managers(store, "apps/p", "198.19.60.7")
    assert ipam.on_stored(instance)

    def deleted_and_heard() -> None:
        store.inner.delete(IPInstance, instance.name, IPAM_NAMESPACE)
        ipam.on_deleted(instance)

    store.action = deleted_and_heard
    assert ipam.read_back("apps/p") is None
    assert held(ipam, "apps/p") == []


def test_losing_the_second_family_keeps_the_first_written(
    store: AfterList, ipam: IPAMService
) -> None:
    """Another manager holds the IPv6 address this one picks: the IPv4 IPInstance already
    written stays (another manager may have kept it as the pod's), and IPv6 moves on."""
    another_managers(store, "apps/q", "2001:db8:60::1")
    request = parse_pod_request("p", {c.ANNOTATION_IP_FAMILY: "DualStack"}, {})
    allocations = ipam.ensure_allocated(PodRef("apps", "p", None, "n1"), request, "u")
    assert [a.address for a in allocations] == ["198.19.60.1", "2001:db8:60::2"]
    mine = [i for i in store.list(IPInstance, IPAM_NAMESPACE).items if i.name != "2001-db8-60--1"]
    assert sorted(i.name for i in mine) == ["198-19-60-1", "2001-db8-60--2"]
    assert {ipinstances.families_of(i) for i in mine} == {frozenset({"4", "6"})}
    assert mine[0].spec.address.mac == mine[1].spec.address.mac


def test_a_fixed_address_another_pod_holds_in_storage_is_refused(
    store: AfterList, ipam: IPAMService
) -> None:
    another_managers(store, "apps/q", "198.19.60.50")
    request = parse_pod_request("p", {c.ANNOTATION_IP_POOL: "198.19.60.50"}, {})
    with pytest.raises(AddressUnavailable, match=r"198\.19\.60\.50 is already claimed in storage"):
        ipam.ensure_allocated(PodRef("apps", "p", None, "n1"), request, "u")
    assert held(ipam, "apps/p") == []


def test_a_fixed_address_another_manager_gave_this_very_pod_is_taken(
    store: AfterList, ipam: IPAMService
) -> None:
    another_managers(store, "apps/p", "198.19.60.50")
    request = parse_pod_request("p", {c.ANNOTATION_IP_POOL: "198.19.60.50"}, {})
    allocations = ipam.ensure_allocated(PodRef("apps", "p", None, "n1"), request, "u")
    assert [a.address for a in allocations] == ["198.19.60.50"]
    assert len(store.list(IPInstance, IPAM_NAMESPACE).items) == 1
