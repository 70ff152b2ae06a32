"""The admission webhook behind the real API server: served over HTTPS from this process,
registered through the store, and proven by what the API server then refuses or changes.

The API server is shared by the whole session, so the configurations select only objects
labelled with this module's run id, every object has a unique name, and the fixture removes
objects and configurations before the server stops (a fail-closed webhook pointing at a
stopped server would refuse other tests' requests).
"""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TypeVar

import pytest

from hack.controlplane import CertificateAuthority, ControlPlane
from hybridnet.api import constants as c
from hybridnet.api.builtin import Namespace, Pod
from hybridnet.api.meta import ObjectMeta, Resource
from hybridnet.api.resources import (
    Address,
    AddressRange,
    IPInstance,
    IPInstanceSpec,
    Network,
    NetworkSpec,
    Subnet,
    SubnetSpec,
)
from hybridnet.manager.webhook import registration
from hybridnet.manager.webhook.review import ReviewHandler
from hybridnet.manager.webhook.server import WebhookServer
from hybridnet.manager.webhook.view import StoreView
from hybridnet.store.errors import Forbidden, Invalid, NotFound
from hybridnet.store.kube import KubeStore

R = TypeVar("R", bound=Resource)

RUN = uuid.uuid4().hex[:8]
SELECTED = "hybridnet-test/webhook"
"""Label the configurations select on: only this module's objects reach the webhook."""
LABELS = {SELECTED: RUN}
RACK = "hybridnet-test/rack"
ACTIVE_WITHIN_SECONDS = 30.0


def unique(prefix: str) -> str:
    return f"{prefix}-{RUN}-{uuid.uuid4().hex[:4]}"


def cidr(third_octet: int) -> str:
    """A /24 in 100.64.0.0/10 (shared address space: no other test uses it)."""
    return f"100.{64 + int(RUN[:2], 16) % 64}.{third_octet}.0/24"


def meta(name: str, namespace: str | None = None) -> ObjectMeta:
    return ObjectMeta(name=name, namespace=namespace, labels=dict(LABELS))


def underlay(name: str) -> Network:
    spec = NetworkSpec(type=c.TYPE_UNDERLAY, mode=c.MODE_VLAN, net_id=0, node_selector={RACK: name})
    return Network(meta(name), spec)


def subnet(name: str, network: str, cidr_text: str) -> Subnet:
    return Subnet(
        meta(name), SubnetSpec(network=network, range=AddressRange(version="4", cidr=cidr_text))
    )


class Cluster:
    """The store, and every object the tests created (removed in reverse order at the end)."""

    def __init__(self, store: KubeStore) -> None:
        self.store = store
        self.created: list[Resource] = []

    def create(self, obj: R) -> R:
        created = self.store.create(obj)
        self.created.append(created)
        return created

    def refused(self, obj: Resource) -> str:
        """Create ``obj`` expecting the webhook to refuse it; return the API server's message."""
        with pytest.raises((Forbidden, Invalid)) as refused:
            self.create(obj)
        return str(refused.value)

    def cleanup(self) -> None:
        for obj in reversed(self.created):
            if isinstance(obj, Pod | Namespace):
                continue  # no kubelet or namespace controller would finish deleting them
            with contextlib.suppress(NotFound):
                self.store.delete(type(obj), obj.name, obj.namespace)


def _wait_active(store: KubeStore) -> None:
    """The API server applies configurations asynchronously: wait until a subnet of a network
    that does not exist is refused (the CRD alone would accept it)."""
    deadline = time.monotonic() + ACTIVE_WITHIN_SECONDS
    while True:
        probe = subnet(unique("probe"), f"missing-{RUN}", cidr(250))
        try:
            store.create(probe)
        except (Forbidden, Invalid) as exc:
            assert "does not exist" in str(exc), exc
            return
        store.delete(Subnet, probe.name)
        if time.monotonic() > deadline:
            raise AssertionError("the webhook configuration never took effect")
        time.sleep(0.2)


@pytest.fixture(scope="module")
def cluster(
    control_plane: ControlPlane, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Cluster]:
    directory: Path = tmp_path_factory.mktemp("webhook-tls")
    ca = CertificateAuthority("hybridnet-webhook-test-ca")
    cert, key = ca.issue("hybridnet-webhook", sans=["127.0.0.1"], server=True).write(
        directory, "webhook"
    )
    webhook_store = KubeStore.from_kubeconfig(control_plane.kubeconfig_path)
    test_store = KubeStore.from_kubeconfig(control_plane.kubeconfig_path)
    server = WebhookServer(ReviewHandler(StoreView(webhook_store)), cert, key, "127.0.0.1", 0)
    server.start()
    cluster = Cluster(test_store)
    try:
        registration.register(
            test_store,
            f"https://127.0.0.1:{server.port}",
            ca.cert_pem,
            object_selector={"matchLabels": dict(LABELS)},
        )
        _wait_active(test_store)
        yield cluster
    finally:
        try:
            cluster.cleanup()  # while the webhook still answers
        finally:
            registration.unregister(test_store)
            server.stop()
            test_store.close()
            webhook_store.close()


