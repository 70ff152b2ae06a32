"""AdmissionReview handling: malformed input, uid echo, dispatch, codes, and a base64 JSON
Patch that applies to the pod as sent."""

from __future__ import annotations

import base64
import dataclasses
import json
from typing import Any

import pytest

from hybridnet.api import constants as c
from hybridnet.api.builtin import Node
from hybridnet.api.resources import IPInstance, Network, Subnet
from hybridnet.manager.webhook.review import ReviewHandler
from hybridnet.store.errors import Unavailable
from tests.unit.manager.webhook.objects import (
    apply_patch,
    instance,
    node,
    overlay,
    pod_json,
    subnet,
    underlay,
)


@dataclasses.dataclass
class FakeView:
    network_list: list[Network] = dataclasses.field(default_factory=list)
    subnet_list: list[Subnet] = dataclasses.field(default_factory=list)
    node_list: list[Node] = dataclasses.field(default_factory=list)
    instance_list: list[IPInstance] = dataclasses.field(default_factory=list)
    namespaces: dict[str, dict[str, str]] = dataclasses.field(default_factory=dict)

    def networks(self) -> list[Network]:
        return self.network_list

    def subnets(self) -> list[Subnet]:
        return self.subnet_list

    def nodes(self) -> list[Node]:
        return self.node_list

    def ipinstances(self) -> list[IPInstance]:
        return self.instance_list

    def namespace_annotations(self, name: str) -> dict[str, str]:
        return self.namespaces.get(name, {})


class BrokenView(FakeView):
    def networks(self) -> list[Network]:
        raise Unavailable("API server 127.0.0.1:1 unreachable")


def review(
    kind: str,
    operation: str,
    obj: dict[str, Any] | None,
    old: dict[str, Any] | None = None,
    *,
    group: str = c.GROUP,
    uid: str = "uid-1",
) -> bytes:
    request: dict[str, Any] = {
        "uid": uid,
        "kind": {"group": group, "version": "v1", "kind": kind},
        "resource": {"group": group, "version": "v1", "resource": kind.lower() + "s"},
        "name": (obj or old or {}).get("metadata", {}).get("name", ""),
        "operation": operation,
        "object": obj,
        "oldObject": old,
    }
    if kind == "Pod":
        request["namespace"] = "ns1"
    body = {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": request}
    return json.dumps(body).encode()


@pytest.fixture
def view() -> FakeView:
    return FakeView(
        network_list=[underlay("net1", {"rack": "r1"}), overlay("ovl")],
        subnet_list=[subnet("a", "198.19.0.0/24")],
        node_list=[node("n1", rack="r1")],
        instance_list=[instance("ip-1", "a")],
        namespaces={"ns1": {c.ANNOTATION_IP_FAMILY: "IPv6"}},
    )


# --------------------------------------------------------------------------- malformed


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        (b"not json", "not JSON"),
        (b"\xff\xfe", "not JSON"),
        (b"[1, 2]", "not a JSON object"),
        (b'{"apiVersion": "admission.k8s.io/v1beta1", "kind": "AdmissionReview"}', "v1beta1"),
        (b'{"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview"}', "request is missing"),
        (
            b'{"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {}}',
            "request.uid is missing",
        ),
    ],
)
def test_malformed_reviews_get_a_clear_400(view: FakeView, body: bytes, needle: str) -> None:
    status, reply = ReviewHandler(view)("validate", body)
    assert status == 400
    response = reply["response"]
    assert response["allowed"] is False and response["status"]["code"] == 400
    assert needle in response["status"]["message"]
    assert reply["kind"] == "AdmissionReview" and reply["apiVersion"] == "admission.k8s.io/v1"


def test_a_malformed_request_with_a_uid_echoes_it(view: FakeView) -> None:
    body = json.loads(review("Subnet", "CREATE", None, uid="abc"))
    status, reply = ReviewHandler(view)("validate", json.dumps(body).encode())
    assert status == 400 and reply["response"]["uid"] == "abc"
    assert "request.object is missing for CREATE" in reply["response"]["status"]["message"]
    body["request"]["operation"] = "EXPLODE"
    status, reply = ReviewHandler(view)("validate", json.dumps(body).encode())
    assert status == 400 and "EXPLODE" in reply["response"]["status"]["message"]


def test_an_object_that_does_not_fit_the_model_is_refused_not_crashed(view: FakeView) -> None:
    bad = subnet("b", "198.19.1.0/24").to_json()
    bad["spec"]["range"]["cidr"] = 42
    status, reply = ReviewHandler(view)("validate", review("Subnet", "CREATE", bad))
    assert status == 200 and reply["response"]["uid"] == "uid-1"
    assert reply["response"]["status"]["code"] == 400
    assert "spec.range.cidr: must be a string" in reply["response"]["status"]["message"]


# --------------------------------------------------------------------------- validation


def test_uid_is_echoed_and_a_good_subnet_is_allowed(view: FakeView) -> None:
    body = review("Subnet", "CREATE", subnet("b", "198.19.1.0/24").to_json(), uid="u-42")
    status, reply = ReviewHandler(view)("validate", body)
    assert status == 200
    assert reply["response"] == {"uid": "u-42", "allowed": True}


def test_overlap_is_refused_with_403_naming_both(view: FakeView) -> None:
    body = review("Subnet", "CREATE", subnet("b", "198.19.0.128/25").to_json())
    _, reply = ReviewHandler(view)("validate", body)
    assert reply["response"]["allowed"] is False
    assert reply["response"]["status"] == {
        "code": 403,
        "message": 'subnet "b" (198.19.0.128/25) overlaps subnet "a" (198.19.0.0/24)',
    }


