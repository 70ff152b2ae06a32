"""The embedded daemon's allocator follows the store: an address freed behind its back (by
``hybridnet-ctl ipam gc``, by another daemon's DEL) can be handed out again at once. It used to
stay taken until the daemon restarted, so a full subnet stayed full."""

from __future__ import annotations

from pathlib import Path

from hybridnet.api.resources import IPInstance
from hybridnet.daemon.service import DaemonConfig, DaemonService
from hybridnet.ipamstore import ipinstances
from hybridnet.lab.manager import Harness
from hybridnet.metrics import new_registry
from hybridnet.rpc import daemon_pb2 as pb
from hybridnet.store.sqlite import SQLiteStore
from tests.store_contract import wait_until
from tests.unit.daemon.cache_helpers import IPAM_NAMESPACE, NODE


def attachment(pod: str) -> pb.Attachment:
    return pb.Attachment(
        container_id=f"c-{pod}", netns="/run/netns/x", ifname="eth0",
        pod_namespace="default", pod_name=pod,
    )  # fmt: skip


def test_an_address_deleted_from_the_store_is_free_for_the_next_pod(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "store.db")
    harness = Harness(store, "t")
    harness.overlay("overlay")
    subnet = harness.subnet("one", "overlay", "198.18.7.0/24")
    subnet.spec.range.start = subnet.spec.range.end = "198.18.7.10"  # room for one pod
    store.update(subnet)
    config = DaemonConfig(
        node_name=NODE, ipam_namespace=IPAM_NAMESPACE, watch_timeout=0.5,
        embedded=True, embedded_network="overlay",
    )  # fmt: skip
    service = DaemonService(store, config, new_registry()).start()
    try:
        wait_until(
            lambda: any(s.spec.range.start for s in service.cache.subnets.cache.values()),
            "the one-address range in the daemon's cache",
        )
        addresses = service.addresses
        assert addresses is not None
        (first,) = addresses.allocate(attachment("a"), lambda network: None)
        assert ipinstances.address_of(first) == "198.18.7.10"
        # Heard first, so that the wait below cannot pass before the create was even heard.
        wait_until(lambda: bool(service.cache.pod_instances("default/a")), "the create heard")
        store.delete(IPInstance, first.name, IPAM_NAMESPACE)  # what `ipam gc` does
        wait_until(lambda: not service.cache.pod_instances("default/a"), "the delete heard")
        (second,) = addresses.allocate(attachment("b"), lambda network: None)
        assert ipinstances.address_of(second) == "198.18.7.10"
        assert ipinstances.owner_of(second) == "default/b"
    finally:
        service.stop()
        store.close()
        service.join()
