"""``hybridnet-ctl policy explain`` end to end, as scenarios any store backend must support.

Subclasses provide ``store`` and ``where`` as for tests.ctl_scenarios. Two namespaces of this
run (``prod-<run>`` labelled ``team=<run>``, ``dev-<run>``), pods with labels, named container
ports and addresses (in their status, one only in an IPInstance, as on the embedded store),
and NetworkPolicies in the store; the CLI runs in this process through
:func:`hybridnet.ctl.main.run`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import itertools
import json
import uuid
from typing import Any

import pytest

from hybridnet.api import constants as c
from hybridnet.api.builtin import Namespace, NetworkPolicy, Pod
from hybridnet.api.meta import ObjectMeta
from hybridnet.api.naming import LABEL_POD_NAMESPACE, instance_name
from hybridnet.api.resources import Address, Binding, IPInstance, IPInstanceSpec
from hybridnet.ctl.main import run as ctl_run
from hybridnet.lab.manager import IPAM_NAMESPACE
from hybridnet.store.errors import AlreadyExists
from hybridnet.store.interface import Store


@dataclasses.dataclass(frozen=True)
class Result:
    code: int
    out: str
    err: str


@dataclasses.dataclass(frozen=True)
class Lab:
    prod: str
    dev: str
    dev_address: str
    """dev/client's, only in its IPInstance."""


_INSTANCE_ADDRESSES = itertools.count(1)
"""The IPInstance's address (its name) is new in every scenario: they share one API server."""


def _pod(store: Store, namespace: str, name: str, labels: dict[str, str], *,
         ports: list[dict[str, Any]], address: str | None) -> None:  # fmt: skip
    container = {"name": "c", "image": "busybox", "ports": ports}
    pod = store.create(
        Pod(ObjectMeta(name=name, namespace=namespace, labels=labels),
            body={"spec": {"containers": [container], "nodeName": "node1"}})
    )  # fmt: skip
    if address:
        pod.body["status"] = {"phase": "Running", "podIP": address, "podIPs": [{"ip": address}]}
        store.update_status(pod)


def _instance(store: Store, namespace: str, pod: str, cidr: str) -> None:
    meta = ObjectMeta(
        name=instance_name(cidr.partition("/")[0]), namespace=IPAM_NAMESPACE,
        labels={LABEL_POD_NAMESPACE: namespace, c.LABEL_POD: pod},
    )  # fmt: skip
    spec = IPInstanceSpec(
        network="policy-net", subnet="policy-subnet",
        address=Address(version="4", ip=cidr, mac="0a:00:00:00:00:09"),
        binding=Binding(node_name="node1", pod_name=pod),
    )  # fmt: skip
    store.create(IPInstance(meta, spec))


def _policy(store: Store, namespace: str, name: str, spec: dict[str, Any]) -> None:
    store.create(NetworkPolicy(ObjectMeta(name=name, namespace=namespace), body={"spec": spec}))


