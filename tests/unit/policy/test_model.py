"""Parsing NetworkPolicy specs: upstream defaults, selectors, ports, ipBlocks, and what a spec
the API server would refuse costs (a rule dropped and reported, or the policy refused)."""

from __future__ import annotations

import ipaddress
from typing import Any

import pytest

from hybridnet.api.builtin import Namespace, NetworkPolicy, Pod
from hybridnet.policy.endpoints import namespace_info, parsed_policy, pod_endpoint
from hybridnet.policy.errors import InvalidPolicy
from hybridnet.policy.model import (
    Direction,
    IPBlock,
    LabelSelector,
    NamedPort,
    Operator,
    PortSpec,
    Protocol,
    Requirement,
    parse_policy,
    parse_selector,
)


def parse(spec: dict[str, Any]) -> Any:
    return parse_policy("x", "p", spec)


@pytest.mark.parametrize(
    ("spec", "types"),
    [
        ({"podSelector": {}}, {Direction.INGRESS}),
        ({"podSelector": {}, "ingress": [{}]}, {Direction.INGRESS}),
        ({"podSelector": {}, "egress": [{}]}, {Direction.INGRESS, Direction.EGRESS}),
        ({"podSelector": {}, "egress": []}, {Direction.INGRESS}),
        ({"podSelector": {}, "policyTypes": ["Egress"], "ingress": [{}]}, {Direction.EGRESS}),
        ({"policyTypes": ["Ingress", "Egress"]}, {Direction.INGRESS, Direction.EGRESS}),
    ],
)
def test_policy_types_default_as_upstream_documents(
    spec: dict[str, Any], types: set[Direction]
) -> None:
    assert parse(spec).policy.policy_types == types


def test_selector_operators() -> None:
    selector = parse_selector(
        {
            "matchLabels": {"app": "web"},
            "matchExpressions": [
                {"key": "tier", "operator": "In", "values": ["b", "a", "a"]},
                {"key": "env", "operator": "NotIn", "values": ["prod"]},
                {"key": "team", "operator": "Exists"},
                {"key": "legacy", "operator": "DoesNotExist"},
            ],
        },
        "spec.podSelector",
    )
    assert Requirement("tier", Operator.IN, ("a", "b")) in selector.expressions
    base = {"app": "web", "tier": "a", "team": "t"}
    assert selector.matches(base)
    assert selector.matches({**base, "env": "dev"})  # NotIn: another value
    assert not selector.matches({**base, "env": "prod"})
    assert not selector.matches({**base, "legacy": ""})
    assert not selector.matches({**base, "tier": "c"})
    assert not selector.matches({k: v for k, v in base.items() if k != "team"})
    assert not selector.matches({**base, "app": "db"})
    assert selector.describe() == "app=web,env notin (prod),!legacy,team,tier in (a,b)"
    assert LabelSelector().matches({}) and LabelSelector().describe() == "<all>"


def test_ports_default_to_tcp_and_keep_names_and_ranges() -> None:
    rule = parse(
        {
            "podSelector": {},
            "ingress": [
                {
                    "ports": [
                        {"port": 80},
                        {"port": "http", "protocol": "UDP"},
                        {"protocol": "SCTP"},
                    ]
                },
                {"ports": [{"port": 8000, "endPort": 8080}]},
            ],
        }
    ).policy.ingress
    assert rule[0].ports == (
        PortSpec(Protocol.TCP, 80),
        PortSpec(Protocol.UDP, "http"),
        PortSpec(Protocol.SCTP, None),
    )
    assert rule[1].ports == (PortSpec(Protocol.TCP, 8000, 8080),)


def test_ip_block_without_its_excepts() -> None:
    block = IPBlock(
        ipaddress.ip_network("10.0.0.0/24"),
        (ipaddress.ip_network("10.0.0.0/26"), ipaddress.ip_network("10.0.0.128/25")),
    )
    assert [str(n) for n in block.networks()] == ["10.0.0.64/26"]
    assert block.contains(ipaddress.ip_address("10.0.0.64"))
    assert not block.contains(ipaddress.ip_address("10.0.0.1"))
    assert not block.contains(ipaddress.ip_address("2001:db8::1"))


