"""The truth table: upstream e2e-style policy cases over nine pods in three namespaces, each
probe matrix judged twice, by the evaluator (the compilation) and by running the rendered
nftables ruleset (tests.unit.policy.nft_sim), and both must equal the expectation."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import pytest

from hybridnet.policy.evaluate import allowed
from hybridnet.policy.render import ruleset
from tests.unit.policy.cluster import (
    ALL_PODS,
    Reachability,
    address,
    compile_lab,
    differences,
    policy,
)
from tests.unit.policy.nft_sim import Packet, forward


@dataclasses.dataclass
class Probe:
    port: int
    protocol: str
    expect: Reachability
    version: int = 4


@dataclasses.dataclass
class Case:
    name: str
    policies: list[tuple[str, str, dict[str, Any]]]
    probes: list[Probe]
    pod_labels: Mapping[str, Mapping[str, str]] | None = None
    namespace_labels: Mapping[str, Mapping[str, str]] | None = None


def tcp(port: int, expect: Reachability, version: int = 4) -> Probe:
    return Probe(port, "TCP", expect, version)


DENY_INGRESS = {"podSelector": {}, "policyTypes": ["Ingress"]}
DENY_EGRESS = {"podSelector": {}, "policyTypes": ["Egress"]}
A = {"matchLabels": {"pod": "a"}}


def ingress_to_a(*peers: dict[str, Any], ports: list[Any] | None = None) -> dict[str, Any]:
    rule: dict[str, Any] = {"from": list(peers)}
    if ports is not None:
        rule["ports"] = ports
    return {"podSelector": A, "ingress": [rule]}


CASES = [
    Case("no policies: everything is allowed", [], [tcp(80, Reachability())]),
    Case(
        "deny all ingress in x",
        [("x", "deny", DENY_INGRESS)],
        [tcp(80, Reachability().expect("*", "x", False))],
    ),
    Case(
        "deny all egress in x (policyTypes Egress, no rules)",
        [("x", "deny", DENY_EGRESS)],
        [tcp(80, Reachability().expect("x", "*", False))],
    ),
    Case(
        "deny all ingress and egress in x",
        [("x", "deny", {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]})],
        [tcp(80, Reachability().expect("*", "x", False).expect("x", "*", False))],
    ),
    Case(
        "allow all ingress beside deny all: the union allows",
        [("x", "deny", DENY_INGRESS), ("x", "allow", {"podSelector": {}, "ingress": [{}]})],
        [tcp(80, Reachability())],
    ),
    Case(
        "ingress to x/a from pod=b of its own namespace",
        [("x", "p", ingress_to_a({"podSelector": {"matchLabels": {"pod": "b"}}}))],
        [tcp(80, Reachability().expect("*", "x/a", False).expect("x/b", "x/a", True))],
    ),
    Case(
        "ingress to x/a from every pod of namespaces ns=y",
        [("x", "p", ingress_to_a({"namespaceSelector": {"matchLabels": {"ns": "y"}}}))],
        [tcp(80, Reachability().expect("*", "x/a", False).expect("y", "x/a", True))],
    ),
    Case(
        "namespaceSelector AND podSelector in one peer: only y/b",
        [
            (
                "x",
                "p",
                ingress_to_a(
                    {
                        "namespaceSelector": {"matchLabels": {"ns": "y"}},
                        "podSelector": {"matchLabels": {"pod": "b"}},
                    }
                ),
            )
        ],
        [tcp(80, Reachability().expect("*", "x/a", False).expect("y/b", "x/a", True))],
    ),
    Case(
        "namespaceSelector OR podSelector as two peers: all of y, and x/b",
        [
            (
                "x",
                "p",
                ingress_to_a(
                    {"namespaceSelector": {"matchLabels": {"ns": "y"}}},
                    {"podSelector": {"matchLabels": {"pod": "b"}}},
                ),
            )
        ],
        [
            tcp(
                80,
                Reachability()
                .expect("*", "x/a", False)
                .expect("y", "x/a", True)
                .expect("x/b", "x/a", True),
            )
        ],
    ),
    Case(
        "namespaceSelector matchExpressions NotIn: every namespace but x",
        [
            (
                "x",
                "p",
                ingress_to_a(
                    {
                        "namespaceSelector": {
                            "matchExpressions": [
                                {"key": "ns", "operator": "NotIn", "values": ["x"]}
                            ]
                        }
                    }
                ),
            )
        ],
        [tcp(80, Reachability().expect("x", "x/a", False))],
    ),
    Case(
        "podSelector Exists and DoesNotExist across all namespaces",
        [
            (
                "x",
                "p",
                ingress_to_a(
                    {
                        "namespaceSelector": {},
                        "podSelector": {
                            "matchExpressions": [
                                {"key": "role", "operator": "Exists"},
                                {"key": "banned", "operator": "DoesNotExist"},
                            ]
                        },
                    }
                ),
            )
        ],
        [
            tcp(
                80,
                Reachability()
                .expect("*", "x/a", False)
                .expect("y/b", "x/a", True)
                .expect("z/c", "x/a", True),
            )
        ],
        pod_labels={
            "y/b": {"pod": "b", "role": "client"},
            "z/c": {"pod": "c", "role": "client"},
            "z/b": {"pod": "b", "role": "client", "banned": "yes"},
        },
    ),
    Case(
        "namespaceSelector In with matchLabels together (team=a, ns in (y, z))",
        [
            (
                "x",
                "p",
                ingress_to_a(
                    {
                        "namespaceSelector": {
                            "matchLabels": {"team": "a"},
                            "matchExpressions": [
                                {"key": "ns", "operator": "In", "values": ["y", "z"]}
                            ],
                        }
                    }
                ),
            )
        ],
        [tcp(80, Reachability().expect("*", "x/a", False).expect("y", "x/a", True))],
    ),
    Case(
        "ingress to x/a on TCP 80 only",
        [("x", "p", ingress_to_a({"namespaceSelector": {}}, ports=[{"port": 80}]))],
        [
            tcp(80, Reachability()),
            tcp(81, Reachability().expect("*", "x/a", False)),
            Probe(80, "UDP", Reachability().expect("*", "x/a", False)),
        ],
    ),
    Case(
        "ingress named port resolved on each protected pod (http: 80 on a, 8080 on b)",
        [("x", "p", {"podSelector": {}, "ingress": [{"ports": [{"port": "http"}]}]})],
        [
            tcp(80, Reachability().expect("*", "x", False).expect("*", "x/a", True)),
            tcp(8080, Reachability().expect("*", "x", False).expect("*", "x/b", True)),
            tcp(81, Reachability().expect("*", "x", False)),
        ],
    ),
    Case(
        "egress named port resolved on each peer pod",
        [
            (
                "x",
                "p",
                {
                    "podSelector": A,
                    "policyTypes": ["Egress"],
                    "egress": [
                        {
                            "to": [{"namespaceSelector": {"matchLabels": {"ns": "y"}}}],
                            "ports": [{"port": "http"}],
                        }
                    ],
                },
            )
        ],
        [
            tcp(80, Reachability().expect("x/a", "*", False).expect("x/a", "y/a", True)),
            tcp(8080, Reachability().expect("x/a", "*", False).expect("x/a", "y/b", True)),
        ],
    ),
    Case(
        "egress named UDP port (dns) to every pod, with TCP denied",
        [
            (
                "x",
                "p",
                {
                    "podSelector": A,
                    "policyTypes": ["Egress"],
                    "egress": [{"ports": [{"port": "dns", "protocol": "UDP"}]}],
                },
            )
        ],
        [
            Probe(53, "UDP", Reachability()),
            tcp(53, Reachability().expect("x/a", "*", False)),
        ],
    ),
    Case(
        "endPort: TCP 80-82",
        [
            (
                "x",
                "p",
                ingress_to_a({"namespaceSelector": {}}, ports=[{"port": 80, "endPort": 82}]),
            )
        ],
        [
            tcp(80, Reachability()),
            tcp(82, Reachability()),
            tcp(83, Reachability().expect("*", "x/a", False)),
            tcp(79, Reachability().expect("*", "x/a", False)),
        ],
    ),
    Case(
        "UDP 53 only",
        [
            (
                "x",
                "p",
                ingress_to_a({"namespaceSelector": {}}, ports=[{"protocol": "UDP", "port": 53}]),
            )
        ],
        [
            Probe(53, "UDP", Reachability()),
            tcp(53, Reachability().expect("*", "x/a", False)),
        ],
    ),
    Case(
        "SCTP 9000 only; a protocol without a port allows all its ports",
        [
            (
                "x",
                "p",
                ingress_to_a(
                    {"namespaceSelector": {}},
                    ports=[{"protocol": "SCTP", "port": 9000}, {"protocol": "UDP"}],
                ),
            )
        ],
        [
            Probe(9000, "SCTP", Reachability()),
            Probe(9001, "SCTP", Reachability().expect("*", "x/a", False)),
            tcp(9000, Reachability().expect("*", "x/a", False)),
            Probe(12345, "UDP", Reachability()),
        ],
    ),
    Case(
        "egress to an ipBlock with except (y's addresses cut out)",
        [
            (
                "x",
                "p",
                {
                    "podSelector": A,
                    "policyTypes": ["Egress"],
                    "egress": [
                        {
                            "to": [
                                {"ipBlock": {"cidr": "198.18.0.0/16", "except": ["198.18.2.0/24"]}}
                            ]
                        }
                    ],
                },
            )
        ],
        [
            tcp(80, Reachability().expect("x/a", "y", False)),
            tcp(80, Reachability().expect("x/a", "*", False), version=6),
        ],
    ),
    Case(
        "ingress from an ipBlock with two excepts",
        [
            (
                "x",
                "p",
                ingress_to_a(
                    {
                        "ipBlock": {
                            "cidr": "198.18.0.0/16",
                            "except": ["198.18.2.0/24", "198.18.3.3/32"],
                        }
                    }
                ),
            )
        ],
        [tcp(80, Reachability().expect("y", "x/a", False).expect("z/c", "x/a", False))],
    ),
    Case(
        "two policies on one pod: the union of their rules",
        [
            ("x", "from-b", ingress_to_a({"podSelector": {"matchLabels": {"pod": "b"}}})),
            ("x", "from-y", ingress_to_a({"namespaceSelector": {"matchLabels": {"ns": "y"}}})),
        ],
        [
            tcp(
                80,
                Reachability()
                .expect("*", "x/a", False)
                .expect("x/b", "x/a", True)
                .expect("y", "x/a", True),
            )
        ],
    ),
    Case(
        "policyTypes Egress only: the ingress section is ignored",
        [
            (
                "x",
                "p",
                {
                    "podSelector": A,
                    "policyTypes": ["Egress"],
                    "ingress": [{"from": [{"podSelector": {"matchLabels": {"pod": "b"}}}]}],
                    "egress": [{"to": [{"podSelector": {}}]}],
                },
            )
        ],
        [tcp(80, Reachability().expect("x/a", "*", False).expect("x/a", "x", True))],
    ),
    Case(
        "egress rules without policyTypes: defaulted to Ingress and Egress",
        [("x", "p", {"podSelector": A, "egress": [{"to": [{"podSelector": {}}]}]})],
        [
            tcp(
                80,
                Reachability()
                .expect("*", "x/a", False)
                .expect("x/a", "*", False)
                .expect("x/a", "x", True),
            )
        ],
    ),
    Case(
        "IPv6: namespaceSelector and podSelector together, over IPv6 addresses",
        [
            (
                "x",
                "p",
                ingress_to_a(
                    {
                        "namespaceSelector": {"matchLabels": {"ns": "y"}},
                        "podSelector": {"matchLabels": {"pod": "b"}},
                    },
                    ports=[{"port": 443}],
                ),
            )
        ],
        [
            tcp(443, Reachability().expect("*", "x/a", False).expect("y/b", "x/a", True), 6),
            tcp(444, Reachability().expect("*", "x/a", False), 6),
        ],
    ),
    Case(
        "IPv6 ipBlock with except for egress",
        [
            (
                "x",
                "p",
                {
                    "podSelector": A,
                    "policyTypes": ["Egress"],
                    "egress": [
                        {
                            "to": [
                                {
                                    "ipBlock": {
                                        "cidr": "2001:db8::/32",
                                        "except": ["2001:db8:3::/48"],
                                    }
                                }
                            ]
                        }
                    ],
                },
            )
        ],
        [
            tcp(80, Reachability().expect("x/a", "z", False), version=6),
            tcp(80, Reachability().expect("x/a", "*", False), version=4),
        ],
    ),
    Case(
        "a named port no pod defines matches nothing",
        [("x", "p", ingress_to_a({"namespaceSelector": {}}, ports=[{"port": "nope"}]))],
        [tcp(80, Reachability().expect("*", "x/a", False))],
    ),
    Case(
        "egress to any destination on TCP 80 only",
        [
            (
                "x",
                "p",
                {
                    "podSelector": {},
                    "policyTypes": ["Egress"],
                    "egress": [{"ports": [{"port": 80}]}],
                },
            )
        ],
        [tcp(80, Reachability()), tcp(81, Reachability().expect("x", "*", False))],
    ),
    Case(
        "namespace selected by its kubernetes.io/metadata.name label",
        [
            (
                "x",
                "p",
                ingress_to_a(
                    {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "z"}}}
                ),
            )
        ],
        [tcp(80, Reachability().expect("*", "x/a", False).expect("z", "x/a", True))],
    ),
    Case(
        "both ends isolated: egress of x/a and ingress of y/b must both allow",
        [
            (
                "x",
                "out",
                {
                    "podSelector": A,
                    "policyTypes": ["Egress"],
                    "egress": [{"to": [{"namespaceSelector": {}}], "ports": [{"port": 80}]}],
                },
            ),
            ("y", "deny", DENY_INGRESS),
            (
                "y",
                "in",
                {
                    "podSelector": {"matchLabels": {"pod": "b"}},
                    "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {"ns": "x"}}}]}],
                },
            ),
        ],
        [
            tcp(
                80,
                Reachability()
                .expect("*", "y", False)
                .expect("x", "y/b", True)
                .expect("x/a", "*", False)
                .expect("x/a", "x", True)
                .expect("x/a", "z", True)
                .expect("x/a", "y/b", True),
            ),
            tcp(
                81,
                Reachability()
                .expect("*", "y", False)
                .expect("x/b", "y/b", True)
                .expect("x/c", "y/b", True)
                .expect("x/a", "*", False),
            ),
        ],
    ),
]


def _protocol(name: str) -> str:
    return name.lower()


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_case(case: Case) -> None:
    compiled = compile_lab(
        [policy(ns, name, spec) for ns, name, spec in case.policies],
        case.pod_labels,
        case.namespace_labels,
    )
    rendered = ruleset(compiled)
    for probe in case.probes:
        expected = probe.expect.table()
        by_evaluator, by_rules = {}, {}
        for source in ALL_PODS:
            for destination in ALL_PODS:
                src, dst = address(source, probe.version), address(destination, probe.version)
                by_evaluator[source, destination] = allowed(
                    compiled, src, dst, probe.port, probe.protocol
                )
                packet = Packet(
                    src,
                    dst,
                    _protocol(probe.protocol),
                    probe.port,
                    "veth" + source.replace("/", ""),
                    "veth" + destination.replace("/", ""),
                )
                by_rules[source, destination] = forward(rendered, packet)
        where = f"{probe.port}/{probe.protocol} IPv{probe.version}"
        assert differences(expected, by_evaluator) == [], f"evaluator, {where}"
        assert differences(expected, by_rules) == [], f"rendered rules, {where}"
