"""The Kubernetes backend against the real API server: the shared contract, the CRDs' own
validation, and watches that survive an API-server restart."""

from __future__ import annotations

import json
import subprocess
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from hack.controlplane import ControlPlane
from hybridnet.api.builtin import Namespace
from hybridnet.api.meta import ObjectMeta
from hybridnet.api.resources import Subnet
from hybridnet.store.errors import Unavailable
from hybridnet.store.informer import Backoff, Informer
from hybridnet.store.interface import WatchEvent
from hybridnet.store.kube import KubeStore
from tests.store_contract import StoreContract, make_subnet, wait_until


@pytest.fixture(scope="module")
def kube_store(control_plane: ControlPlane) -> Iterator[KubeStore]:
    store = KubeStore.from_kubeconfig(control_plane.kubeconfig_path)
    yield store
    store.close()


@pytest.fixture(scope="module")
def test_namespace(kube_store: KubeStore) -> str:
    name = f"contract-{uuid.uuid4().hex[:6]}"
    kube_store.create(Namespace(ObjectMeta(name=name)))
    return name


class TestKubeStore(StoreContract):
    @pytest.fixture
    def store(self, kube_store: KubeStore) -> KubeStore:
        return kube_store

    @pytest.fixture
    def namespace(self, test_namespace: str) -> str:
        return test_namespace

    @pytest.fixture
    def compact(self, control_plane: ControlPlane) -> Callable[[], None]:
        def compact_now() -> None:
            control_plane.compact_etcd()

        return compact_now


# --------------------------------------------------------------------------- CRD validation


def _create_raw(kube_api: client.ApiClient, plural: str, body: dict[str, Any]) -> str:
    """Create bypassing our client-side validation; return the API server's refusal."""
    api = client.CustomObjectsApi(kube_api)
    with pytest.raises(ApiException) as refused:
        api.create_cluster_custom_object("networking.alibaba.com", "v1", plural, body)
    assert refused.value.status == 422, refused.value.body
    message: str = json.loads(refused.value.body or "{}")["message"]
    return message


def _subnet_body(name: str, **range_fields: Any) -> dict[str, Any]:
    return {
        "apiVersion": "networking.alibaba.com/v1",
        "kind": "Subnet",
        "metadata": {"name": name},
        "spec": {
            "network": "n1",
            "range": {"version": "4", "cidr": "198.19.0.0/24", **range_fields},
        },
    }


@pytest.mark.parametrize(
    ("range_fields", "expected"),
    [
        ({"cidr": "198.19.0.9/24"}, "spec.range.cidr must be canonical"),
        ({"cidr": "2001:db8::/64"}, "spec.range.cidr is not of the family"),
        ({"cidr": "nonsense"}, "must be a CIDR"),
        ({"gateway": "198.20.0.1"}, "spec.range.gateway must be an address inside"),
        ({"start": "198.19.1.1"}, "spec.range.start must be an address inside"),
        ({"reservedIPs": ["198.19.0.5", "10.x"]}, "reservedIPs entry must be an address inside"),
        ({"version": "5"}, 'Unsupported value: "5"'),
    ],
)
def test_the_subnet_crd_rejects_invalid_objects_readably(
    kube_api: client.ApiClient, range_fields: dict[str, Any], expected: str
) -> None:
    message = _create_raw(
        kube_api, "subnets", _subnet_body(f"bad-{uuid.uuid4().hex[:6]}", **range_fields)
    )
    assert expected in message


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ({"type": "Underlay", "netID": 10}, "needs a node selector"),
        (
            {"type": "Overlay", "netID": 5, "nodeSelector": {"a": "b"}},
            "only Underlay networks select",
        ),
        ({"type": "Overlay"}, "VXLAN VNI"),
        (
            {"type": "Underlay", "mode": "VXLAN", "nodeSelector": {"a": "b"}},
            "mode must be VLAN or BGP",
        ),
        ({"type": "Underlay", "netID": 5000, "nodeSelector": {"a": "b"}}, "VLAN id (0-4094)"),
        (
            {
                "type": "Underlay",
                "mode": "BGP",
                "netID": 65001,
                "nodeSelector": {"a": "b"},
                "config": {"bgpPeers": [{"address": "not-ip", "asn": 65000}]},
            },
            "must be an IP address",
        ),
        (
            {"type": "Underlay", "mode": "BGP", "netID": 65001, "nodeSelector": {"a": "b"}},
            "a BGP network needs at least one peer",
        ),
        (
            {
                "type": "GlobalBGP",
                "netID": 65001,
                "config": {
                    "bgpPeers": [
                        {"address": "198.18.0.1", "asn": 1},
                        {"address": "198.18.0.1", "asn": 2},
                    ]
                },
            },
            "a peer address is listed once",
        ),
        (
            {
                "type": "GlobalBGP",
                "netID": 65001,
                "config": {"bgpPeers": [{"address": "198.18.0.1", "asn": 1, "password": 'a"b'}]},
            },
            "should match",
        ),
    ],
)
def test_the_network_crd_rejects_invalid_objects_readably(
    kube_api: client.ApiClient, spec: dict[str, Any], expected: str
) -> None:
    body = {
        "apiVersion": "networking.alibaba.com/v1",
        "kind": "Network",
        "metadata": {"name": f"bad-{uuid.uuid4().hex[:6]}"},
        "spec": spec,
    }
    assert expected in _create_raw(kube_api, "networks", body)


