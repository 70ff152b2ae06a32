"""What IPAMService offers its callers besides allocation: who holds what, removing subnets and
networks, and a read-only usage view that tells its listeners which subnet changed."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from hybridnet.api.annotations import parse_pod_request
from hybridnet.api.resources import IPInstance
from hybridnet.ipamcore.allocator import Allocator
from hybridnet.ipamcore.errors import InvalidRequest
from hybridnet.ipamstore.service import IPAMService, PodRef
from hybridnet.lab.manager import IPAM_NAMESPACE, Harness
from hybridnet.store.sqlite import SQLiteStore

Change = tuple[str, str | None]


@pytest.fixture
def service(tmp_path: Path) -> Iterator[tuple[IPAMService, list[Change]]]:
    store = SQLiteStore(tmp_path / "store.db")
    harness = Harness(store, "t")
    network = harness.underlay("u")
    subnet = harness.subnet("s", "u", "198.19.50.0/29", gateway="198.19.50.1")  # 5 usable
    ipam = IPAMService(store, Allocator(), IPAM_NAMESPACE)
    changes: list[Change] = []
    ipam.usage.subscribe(lambda network, subnet: changes.append((network, subnet)))
    ipam.apply_network(network)
    ipam.apply_subnet(subnet)
    yield ipam, changes
    store.close()


def allocate(ipam: IPAMService, name: str) -> None:
    request = parse_pod_request(name, {}, {})
    ipam.ensure_allocated(PodRef("apps", name, None, "node-t"), request, "u")


def test_the_usage_view_follows_allocation_and_release(
    service: tuple[IPAMService, list[Change]],
) -> None:
    ipam, changes = service
    assert changes == [("u", None), ("u", "s")]
    before = ipam.usage.subnet("s")
    assert before is not None and (before.total, before.used, before.available) == (5, 0, 5)

    changes.clear()
    allocate(ipam, "web")
    assert changes == [("u", "s")]
    (held,) = ipam.held_by("apps/web")
    after = ipam.usage.subnet("s")
    assert after is not None and (after.used, after.available) == (1, 4)
    assert after.last_allocated == held.address
    assert [u.subnet for u in ipam.usage.subnets_of("u")] == ["s"]
    assert ipam.usage.sticky_subnet("u", 4) == "s"

    changes.clear()
    assert ipam.release("apps/web") == 1
    assert changes == [("u", "s")]
    assert ipam.held_by("apps/web") == []
    assert ipam.store.list(IPInstance, IPAM_NAMESPACE).items == []


def test_storage_events_are_accounted_for(service: tuple[IPAMService, list[Change]]) -> None:
    ipam, changes = service
    allocate(ipam, "web")
    (instance,) = ipam.store.list(IPInstance, IPAM_NAMESPACE).items
    ipam.release("apps/web")
    changes.clear()
    assert ipam.on_stored(instance)  # e.g. another manager's, seen on the watch
    assert changes == [("u", "s")]
    assert [a.address for a in ipam.held_by("apps/web")] == ["198.19.50.2"]
    ipam.on_deleted(instance)
    assert ipam.held_by("apps/web") == []
    usage = ipam.usage.subnet("s")
    assert usage is not None and usage.used == 0


def test_a_subnet_in_use_is_retired_not_removed(
    service: tuple[IPAMService, list[Change]],
) -> None:
    ipam, changes = service
    allocate(ipam, "web")
    with pytest.raises(InvalidRequest):
        ipam.remove_subnet("s")
    with pytest.raises(InvalidRequest):
        ipam.remove_network("u")  # its subnet still refers to it
    ipam.release("apps/web")  # the last address: the retired subnet goes
    assert ipam.usage.subnet("s") is None
    changes.clear()
    ipam.remove_network("u")
    assert changes == [("u", None)]


def test_rebuild_restores_what_storage_holds(
    service: tuple[IPAMService, list[Change]],
) -> None:
    ipam, _ = service
    allocate(ipam, "web")
    allocate(ipam, "db")
    fresh = IPAMService(ipam.store, Allocator(), IPAM_NAMESPACE)
    assert fresh.rebuild() == 2
    usage = fresh.usage.subnet("s")
    assert usage is not None and usage.used == 2
    assert fresh.held_by("apps/db") == ipam.held_by("apps/db")
