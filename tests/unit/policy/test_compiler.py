"""Compiler behaviour beyond the truth table: what it reports, and what it shares."""

from __future__ import annotations

import dataclasses

from hybridnet.policy.compiler import compile_node
from hybridnet.policy.model import Policy
from hybridnet.policy.render import ruleset
from tests.unit.policy.cluster import NODE_V4, compile_lab, namespaces, pods, policy


def _from_pods(namespace: str, name: str, app: str) -> Policy:
    return policy(namespace, name, {
        "podSelector": {},
        "ingress": [{"from": [{"podSelector": {"matchLabels": {"pod": app}}}]}],
    })  # fmt: skip


def test_an_egress_named_port_no_peer_has_is_reported_and_matches_nothing() -> None:
    compiled = compile_lab([policy("x", "p", {
        "podSelector": {"matchLabels": {"pod": "a"}}, "policyTypes": ["Egress"],
        "egress": [{"to": [{"podSelector": {"matchLabels": {"pod": "c"}}}],
                    "ports": [{"port": 443}, {"port": "http"}]}],
    })])  # fmt: skip
    (problem,) = compiled.problems
    assert (problem.policy, problem.code) == ("x/p", "NamedPortUnresolved")
    assert problem.message == (
        "spec.egress[0].ports[1]: no peer pod of this rule has a TCP port named 'http': "
        "it matches nothing"
    )
    (rule,) = compiled.rules
    assert rule.named_ports and rule.peer_ports == ()


def test_an_ingress_named_port_one_selected_pod_has_is_not_a_problem() -> None:
    compiled = compile_lab([policy("x", "p", {
        "podSelector": {}, "ingress": [{"ports": [{"port": "http"}]}],
    })])  # fmt: skip
    assert compiled.problems == ()
    by_pod = {p.key: p.ingress.allows[0].ports for p in compiled.pods if p.namespace == "x"}
    assert [str(r.describe()) for r in by_pod["x/a"] or ()] == ["80/TCP"]
    assert [str(r.describe()) for r in by_pod["x/b"] or ()] == ["8080/TCP"]
    assert by_pod["x/c"] == ()  # c defines no http: this rule allows it nothing


def test_the_same_peers_in_two_policies_are_one_set_per_family() -> None:
    compiled = compile_lab([_from_pods("x", "one", "b"), _from_pods("x", "two", "b"),
                            _from_pods("y", "three", "b")])  # fmt: skip
    keys = {r.ref.policy: r.peer_key for r in compiled.rules}
    assert keys["x/one"] == keys["x/two"] != keys["y/three"]  # y's pods differ from x's
    peer_sets = [s.name for s in ruleset(compiled).sets if s.name.startswith("peers-")]
    assert len(peer_sets) == 4


def test_a_second_pod_on_one_interface_is_left_out_and_reported() -> None:
    everyone = pods()
    clash = dataclasses.replace(everyone[1], host_interface=everyone[0].host_interface)
    compiled = compile_node([], [everyone[0], clash], namespaces(), [NODE_V4])
    assert [p.key for p in compiled.pods] == ["x/a"]
    (problem,) = compiled.problems
    assert problem.code == "DuplicateInterface" and problem.policy == "x/b"
