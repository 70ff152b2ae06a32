"""The policy benchmark's synthetic cluster is what it claims: every policy parses, the
relabelled pod changes the table, and a small run prints its figures."""

from __future__ import annotations

import random
import sys

import pytest

from bench import policy_compile
from hybridnet.policy.compiler import compile_node
from hybridnet.policy.model import parse_policy
from hybridnet.policy.render import ruleset, update_commands


def test_every_generated_policy_parses_without_problems() -> None:
    specs = policy_compile.policy_specs(50, random.Random(1))
    assert all(not parse_policy(ns, name, spec).problems for ns, name, spec in specs)


def test_the_relabelled_pod_changes_the_table() -> None:
    pods, namespaces = policy_compile.cluster(200, 20)
    policies = policy_compile.parse_all(policy_compile.policy_specs(100, random.Random(2)))
    before = ruleset(compile_node(policies, pods, namespaces, policy_compile.NODE))
    moved = policy_compile.relabelled(pods)
    after = ruleset(compile_node(policies, moved, namespaces, policy_compile.NODE))
    commands = update_commands(before, after)
    assert commands and all(" element " in c for c in commands)


def test_a_small_run_prints_both_policy_sets(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["policy_compile", "--policies", "20", "--pods", "60", "--local-pods", "10",
            "--rounds", "2"]  # fmt: skip
    monkeypatch.setattr(sys, "argv", argv)
    assert policy_compile.main() == 0
    out = capsys.readouterr().out
    assert "none policies: 3 rules" in out and "20 policies:" in out
    assert "compile (20)" in out and "relabel update (none)" in out
