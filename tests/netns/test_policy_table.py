"""The NetworkPolicy table through the reconciler's own verbs against a real nftables, in a
throwaway namespace: written, observed (also by a daemon that did not write it: a restart),
drift found and mended, a change written in place (counters kept), and a write nft refuses
leaving the old table whole.

The nine pods of the upstream suite's shape come from tests/unit/policy/cluster.py, all on
this node (their host interfaces need not exist: nft matches names).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from typing import TypeVar

import pytest

from hybridnet import lab as testbed
from hybridnet.daemon.datapath import policy_apply
from hybridnet.daemon.datapath.plan import Action, plan
from hybridnet.daemon.datapath.policy_table import FAMILY, KernelForms, PolicyTable, observed
from hybridnet.netlink import nftables, ns
from hybridnet.policy import render
from hybridnet.policy.compiler import compile_node
from hybridnet.policy.model import Direction, Policy, parse_policy
from hybridnet.policy.render import NftChain
from tests.unit.policy import cluster as shape

pytestmark = pytest.mark.root

T = TypeVar("T")
TABLE = "hybridnet-policy"


@pytest.fixture
def node(testbed_run: testbed.TestbedRun) -> Iterator[testbed.Namespace]:
    namespace = testbed.create_namespace(testbed_run.unique("policy-table"))
    try:
        yield namespace
    finally:
        namespace.delete()


def inside(node: testbed.Namespace, work: Callable[[], T]) -> T:
    return ns.run_inside(node.path, work)


def parsed(namespace: str, name: str, spec: dict[str, object]) -> Policy:
    return parse_policy(namespace, name, spec).policy


POLICIES = [
    parsed("x", "deny", {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}),
    parsed("x", "web", {
        "podSelector": {"matchLabels": {"pod": "a"}},
        "ingress": [{"from": [{"namespaceSelector": {},
                               "podSelector": {"matchLabels": {"pod": "b"}}}],
                     "ports": [{"port": 80}, {"protocol": "UDP", "port": 53, "endPort": 60}]}],
        "egress": [{"to": [{"ipBlock": {"cidr": "198.19.0.0/16", "except": ["198.19.7.0/24"]}}]},
                   {"ports": [{"port": "http"}]}],
    }),
    parsed("y", "named", {"podSelector": {},
                          "ingress": [{"ports": [{"port": "dns", "protocol": "UDP"}]}]}),
]  # fmt: skip


def table(labels: dict[str, dict[str, str]] | None = None) -> PolicyTable:
    compilation = compile_node(
        POLICIES, shape.pods(labels), shape.namespaces(), [shape.NODE_V4, shape.NODE_V6]
    )
    return PolicyTable(render.ruleset(compilation, TABLE))


def kernel(forms: KernelForms) -> PolicyTable | None:
    listing = nftables.list_table(FAMILY, TABLE)
    return None if listing is None else observed(TABLE, listing, forms)


def drift(desired: PolicyTable, forms: KernelForms) -> list[tuple[Action, PolicyTable | None]]:
    found = kernel(forms)
    operations = plan([desired], [found] if found is not None else []).operations
    return [(op.action, op.current if isinstance(op.current, PolicyTable) else None)
            for op in operations]  # fmt: skip


def test_a_written_table_reads_back_equal_also_to_a_daemon_that_did_not_write_it(
    node: testbed.Namespace,
) -> None:
    desired = table()
    assert desired.ruleset.chains, "the policies isolate pods"

    def work() -> tuple[object, object, object]:
        forms = KernelForms()
        before = drift(desired, forms)
        policy_apply.write(desired, None, forms)
        return before, drift(desired, forms), drift(desired, KernelForms())

    before, after, restarted = inside(node, work)
    assert before == [(Action.CREATE, None)]
    assert after == []
    assert restarted == []  # read back through policy_rules: nothing to rewrite


def test_drift_in_chains_sets_maps_and_the_base_chain_is_found_and_mended(
    node: testbed.Namespace,
) -> None:
    desired = table()
    chain = desired.ruleset.chains[0].name
    peer_set = next(s for s in desired.ruleset.sets if s.name.startswith("peers-") and s.elements)
    element = sorted(peer_set.elements)[0]
    interface, _ = sorted(desired.ruleset.maps[Direction.INGRESS])[0]

    def damage(forms: KernelForms, commands: list[str]) -> list[str]:
        for command in commands:
            nftables.script(command + "\n", "damage")
        (operation,) = plan([desired], [kernel(forms)]).operations  # type: ignore[list-item]
        assert operation.action is Action.UPDATE
        summary = operation.changes()
        policy_apply.write(desired, kernel(forms), forms)
        assert drift(desired, forms) == []
        return [summary]

    def work() -> list[str]:
        forms = KernelForms()
        policy_apply.write(desired, None, forms)
        where = f"{FAMILY} {TABLE}"
        found = damage(forms, [f"flush chain {where} {chain}"])
        found += damage(forms, [f"delete element {where} {peer_set.name} {{ {element} }}"])
        found += damage(forms, [f'delete element {where} ingress-pods {{ "{interface}" }}'])
        found += damage(forms, [f"flush chain {where} {render.BASE_CHAIN}"])
        return found

    flushed, element_gone, map_gone, base_gone = inside(node, work)
    assert f"chain {chain}: rules differ" in flushed
    assert f"set {peer_set.name}: 1 elements missing" in element_gone
    assert f"{interface} -> " in map_gone and "missing" in map_gone
    assert f"chain {render.BASE_CHAIN} is not what the daemon wrote" in base_gone


def test_a_label_change_is_written_in_place(node: testbed.Namespace) -> None:
    """y/c relabelled pod=b joins x/web's peers: element changes in the same table (a whole
    replace would delete the table and create it again, with a new handle and every counter
    back at zero)."""
    old, new = table(), table({"y/c": {"pod": "b"}})
    assert new != old

    def work() -> tuple[int, int, PolicyTable | None]:
        forms = KernelForms()
        policy_apply.write(old, None, forms)
        before = _table_handle()
        policy_apply.write(new, kernel(forms), forms)
        return before, _table_handle(), kernel(forms)

    before, after, found = inside(node, work)
    assert found == new
    assert after == before


def _table_handle() -> int:
    listing = nftables.list_table(FAMILY, TABLE) or []
    (handle,) = [item["table"]["handle"] for item in listing if "table" in item]
    return int(handle)


def test_a_write_nft_refuses_leaves_the_old_table_whole(node: testbed.Namespace) -> None:
    good = table()
    first = good.ruleset.chains[0]
    broken_chain = NftChain(first.name, (*first.rules[:-1], "ip saddr @no-such-set return",
                                         first.rules[-1]))  # fmt: skip
    broken = PolicyTable(
        dataclasses.replace(good.ruleset, chains=(broken_chain, *good.ruleset.chains[1:]))
    )

    def work() -> tuple[object, object, str]:
        forms = KernelForms()
        policy_apply.write(good, None, forms)
        listed = nftables.list_table(FAMILY, TABLE)
        with pytest.raises(nftables.NftError) as refused:
            policy_apply.write(broken, kernel(forms), forms)  # in place, then whole: both refused
        return listed, nftables.list_table(FAMILY, TABLE), str(refused.value)

    before, after, message = inside(node, work)
    assert after == before
    assert "no-such-set" in message