def test_network_type_is_immutable_on_the_server(kube_api: client.ApiClient) -> None:
    api = client.CustomObjectsApi(kube_api)
    name = f"n-{uuid.uuid4().hex[:6]}"
    created: dict[str, Any] = api.create_cluster_custom_object(  # type: ignore[assignment]
        "networking.alibaba.com",
        "v1",
        "networks",
        {
            "apiVersion": "networking.alibaba.com/v1",
            "kind": "Network",
            "metadata": {"name": name},
            "spec": {"type": "Overlay", "netID": 7},
        },
    )
    assert created["spec"]["type"] == "Overlay"
    created["spec"]["netID"] = 8
    with pytest.raises(ApiException) as refused:
        api.replace_cluster_custom_object("networking.alibaba.com", "v1", "networks", name, created)
    assert "spec.netID is immutable" in str(refused.value.body)


def test_printer_columns_show_network_cidr_and_usage(
    control_plane: ControlPlane, kube_store: KubeStore
) -> None:
    name = f"cols-{uuid.uuid4().hex[:6]}"
    created = kube_store.create(make_subnet(name, "198.19.42.0/24"))
    created.status.total, created.status.used, created.status.available = 253, 3, 250
    kube_store.update_status(created)
    shown = subprocess.run(
        [
            str(control_plane.kubectl),
            "--kubeconfig",
            str(control_plane.kubeconfig_path),
            "get",
            "subnet",
            name,
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    header, row = shown.splitlines()
    assert header.split()[:7] == ["NAME", "NETWORK", "VERSION", "CIDR", "GATEWAY", "USED", "TOTAL"]
    assert row.split()[:3] == [name, "net1", "4"]
    assert "198.19.42.0/24" in row and " 3 " in row and "253" in row


# --------------------------------------------------------------------------- failures


def test_an_unreachable_api_server_is_unavailable(control_plane: ControlPlane) -> None:
    store = KubeStore.from_kubeconfig(control_plane.kubeconfig_path)
    store.configuration.host = "https://127.0.0.1:1"
    with pytest.raises(Unavailable, match="unreachable"):
        store.get(Subnet, "anything")
    store.close()


def test_a_missing_kubeconfig_is_unavailable(tmp_path: Any) -> None:
    with pytest.raises(Unavailable, match="cannot load Kubernetes credentials"):
        KubeStore.from_kubeconfig(tmp_path / "nope")


def test_an_informer_survives_an_api_server_restart(
    control_plane: ControlPlane, kube_store: KubeStore
) -> None:
    run = uuid.uuid4().hex[:6]
    heard: list[tuple[str, str]] = []

    def handler(event: WatchEvent[Subnet]) -> None:
        heard.append((event.type, event.object.metadata.name))

    kube_store.create(make_subnet(f"before-{run}", "198.19.60.0/24", run=run))
    informer = Informer(
        kube_store,
        Subnet,
        handler,
        label_selector=f"run={run}",
        watch_timeout=5,
        backoff=Backoff(initial=0.1, maximum=1.0),
    ).start()
    try:
        assert informer.synced.wait(20)
        control_plane.restart_apiserver()
        after = kube_store.create(make_subnet(f"after-{run}", "198.19.61.0/24", run=run))
        wait_until(lambda: ("ADDED", f"after-{run}") in heard, "an event after the restart")
        after.spec.range.reserved_ips = ["198.19.61.7"]
        kube_store.update(after)
        wait_until(lambda: ("MODIFIED", f"after-{run}") in heard, "a modification after it")
        assert {k[1] for k in informer.cache} == {f"before-{run}", f"after-{run}"}
    finally:
        informer.stop(timeout=15)
