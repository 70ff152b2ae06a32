"""JSON <-> model conversion: round trips, readable errors, tolerance of unknown fields."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hybridnet.api.builtin import Pod
from hybridnet.api.codec import DecodeError
from hybridnet.api.resources import IPInstance, Network, NodeInfo, Subnet

SUBNET: dict[str, Any] = {
    "apiVersion": "networking.alibaba.com/v1",
    "kind": "Subnet",
    "metadata": {"name": "s1", "resourceVersion": "7", "labels": {"a": "b"}},
    "spec": {
        "network": "underlay1",
        "netID": 100,
        "range": {
            "version": "4",
            "cidr": "198.19.0.0/24",
            "gateway": "198.19.0.1",
            "start": "198.19.0.10",
            "end": "198.19.0.200",
            "reservedIPs": ["198.19.0.20"],
            "excludeIPs": ["198.19.0.30"],
        },
        "config": {"autoNatOutgoing": False, "private": True},
    },
    "status": {"total": 190, "used": 3, "available": 187, "lastAllocatedIP": "198.19.0.12"},
}


def test_subnet_round_trips_field_for_field() -> None:
    subnet = Subnet.from_json(SUBNET)
    assert subnet.spec.net_id == 100
    assert subnet.spec.range.reserved_ips == ["198.19.0.20"]
    assert subnet.status.last_allocated_ip == "198.19.0.12"
    out = subnet.to_json()
    assert out["spec"]["range"] == SUBNET["spec"]["range"]
    assert out["spec"]["netID"] == 100
    assert out["status"] == SUBNET["status"]
    assert out["metadata"] == SUBNET["metadata"]
    assert Subnet.from_json(out) == subnet


def test_unknown_metadata_survives_a_round_trip() -> None:
    data = {**SUBNET, "metadata": {**SUBNET["metadata"], "managedFields": [{"manager": "x"}]}}
    assert Subnet.from_json(data).to_json()["metadata"]["managedFields"] == [{"manager": "x"}]


def test_other_kinds_round_trip() -> None:
    network = {
        "metadata": {"name": "bgp"},
        "spec": {
            "type": "Underlay",
            "mode": "BGP",
            "netID": 65001,
            "nodeSelector": {"rack": "r1"},
            "config": {"bgpPeers": [{"address": "198.18.0.1", "asn": 65000, "holdTime": 9}]},
        },
    }
    assert Network.from_json(network).spec.config.bgp_peers[0].hold_time == 9  # type: ignore[union-attr]
    assert Network.from_json(network).to_json()["spec"] == network["spec"]
    instance = {
        "metadata": {"name": "198-19-0-5", "namespace": "default"},
        "spec": {
            "network": "n",
            "subnet": "s",
            "address": {"version": "4", "ip": "198.19.0.5/24", "mac": "02:00:00:00:00:01"},
            "binding": {"podName": "p", "podUID": "u", "nodeName": "n1", "stateful": {"index": 2}},
        },
        "status": {"sandboxID": "abc"},
    }
    decoded = IPInstance.from_json(instance)
    assert decoded.spec.binding is not None and decoded.spec.binding.pod_uid == "u"
    assert decoded.to_json()["spec"] == instance["spec"]
    assert decoded.to_json()["status"] == instance["status"]
    info = {
        "metadata": {"name": "node1"},
        "spec": {
            "vtepInfo": {
                "ip": "198.18.0.10",
                "mac": "02:00:00:00:00:02",
                "localIPs": ["198.18.0.10"],
            }
        },
    }
    assert NodeInfo.from_json(info).to_json()["spec"] == info["spec"]


def test_builtin_objects_keep_their_body() -> None:
    pod = Pod.from_json(
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "p", "namespace": "default"},
            "spec": {"nodeName": "node1", "containers": [{"name": "c", "image": "busybox"}]},
            "status": {"phase": "Running"},
        }
    )
    assert (pod.node_name, pod.phase) == ("node1", "Running")
    assert pod.to_json()["spec"]["containers"][0]["image"] == "busybox"
    assert pod.to_json()["apiVersion"] == "v1"


@pytest.mark.parametrize(
    ("patch", "message"),
    [
        ({"netID": "100"}, "spec.netID: must be an integer, not a string"),
        ({"range": {"version": "4"}}, "spec.range.cidr: is required"),
        (
            {"range": {**SUBNET["spec"]["range"], "reservedIPs": "x"}},
            "spec.range.reservedIPs: must be a list, not a string",
        ),
        ({"config": {"private": "yes"}}, "spec.config.private: must be true or false"),
    ],
)
def test_type_errors_name_the_field(patch: dict[str, Any], message: str) -> None:
    data = {**SUBNET, "spec": {**SUBNET["spec"], **patch}}
    with pytest.raises(DecodeError, match=message.replace("[", r"\[")):
        Subnet.from_json(data)


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=20,
)


@given(spec=JSON, status=JSON)
def test_decoding_arbitrary_json_fails_only_with_decode_error(spec: Any, status: Any) -> None:
    try:
        Subnet.from_json({"metadata": {"name": "x"}, "spec": spec, "status": status})
    except DecodeError as exc:
        assert exc.path