@pytest.fixture(scope="module")
def namespace(cluster: Cluster) -> str:
    name = unique("webhook")
    cluster.create(Namespace(ObjectMeta(name=name)))
    return name


# --------------------------------------------------------------------------- validation


def test_an_overlapping_subnet_is_refused_naming_both(cluster: Cluster) -> None:
    network = cluster.create(underlay(unique("net")))
    first = cluster.create(subnet(unique("a"), network.name, cidr(1)))
    inner = cidr(1).replace(".0/24", ".128/25")
    message = cluster.refused(subnet(unique("b"), network.name, inner))
    assert "admission webhook" in message
    assert f'({inner}) overlaps subnet "{first.name}" ({first.spec.range.cidr})' in message
    # Next door is fine.
    cluster.create(subnet(unique("c"), network.name, cidr(2)))


def test_a_second_overlay_network_is_refused(cluster: Cluster) -> None:
    overlays = [n for n in cluster.store.list(Network).items if n.spec.type == c.TYPE_OVERLAY]
    if not overlays:
        first = Network(meta(unique("overlay")), NetworkSpec(type=c.TYPE_OVERLAY, net_id=4))
        overlays = [cluster.create(first)]
    second = Network(meta(unique("overlay")), NetworkSpec(type=c.TYPE_OVERLAY, net_id=5))
    message = cluster.refused(second)
    assert f'there is already an Overlay network ("{overlays[0].name}")' in message


def test_a_subnet_with_addresses_in_use_cannot_be_deleted(cluster: Cluster, namespace: str) -> None:
    network = cluster.create(underlay(unique("net")))
    counted = cluster.create(subnet(unique("used"), network.name, cidr(3)))
    counted.status.used = 2
    counted = cluster.store.update_status(counted)
    with pytest.raises(Forbidden, match="still has 2 address"):
        cluster.store.delete(Subnet, counted.name)
    counted.status.used = 0
    cluster.store.update_status(counted)  # so the clean-up can delete it

    held = cluster.create(subnet(unique("held"), network.name, cidr(4)))
    address = Address(version="4", ip=cidr(4).replace(".0/24", ".5/24"), mac="02:00:00:00:00:05")
    instance = cluster.create(
        IPInstance(
            meta(unique("ip"), namespace),
            IPInstanceSpec(network=network.name, subnet=held.name, address=address),
        )
    )
    with pytest.raises(Forbidden, match=f"{namespace}/{instance.name}"):
        cluster.store.delete(Subnet, held.name)
    with pytest.raises(Forbidden, match="still has 2 subnet"):
        cluster.store.delete(Network, network.name)


# --------------------------------------------------------------------------- mutation


def pod(name: str, namespace: str, annotations: dict[str, str]) -> Pod:
    metadata = meta(name, namespace)
    metadata.annotations = annotations
    return Pod(metadata, body={"spec": {"containers": [{"name": "app", "image": "busybox"}]}})


def test_an_underlay_pod_gets_its_networks_node_selector(cluster: Cluster, namespace: str) -> None:
    network = cluster.create(underlay(unique("net")))
    annotations = {
        c.ANNOTATION_NETWORK_TYPE: c.TYPE_UNDERLAY,
        c.ANNOTATION_SPECIFIED_NETWORK: network.name,
    }
    created = cluster.create(pod(unique("pod"), namespace, annotations))
    assert created.body["spec"]["nodeSelector"] == {
        RACK: network.name,
        c.LABEL_IPV4_QUOTA: c.QUOTA_NONEMPTY,
    }
    assert created.metadata.annotations[c.ANNOTATION_IP_FAMILY] == "IPv4"
    assert created.metadata.annotations[c.ANNOTATION_SPECIFIED_NETWORK] == network.name


def test_a_pod_with_a_bad_annotation_is_refused_naming_it(cluster: Cluster, namespace: str) -> None:
    message = cluster.refused(pod(unique("pod"), namespace, {c.ANNOTATION_IP_FAMILY: "IPv5"}))
    assert f"annotation {c.ANNOTATION_IP_FAMILY}" in message and "IPv5" in message


def test_objects_outside_the_selector_are_not_reviewed(cluster: Cluster, namespace: str) -> None:
    outsider = pod(unique("pod"), namespace, {c.ANNOTATION_IP_FAMILY: "IPv5"})
    outsider.metadata.labels = {}
    created = cluster.create(outsider)
    assert "nodeSelector" not in created.body["spec"]
    # Admission is synchronous, so the answer to the create is the webhook's last word; and
    # the same pod with the label is refused now: the webhook was live and would have caught
    # the outsider had the selector let it through.
    insider = pod(unique("pod"), namespace, {c.ANNOTATION_IP_FAMILY: "IPv5"})
    assert "IPv5" in cluster.refused(insider)