def test_single_object_problems_are_400(view: FakeView) -> None:
    body = review("Subnet", "CREATE", subnet("b", "198.19.1.1/24").to_json())
    _, reply = ReviewHandler(view)("validate", body)
    assert reply["response"]["status"]["code"] == 400
    assert "spec.range.cidr" in reply["response"]["status"]["message"]


def test_subnet_update_and_delete(view: FakeView) -> None:
    old = subnet("a", "198.19.0.0/24").to_json()
    new = subnet("a", "198.19.0.0/23").to_json()
    _, reply = ReviewHandler(view)("validate", review("Subnet", "UPDATE", new, old))
    assert "immutable" in reply["response"]["status"]["message"]
    _, reply = ReviewHandler(view)("validate", review("Subnet", "DELETE", None, old))
    assert reply["response"]["status"]["code"] == 403
    assert "ns1/ip-1" in reply["response"]["status"]["message"]
    free = subnet("free", "198.19.7.0/24").to_json()
    _, reply = ReviewHandler(view)("validate", review("Subnet", "DELETE", None, free))
    assert reply["response"]["allowed"] is True


def test_delete_without_old_object_looks_the_object_up(view: FakeView) -> None:
    body = json.loads(review("Network", "DELETE", None))
    body["request"]["name"] = "net1"
    view.subnet_list.append(subnet("s9", "198.19.9.0/24", network="net1"))
    _, reply = ReviewHandler(view)("validate", json.dumps(body).encode())
    assert reply["response"]["status"]["message"] == 'network "net1" still has 2 subnet(s): a, s9'
    body["request"]["name"] = "unknown"
    _, reply = ReviewHandler(view)("validate", json.dumps(body).encode())
    assert reply["response"]["allowed"] is True


def test_network_rules_through_the_review(view: FakeView) -> None:
    _, reply = ReviewHandler(view)("validate", review("Network", "CREATE", overlay("o2").to_json()))
    assert "already an Overlay network" in reply["response"]["status"]["message"]
    shared = underlay("net2", {"rack": "r1"}).to_json()
    _, reply = ReviewHandler(view)("validate", review("Network", "CREATE", shared))
    assert 'share node "n1"' in reply["response"]["status"]["message"]


def test_store_errors_refuse_with_500(view: FakeView) -> None:
    broken = BrokenView(subnet_list=view.subnet_list)
    body = review("Subnet", "CREATE", subnet("b", "198.19.1.0/24").to_json())
    status, reply = ReviewHandler(broken)("validate", body)
    assert status == 200 and reply["response"]["status"]["code"] == 500
    assert "cannot read cluster state" in reply["response"]["status"]["message"]


def test_unhandled_kinds_and_subresources_are_allowed(view: FakeView) -> None:
    body = review("ConfigMap", "CREATE", {"metadata": {"name": "x"}}, group="")
    assert ReviewHandler(view)("validate", body)[1]["response"]["allowed"] is True
    status_update = json.loads(review("Subnet", "UPDATE", {"metadata": {}}, {"metadata": {}}))
    status_update["request"]["subResource"] = "status"
    reply = ReviewHandler(view)("validate", json.dumps(status_update).encode())[1]
    assert reply["response"]["allowed"] is True
    # A pod sent to /validate is not validated, nor a subnet sent to /mutate.
    pod_body = review("Pod", "CREATE", pod_json(), group="")
    assert "patch" not in ReviewHandler(view)("validate", pod_body)[1]["response"]


# --------------------------------------------------------------------------- mutation


def test_pod_mutation_is_a_base64_json_patch_that_applies(view: FakeView) -> None:
    pod = pod_json(
        annotations={c.ANNOTATION_SPECIFIED_NETWORK: "net1"}, node_selector={"disk": "ssd"}
    )
    status, reply = ReviewHandler(view)("mutate", review("Pod", "CREATE", pod, group=""))
    response = reply["response"]
    assert status == 200 and response["allowed"] is True and response["patchType"] == "JSONPatch"
    patch = json.loads(base64.b64decode(response["patch"]))
    result = apply_patch(pod, patch)
    assert result["spec"]["nodeSelector"] == {
        "disk": "ssd",
        "rack": "r1",
        c.LABEL_IPV6_QUOTA: c.QUOTA_NONEMPTY,  # the namespace asks for IPv6
    }
    assert result["metadata"]["annotations"][c.ANNOTATION_NETWORK_TYPE] == "Underlay"
    assert result["metadata"]["annotations"][c.ANNOTATION_IP_FAMILY] == "IPv6"


def test_a_bad_pod_annotation_is_refused_with_400_naming_it(view: FakeView) -> None:
    pod = pod_json(annotations={c.ANNOTATION_IP_RETAIN: "maybe"})
    _, reply = ReviewHandler(view)("mutate", review("Pod", "CREATE", pod, group=""))
    assert reply["response"]["allowed"] is False
    assert reply["response"]["status"]["code"] == 400
    assert reply["response"]["status"]["message"].startswith(f"annotation {c.ANNOTATION_IP_RETAIN}")
    assert "patch" not in reply["response"]


def test_pod_updates_are_not_mutated(view: FakeView) -> None:
    pod = pod_json()
    _, reply = ReviewHandler(view)("mutate", review("Pod", "UPDATE", pod, pod, group=""))
    assert reply["response"] == {"uid": "uid-1", "allowed": True}