@pytest.mark.parametrize(
    ("rule", "path"),
    [
        ({"from": [{}]}, "spec.ingress[0].from[0]: must specify a peer"),
        (
            {"from": [{"ipBlock": {"cidr": "10.0.0.0/8"}, "podSelector": {}}]},
            "spec.ingress[0].from[0]: ipBlock may not be combined",
        ),
        (
            {"from": [{"ipBlock": {"cidr": "10.0.0.0/8", "except": ["11.0.0.0/24"]}}]},
            "spec.ingress[0].from[0].ipBlock.except[0]: 11.0.0.0/24 must be a strict subset",
        ),
        ({"from": [{"ipBlock": {"cidr": "10.0.0.300/8"}}]}, "ipBlock.cidr: '10.0.0.300/8'"),
        ({"ports": [{"port": 0}]}, "spec.ingress[0].ports[0].port: must be a port number"),
        ({"ports": [{"port": "80"}]}, "ports[0].port: '80': a port name must contain a letter"),
        ({"ports": [{"port": "Http"}]}, "ports[0].port: 'Http' is not a valid port name"),
        ({"ports": [{"port": 90, "endPort": 80}]}, "endPort: must be at least port (90)"),
        ({"ports": [{"port": "http", "endPort": 80}]}, "endPort: may only be set with a numeric"),
        ({"ports": [{"protocol": "ICMP"}]}, "ports[0].protocol: must be TCP, UDP or SCTP"),
        (
            {"from": [{"podSelector": {"matchExpressions": [{"key": "a", "operator": "In"}]}}]},
            "matchExpressions[0].values: must be non-empty for In",
        ),
        (
            {"from": [{"namespaceSelector": {"matchLabels": {"bad key": "v"}}}]},
            "'bad key': not a valid label key",
        ),
    ],
)
def test_a_bad_rule_is_dropped_and_reported_the_policy_still_isolates(
    rule: dict[str, Any], path: str
) -> None:
    parsed = parse({"podSelector": {}, "ingress": [rule, {"ports": [{"port": 443}]}]})
    assert Direction.INGRESS in parsed.policy.policy_types
    assert parsed.policy.ingress == (parsed.policy.ingress[0],)
    assert parsed.policy.ingress[0].ports == (PortSpec(Protocol.TCP, 443),)
    (problem,) = parsed.problems
    assert problem.code == "InvalidRule" and problem.policy == "x/p"
    assert path in problem.message and problem.message.endswith("this rule allows nothing")


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (
            {"podSelector": {"matchLabels": "app"}},
            "spec.podSelector.matchLabels: must be an object",
        ),
        ({"policyTypes": ["Ingres"]}, "spec.policyTypes[0]: 'Ingres': must be Ingress or Egress"),
        (
            {"podSelector": {"matchExpressions": [{"key": "a", "operator": "Is"}]}},
            "spec.podSelector.matchExpressions[0].operator: must be one of",
        ),
    ],
)
def test_a_policy_that_cannot_select_pods_is_refused(spec: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidPolicy) as caught:
        parse(spec)
    assert message in str(caught.value) and "NetworkPolicy x/p" in str(caught.value)


def test_endpoints_from_api_objects() -> None:
    pod = Pod.from_json(
        {
            "metadata": {"name": "web", "namespace": "shop", "labels": {"app": "web"}},
            "spec": {
                "containers": [
                    {"name": "c", "ports": [{"name": "http", "containerPort": 8080}]},
                    {"name": "d", "ports": [
                        {"name": "dns", "containerPort": 53, "protocol": "UDP"}]},
                    {"name": "e", "ports": [{"containerPort": 9000}, {"name": "bad"}]},
                ],
                "initContainers": [
                    {"name": "sidecar", "restartPolicy": "Always", "ports": [
                        {"name": "metrics", "containerPort": 9090}]},
                    {"name": "once", "ports": [{"name": "setup", "containerPort": 1}]},
                ],
            },
            "status": {"podIPs": [{"ip": "2001:db8::5"}, {"ip": "198.18.0.5"}]},
        }
    )  # fmt: skip
    endpoint = pod_endpoint(pod, [ipaddress.ip_address("198.18.0.5")], "veth0")
    assert endpoint.key == "shop/web" and endpoint.host_interface == "veth0"
    assert [str(a) for a in endpoint.addresses] == ["198.18.0.5", "2001:db8::5"]
    assert endpoint.named_ports == (
        NamedPort("dns", Protocol.UDP, 53),
        NamedPort("http", Protocol.TCP, 8080),
        NamedPort("metrics", Protocol.TCP, 9090),
    )
    assert endpoint.port_named("http", Protocol.TCP) == 8080
    assert endpoint.port_named("http", Protocol.UDP) is None
    namespace = namespace_info(Namespace.from_json({"metadata": {"name": "shop"}}))
    assert namespace.labels == {"kubernetes.io/metadata.name": "shop"}
    policy = NetworkPolicy.from_json(
        {"metadata": {"name": "p", "namespace": "shop"}, "spec": {"podSelector": {}}}
    )
    assert policy.to_json()["apiVersion"] == "networking.k8s.io/v1"
    assert parsed_policy(policy).policy.key == "shop/p"
