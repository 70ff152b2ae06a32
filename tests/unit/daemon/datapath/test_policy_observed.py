"""The policy table read back from nft's JSON listing (as nft 1.0.6 printed it for a table the
renderer wrote): sets, maps and counters exactly, rules through what the applier learnt or
through policy_rules, and what differs said per object. Also: a reconcile whose view has no
policy inputs leaves the kernel's table alone."""

from __future__ import annotations

from typing import Any

import pytest

from hybridnet.daemon.datapath import observe
from hybridnet.daemon.datapath.config import NodeConfig
from hybridnet.daemon.datapath.model import Kind
from hybridnet.daemon.datapath.policy_rules import base_rules, canonical, rule_text
from hybridnet.daemon.datapath.policy_table import (
    UNKNOWN_RULES,
    KernelForms,
    PolicyTable,
    about_interface,
    differences,
    observed,
)
from hybridnet.daemon.datapath.reconcile import Reconciler
from hybridnet.daemon.datapath.view import HostFacts, NodeView
from hybridnet.policy.model import Direction
from hybridnet.policy.render import DropCounter, NftChain, NftSet, Ruleset

TABLE = "hybridnet-policy"
BASE = {"family": "inet", "table": TABLE}


def rule(chain: str, *expr: dict[str, Any], comment: str | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {**BASE, "chain": chain, "handle": 9, "expr": list(expr)}
    if comment is not None:
        body["comment"] = comment
    return {"rule": body}


def match(left: dict[str, Any], right: Any, op: str = "==") -> dict[str, Any]:
    return {"match": {"op": op, "left": left, "right": right}}


SADDR = {"payload": {"protocol": "ip", "field": "saddr"}}
PORTS = {
    "concat": [{"meta": {"key": "l4proto"}}, {"payload": {"protocol": "th", "field": "dport"}}]
}
POD_CHAIN = "ingress-hyb1"
LISTING: list[dict[str, Any]] = [
    {"table": {"family": "inet", "name": TABLE, "handle": 3}},
    {"counter": {**BASE, "name": "drop-ingress-hyb1", "handle": 3, "packets": 7, "bytes": 420}},
    {"set": {**BASE, "name": "peers-i1-v4", "type": "ipv4_addr", "handle": 4, "comment": "x/p",
             "flags": ["interval"], "elem": ["198.18.0.5", {"prefix": {"addr": "198.19.0.0",
                                                                      "len": 24}}]}},
    {"set": {**BASE, "name": "named-e1-v4", "type": ["ipv4_addr", "inet_proto", "inet_service"],
             "handle": 5, "elem": [{"concat": ["198.19.0.5", "tcp", 80]}]}},
    {"map": {**BASE, "name": "ingress-pods", "type": "ifname", "map": "verdict", "handle": 6,
             "elem": [["hyb1", {"jump": {"target": POD_CHAIN}}]]}},
    {"map": {**BASE, "name": "egress-pods", "type": "ifname", "map": "verdict", "handle": 7}},
    {"chain": {**BASE, "name": POD_CHAIN, "handle": 1}},
    {"chain": {**BASE, "name": "forward", "handle": 2, "type": "filter", "hook": "forward",
               "prio": 0, "policy": "accept"}},
    rule(POD_CHAIN, match({"ct": {"key": "state"}}, "invalid", "in"),
         {"counter": "drop-ingress-hyb1"}, {"drop": None}),
    rule(POD_CHAIN, match(SADDR, "@peers-i1-v4"),
         match(PORTS, {"set": [{"concat": ["udp", {"range": [81, 82]}]}, {"concat": ["tcp", 80]}]}),
         {"return": None}, comment="x/p ingress[0]"),
    rule(POD_CHAIN, {"counter": "drop-ingress-hyb1"}, {"drop": None}),
    rule("forward", match({"ct": {"key": "state"}}, ["established", "related"], "in"),
         {"accept": None}),
    rule("forward", {"vmap": {"key": {"meta": {"key": "iifname"}}, "data": "@egress-pods"}}),
    rule("forward", {"vmap": {"key": {"meta": {"key": "oifname"}}, "data": "@ingress-pods"}}),
]  # fmt: skip
POD_RULES = (
    'ct state invalid counter name "drop-ingress-hyb1" drop',
    "ip saddr @peers-i1-v4 meta l4proto . th dport { tcp . 80, udp . 81-82 } return "
    'comment "x/p ingress[0]"',
    'counter name "drop-ingress-hyb1" drop',
)


def written() -> Ruleset:
    """What the renderer would have written for LISTING."""
    return Ruleset(
        table=TABLE,
        sets=(
            NftSet("named-e1-v4", "ipv4_addr . inet_proto . inet_service", (),
                   frozenset({"198.19.0.5 . tcp . 80"})),
            NftSet("peers-i1-v4", "ipv4_addr", ("interval",),
                   frozenset({"198.18.0.5", "198.19.0.0/24"}), "x/p"),
        ),
        maps={Direction.INGRESS: frozenset({("hyb1", POD_CHAIN)}), Direction.EGRESS: frozenset()},
        chains=(NftChain(POD_CHAIN, POD_RULES),),
        counters=(DropCounter("drop-ingress-hyb1", "x", "p", Direction.INGRESS),),
    )  # fmt: skip


def test_a_listing_reads_back_equal_to_what_was_written_without_having_written_it() -> None:
    found = observed(TABLE, LISTING, KernelForms())
    assert found == PolicyTable(written())
    assert found.base_intact
    assert found.drops == {"drop-ingress-hyb1": (7, 420)}


def test_rules_read_back_as_canonical_text() -> None:
    (_, ports_rule) = [r["rule"] for r in LISTING if r.get("rule", {}).get("chain") == POD_CHAIN][
        :2
    ]
    assert rule_text(ports_rule) == canonical(POD_RULES[1])
    assert "{ tcp . 80, udp . 81-82 }" in canonical(POD_RULES[1])
    assert base_rules() == (
        "ct state established,related accept",
        "iifname vmap @egress-pods",
        "oifname vmap @ingress-pods",
    )


def test_a_rule_form_the_renderer_never_writes_makes_its_chain_unknown() -> None:
    listing = [*LISTING, rule(POD_CHAIN, {"masquerade": None})]
    found = observed(TABLE, listing, KernelForms())
    (chain,) = found.ruleset.chains
    assert chain.rules == UNKNOWN_RULES
    assert found != PolicyTable(written())
    assert differences(found.ruleset, written()) == [f"chain {POD_CHAIN}: rules differ"]


def test_what_the_applier_learnt_is_read_back_as_the_text_it_wrote() -> None:
    forms = KernelForms()
    listed = [item for item in LISTING if "rule" in item]
    forms.learn([NftChain(POD_CHAIN, POD_RULES)], listed, full=True)
    listing = [*LISTING, rule(POD_CHAIN, {"masquerade": None})]  # not what was learnt
    assert observed(TABLE, LISTING, forms).ruleset.chains == (NftChain(POD_CHAIN, POD_RULES),)
    assert observed(TABLE, listing, forms).ruleset.chains[0].rules == UNKNOWN_RULES
    forms.keep_only([])
    assert observed(TABLE, LISTING, forms).ruleset.chains == (NftChain(POD_CHAIN, POD_RULES),)


def test_a_damaged_base_chain_is_not_intact() -> None:
    listing = [item for item in LISTING if item.get("rule", {}).get("chain") != "forward"]
    found = observed(TABLE, listing, KernelForms())
    assert not found.base_intact
    assert found != PolicyTable(written())
    assert "chain forward is not what the daemon wrote" in PolicyTable(written()).changes_from(
        found
    )  # type: ignore[operator]


def test_differences_name_each_object_and_those_of_one_pod() -> None:
    kernel = observed(TABLE, LISTING, KernelForms()).ruleset
    wanted = written()
    more = NftSet("peers-i1-v4", "ipv4_addr", ("interval",),
                  frozenset({"198.18.0.5", "198.19.0.0/24", "198.19.1.7"}), "x/p")  # fmt: skip
    other = NftChain("ingress-hyb2", ('counter name "drop-ingress-hyb2" drop',))
    wanted = Ruleset(
        TABLE,
        (wanted.sets[0], more),
        {Direction.INGRESS: frozenset({("hyb1", POD_CHAIN), ("hyb2", "ingress-hyb2")}),
         Direction.EGRESS: frozenset()},
        (wanted.chains[0], other),
        (*wanted.counters, DropCounter("drop-ingress-hyb2", "x", "q", Direction.INGRESS)),
    )  # fmt: skip
    assert differences(kernel, wanted) == [
        "set peers-i1-v4: 1 elements missing, 0 extra",
        "chain ingress-hyb2 missing",
        "map ingress-pods: hyb2 -> ingress-hyb2 missing",
        "counter drop-ingress-hyb2 missing",
    ]
    assert about_interface(kernel, wanted, "hyb1") == [
        "set peers-i1-v4: 1 elements missing, 0 extra"
    ]
    assert about_interface(kernel, wanted, "hyb2") == [
        "chain ingress-hyb2 missing",
        "map ingress-pods: hyb2 -> ingress-hyb2 missing",
        "counter drop-ingress-hyb2 missing",
    ]


def test_a_view_without_policy_inputs_leaves_the_kernel_s_table_alone(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Until the policy informers have listed, deleting the table (or rebuilding it from a
    partial picture) would open or cut traffic; the plan must not touch it."""
    held = observed(TABLE, LISTING, KernelForms())
    snapshot = observe.Snapshot(HostFacts(), (held,))
    monkeypatch.setattr(observe, "snapshot", lambda config, forms=None: snapshot)
    monkeypatch.setattr(observe, "sysctls", lambda wanted: ())
    _, drift = Reconciler(NodeConfig()).diff(NodeView(node_name="n1"))
    assert not [op for op in drift.operations if op.target.kind is Kind.NETWORK_POLICY]