class PolicyExplainScenarios:
    @pytest.fixture
    def lab(self, store: Store) -> Lab:
        run = uuid.uuid4().hex[:6]
        index = next(_INSTANCE_ADDRESSES)
        address = f"198.19.{241 + index // 250}.{index % 250 + 1}"
        lab = Lab(prod=f"prod-{run}", dev=f"dev-{run}", dev_address=address)
        for namespace in (IPAM_NAMESPACE, lab.prod, lab.dev):
            labels = {"team": run} if namespace == lab.prod else {}
            with contextlib.suppress(AlreadyExists):  # the IPAM namespace may be there
                store.create(Namespace(ObjectMeta(name=namespace, labels=labels)))
        http = [{"name": "http", "containerPort": 8080}]
        _pod(store, lab.prod, "web", {"app": "web"}, ports=http, address="198.19.240.2")
        _pod(store, lab.prod, "client", {"app": "client"}, ports=[], address="198.19.240.3")
        _pod(store, lab.prod, "other", {"app": "other"}, ports=[], address="198.19.240.4")
        _pod(store, lab.dev, "client", {"app": "client"}, ports=[], address=None)
        _instance(store, lab.dev, "client", f"{lab.dev_address}/24")
        _policy(store, lab.prod, "web-in", {
            "podSelector": {"matchLabels": {"app": "web"}},
            "ingress": [{"from": [{"podSelector": {"matchLabels": {"app": "client"}}}],
                         "ports": [{"port": "http"}]}],
        })  # fmt: skip
        _policy(store, lab.prod, "web-from-dev", {
            "podSelector": {"matchLabels": {"app": "web"}},
            "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {
                "kubernetes.io/metadata.name": lab.dev}}}], "ports": [{"port": "metrics"}]}],
        })  # fmt: skip
        return lab

    @pytest.fixture
    def ctl(self, where: list[str]) -> Any:
        def call(*argv: str) -> Result:
            out, err = io.StringIO(), io.StringIO()
            code = ctl_run([*where, *argv], out, err)
            return Result(code, out.getvalue(), err.getvalue())

        return call

    def test_an_allowed_flow_names_the_isolating_policies_and_the_allowing_rule(
        self, ctl: Any, lab: Lab
    ) -> None:
        result = ctl("policy", "explain", "client", "web", "8080", "-n", lab.prod)
        assert result.code == 0, result.err
        lines = result.out.splitlines()
        assert lines[0] == (
            f"{lab.prod}/client (198.19.240.3) -> {lab.prod}/web (198.19.240.2) "
            "port 8080/TCP: allowed"
        )
        egress = next(line for line in lines if line.startswith("egress"))
        assert "no policy selects it for egress: all is allowed" in egress
        ingress = next(line for line in lines if line.startswith("ingress"))
        assert f"{lab.prod}/web-from-dev,{lab.prod}/web-in" in ingress
        assert (
            f"allowed by {lab.prod}/web-in ingress[0] (from pods app=client; ports http/TCP)"
            in ingress
        )
        # the other policy's named port exists on no pod it selects: enforced as nothing, said
        assert f"note: {lab.prod}/web-from-dev: spec.ingress[0].ports[0]:" in result.err
        assert "'metrics': it matches nothing" in result.err

    def test_denied_flows_exit_3_and_say_no_rule_matches(self, ctl: Any, lab: Lab) -> None:
        for source, port in ((f"{lab.prod}/other", "8080"), (f"{lab.prod}/client", "80"),
                             (f"{lab.dev}/client", "8080/tcp")):  # fmt: skip
            result = ctl("policy", "explain", source, f"{lab.prod}/web", port)
            assert result.code == 3, (source, port, result.err)
            assert result.out.splitlines()[0].endswith(": denied")
            assert "no ingress rule of these policies matches" in result.out

    def test_json_output_carries_both_sides_and_the_ipinstance_address(
        self, ctl: Any, lab: Lab
    ) -> None:
        result = ctl("policy", "explain", f"{lab.dev}/client", f"{lab.prod}/web", "8080",
                     "-o", "json")  # fmt: skip
        assert result.code == 3
        record = json.loads(result.out)
        assert record["source"] == {"pod": f"{lab.dev}/client", "address": lab.dev_address}
        assert record["verdict"] == "denied" and record["protocol"] == "TCP"
        sides = {side["side"]: side for side in record["sides"]}
        assert sides["egress"]["verdict"] == "allowed" and sides["egress"]["isolatedBy"] == []
        assert sides["ingress"]["isolatedBy"] == [f"{lab.prod}/web-from-dev", f"{lab.prod}/web-in"]
        assert [p["code"] for p in record["problems"]] == ["NamedPortUnresolved"]

    @pytest.mark.parametrize(
        ("argv", "message"),
        [
            (("client", "web", "80/icmp"), "protocol 'icmp' is unknown: use TCP, UDP or SCTP"),
            (("client", "web", "http"), "port 'http' is not PORT or PORT/PROTOCOL"),
            (("client", "web", "70000"), "port 70000 is out of range: use 1-65535"),
            (("client", "nobody", "80"), "/nobody not found: check the name and namespace (-n)"),
            (("Bad_Name", "web", "80"), "'Bad_Name' is not a pod: give NAME or NAMESPACE/NAME"),
        ],
    )
    def test_bad_input_is_one_line_and_exit_1(
        self, ctl: Any, lab: Lab, argv: tuple[str, ...], message: str
    ) -> None:
        result = ctl("policy", "explain", *argv, "-n", lab.prod)
        assert result.code == 1 and result.out == ""
        assert result.err.count("\n") == 1 and message in result.err, result.err
        assert "Traceback" not in result.err
