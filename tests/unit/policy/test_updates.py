"""Changes between compilations: a pod relabelled into and out of a selector, a namespace
relabelled, pods and policies coming and going. Each is judged by the evaluator and by what
the update writes (element changes where the structure stays, chains where it does not)."""

from __future__ import annotations

import dataclasses
import ipaddress
import random

from hybridnet.policy.compiler import compile_node
from hybridnet.policy.evaluate import allowed, explain
from hybridnet.policy.render import drop_counts, ruleset, update_commands
from tests.unit.policy.cluster import (
    NODE_V4,
    address,
    compile_lab,
    namespaces,
    pods,
    policy,
)

FROM_B = policy(
    "x",
    "from-b",
    {
        "podSelector": {"matchLabels": {"pod": "a"}},
        "ingress": [{"from": [{"podSelector": {"matchLabels": {"pod": "b"}}}]}],
    },
)
FROM_TEAM_A = policy(
    "x",
    "from-team-a",
    {
        "podSelector": {"matchLabels": {"pod": "a"}},
        "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {"team": "a"}}}]}],
    },
)


def _verbs(commands: list[str]) -> set[str]:
    return {" ".join(c.split()[:2]) for c in commands}


def test_a_pod_relabelled_into_a_selector_is_one_element_added() -> None:
    before = compile_lab([FROM_B])
    after = compile_lab([FROM_B], pod_labels={"x/c": {"pod": "b"}})
    assert not allowed(before, address("x/c"), address("x/a"), 80)
    assert allowed(after, address("x/c"), address("x/a"), 80)
    commands = update_commands(ruleset(before), ruleset(after))
    assert _verbs(commands) == {"add element"}
    assert sorted(c.split(" { ")[1] for c in commands) == ["198.18.1.3 }", "2001:db8:1::3 }"]


def test_a_pod_relabelled_out_of_a_selector_is_one_element_deleted() -> None:
    before = compile_lab([FROM_B])
    after = compile_lab([FROM_B], pod_labels={"x/b": {"pod": "gone"}})
    assert allowed(before, address("x/b"), address("x/a"), 80)
    assert not allowed(after, address("x/b"), address("x/a"), 80)
    assert _verbs(update_commands(ruleset(before), ruleset(after))) == {"delete element"}


def test_the_protected_pod_relabelled_out_loses_its_chain_and_map_entry() -> None:
    before = compile_lab([FROM_B])
    after = compile_lab([FROM_B], pod_labels={"x/a": {"pod": "free"}})
    assert not allowed(before, address("y/c"), address("x/a"), 80)
    assert allowed(after, address("y/c"), address("x/a"), 80)
    commands = update_commands(ruleset(before), ruleset(after))
    assert commands[0].startswith("delete element inet hybridnet-policy ingress-pods")
    assert "delete chain inet hybridnet-policy ingress-vethxa" in commands
    assert "delete counter inet hybridnet-policy drop-ingress-vethxa" in commands


def test_a_namespace_relabelled_out_of_a_selector_removes_its_pods() -> None:
    before = compile_lab([FROM_TEAM_A])
    after = compile_lab([FROM_TEAM_A], namespace_labels={"y": {"ns": "y"}})
    assert allowed(before, address("y/b"), address("x/a"), 80)
    assert not allowed(after, address("y/b"), address("x/a"), 80)
    commands = update_commands(ruleset(before), ruleset(after))
    assert _verbs(commands) == {"delete element"}
    assert len(commands) == 2  # one per family, three addresses each


def test_a_new_policy_adds_chains_and_map_entries_and_removing_it_undoes_them() -> None:
    empty, isolated = compile_lab([]), compile_lab([FROM_B])
    adding = update_commands(ruleset(empty), ruleset(isolated))
    assert "add chain inet hybridnet-policy ingress-vethxa" in adding
    assert any(c.startswith("add element inet hybridnet-policy ingress-pods") for c in adding)
    removing = update_commands(ruleset(isolated), ruleset(empty))
    assert "delete chain inet hybridnet-policy ingress-vethxa" in removing
    assert not update_commands(ruleset(isolated), ruleset(isolated))


def test_a_policy_port_change_refills_only_the_chains_of_its_pods() -> None:
    spec = {
        "podSelector": {"matchLabels": {"pod": "a"}},
        "ingress": [{"ports": [{"port": 80}]}],
    }
    before = compile_lab([policy("x", "p", spec), FROM_TEAM_A])
    spec["ingress"] = [{"ports": [{"port": 81}]}]
    after = compile_lab([policy("x", "p", spec), FROM_TEAM_A])
    commands = update_commands(ruleset(before), ruleset(after))
    assert [c for c in commands if c.startswith("flush")] == [
        "flush chain inet hybridnet-policy ingress-vethxa"
    ]
    assert _verbs(commands) == {"flush chain", "add rule"}


def test_a_node_address_change_is_an_element_change() -> None:
    policies = [FROM_B]
    before = compile_node(policies, pods(), namespaces(), [NODE_V4])
    moved = ipaddress.ip_address("198.18.0.11")
    after = compile_node(policies, pods(), namespaces(), [moved])
    commands = update_commands(ruleset(before), ruleset(after))
    assert commands == [
        "delete element inet hybridnet-policy node-v4 { 198.18.0.10 }",
        "add element inet hybridnet-policy node-v4 { 198.18.0.11 }",
    ]
    assert explain(after, moved, address("x/a"), 80).ingress.reason == "its own node"  # type: ignore[union-attr]


def test_compilation_is_the_same_whatever_the_input_order() -> None:
    policies = [FROM_B, FROM_TEAM_A]
    every_pod = pods()
    reference = compile_node(policies, every_pod, namespaces(), [NODE_V4])
    shuffler = random.Random(7)
    for _ in range(5):
        shuffled_pods, shuffled_policies = list(every_pod), list(policies)
        shuffler.shuffle(shuffled_pods)
        shuffler.shuffle(shuffled_policies)
        again = compile_node(shuffled_policies, shuffled_pods, namespaces(), [NODE_V4])
        assert again == reference
        assert ruleset(again) == ruleset(reference)


def test_pods_of_other_nodes_are_peers_but_get_no_rules() -> None:
    remote = [dataclasses.replace(p, host_interface=None) for p in pods() if p.namespace != "x"]
    local = [p for p in pods() if p.namespace == "x"]
    compiled = compile_node([FROM_TEAM_A], [*remote, *local], namespaces(), [NODE_V4])
    assert {p.key for p in compiled.pods} == {"x/a", "x/b", "x/c"}
    verdict = explain(compiled, address("y/a"), address("x/a"), 80)
    assert verdict.egress is None  # y/a is judged on its own node
    assert verdict.ingress is not None and verdict.ingress.allowed


def test_each_isolated_pod_chain_has_a_drop_counter_named_for_metrics() -> None:
    rendered = ruleset(compile_lab([FROM_B]))
    assert [(c.name, c.namespace, c.pod, c.direction.value) for c in rendered.counters] == [
        ("drop-ingress-vethxa", "x", "a", "Ingress")
    ]
    # the shape of ``nft -j list counters table inet hybridnet-policy`` (nft 1.0.6)
    listing = [
        {"metainfo": {"version": "1.0.6", "json_schema_version": 1}},
        {"counter": {"family": "inet", "name": "drop-ingress-vethxa", "table": "hybridnet-policy",
                     "handle": 3, "packets": 7, "bytes": 420}},
    ]  # fmt: skip
    assert drop_counts(listing) == {"drop-ingress-vethxa": (7, 420)}
