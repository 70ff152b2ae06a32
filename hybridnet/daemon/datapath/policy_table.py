"""The NetworkPolicy table as one kernel object of the reconciler: desired from the view,
observed from nft's listing, told apart by what the kernel can show.

Desired: the view's pods, namespaces and policies (hybridnet.daemon.datapath.policy_endpoints)
compiled for this node's pods and rendered (hybridnet.policy.compiler, .render) into a
:class:`~hybridnet.policy.render.Ruleset`. A policy that cannot be enforced as written (a
named port nobody defines, an unreadable rule) is enforced as upstream specifies and comes
back as a :class:`PolicyProblem`; one whose pod selector cannot be read isolates nothing and
is reported the same way. Pure, apart from the time the compile took (a metric).

Observed: the table's sets, maps and counters read back exactly; rules are another matter,
since nft lists a rule in its own normalised JSON, not in the text the renderer wrote. The
applier teaches :class:`KernelForms` how each chain it wrote is listed (a listing right after
the write); observe turns a listed chain back into the renderer's text through it, a chain
written before a restart through hybridnet.daemon.datapath.policy_rules (nft's JSON read back
as text), and one it cannot read into :data:`UNKNOWN_RULES`, which differs from every desired
chain: the plan refills it. Chains compare as canonical text (anonymous sets' elements
ordered).
"""

from __future__ import annotations

import dataclasses
import json
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, ClassVar

from hybridnet.daemon.datapath.model import KernelObject, Kind
from hybridnet.daemon.datapath.policy_endpoints import PolicyPeers, build
from hybridnet.daemon.datapath.policy_rules import base_rules, canonical_rules, rule_text
from hybridnet.daemon.datapath.view import HostFacts, PolicyView
from hybridnet.policy import render
from hybridnet.policy.compiler import compile_node
from hybridnet.policy.endpoints import parsed_policy
from hybridnet.policy.errors import InvalidPolicy
from hybridnet.policy.model import Direction, Policy
from hybridnet.policy.render import DropCounter, NftChain, NftSet, Ruleset

FAMILY = render.FAMILY
UNKNOWN_RULES = ("# rules the daemon did not write",)
"""Stands for a listed chain whose form the daemon has not learnt: never a rendered rule."""
DIRECTION_OF_MAP = {name: direction for direction, name in render.MAPS.items()}


@dataclasses.dataclass(frozen=True, slots=True)
class PolicyProblem:
    """A NetworkPolicy that cannot be enforced as written (or a pod that cannot be isolated);
    ``code`` is stable (an Event's reason)."""

    namespace: str
    name: str
    code: str
    message: str
    about: str = "NetworkPolicy"
    """The kind of object it is about: ``NetworkPolicy`` or ``Pod``."""


@dataclasses.dataclass(frozen=True, slots=True, eq=False)
class PolicyTable(KernelObject):
    """The policy table; two compare equal when the kernel could not tell them apart (the
    pod names behind counters and the counters' values are not the kernel's to compare)."""

    kind: ClassVar[Kind] = Kind.NETWORK_POLICY

    ruleset: Ruleset
    base_intact: bool = True
    """Whether the base chain (fixed by the renderer, outside the ruleset's pod chains) holds
    what the daemon last wrote; when not, only a full replace mends it."""
    drops: Mapping[str, tuple[int, int]] = dataclasses.field(default_factory=dict)
    """Observed only: counter name -> (packets, bytes)."""

    @property
    def name(self) -> str:
        return self.ruleset.table

    @property
    def key(self) -> tuple[Kind, str, str]:
        return (Kind.NETWORK_POLICY, FAMILY, self.name)

    @property
    def shape(self) -> tuple[Any, ...]:
        r = self.ruleset
        maps = tuple(sorted((str(d), *entry) for d, m in r.maps.items() for entry in m))
        counters = tuple(c.name for c in r.counters)
        chains = tuple((c.name, canonical_rules(c.rules)) for c in r.chains)
        return (r.table, r.sets, maps, chains, counters, self.base_intact)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, PolicyTable) and self.shape == other.shape

    def __hash__(self) -> int:
        return hash(self.shape)

    def updatable_to(self, other: KernelObject) -> bool:
        return True  # one nft transaction, the minimal difference

    def describe(self) -> str:
        r = self.ruleset
        return (
            f"nftables table {FAMILY} {r.table} ({len(r.chains)} pod chains, "
            f"{r.rule_count} rules, {r.element_count} set and map elements)"
        )

    def changes_from(self, current: KernelObject) -> str | None:
        if not isinstance(current, PolicyTable):
            return None
        found = differences(current.ruleset, self.ruleset)
        if not current.base_intact:
            found.insert(0, f"chain {render.BASE_CHAIN} is not what the daemon wrote")
        return "; ".join(found) or "nothing"


def differences(current: Ruleset, wanted: Ruleset) -> list[str]:
    """What the kernel's table lacks or holds wrongly, one line per object."""
    found = []
    have_sets = {s.name: s for s in current.sets}
    for nft_set in wanted.sets:
        held = have_sets.pop(nft_set.name, None)
        if held is None:
            found.append(f"set {nft_set.name} missing")
        elif held != nft_set:
            missing, extra = nft_set.elements - held.elements, held.elements - nft_set.elements
            found.append(f"set {nft_set.name}: {len(missing)} elements missing, {len(extra)} extra")
    found += [f"set {name} not wanted" for name in sorted(have_sets)]
    have_chains = {c.name: c for c in current.chains}
    for chain in wanted.chains:
        held_chain = have_chains.pop(chain.name, None)
        if held_chain is None:
            found.append(f"chain {chain.name} missing")
        elif canonical_rules(held_chain.rules) != canonical_rules(chain.rules):
            found.append(f"chain {chain.name}: rules differ")
    found += [f"chain {name} not wanted" for name in sorted(have_chains)]
    for direction in Direction:
        held_map, wanted_map = current.maps.get(direction, frozenset()), wanted.maps[direction]
        for interface, chain_name in sorted(wanted_map - held_map):
            found.append(f"map {render.MAPS[direction]}: {interface} -> {chain_name} missing")
        for interface, chain_name in sorted(held_map - wanted_map):
            found.append(f"map {render.MAPS[direction]}: {interface} -> {chain_name} not wanted")
    have_counters = {c.name for c in current.counters}
    wanted_counters = {c.name for c in wanted.counters}
    found += [f"counter {name} missing" for name in sorted(wanted_counters - have_counters)]
    found += [f"counter {name} not wanted" for name in sorted(have_counters - wanted_counters)]
    return found


def about_interface(current: Ruleset, wanted: Ruleset, interface: str) -> list[str]:
    """The differences that concern the pod behind ``interface``: its chains, its map entries
    and the sets its chains match against (CNI CHECK of that pod)."""
    mine = {render.chain_name(d, interface) for d in Direction}
    used = {
        word.removeprefix("@")
        for chain in wanted.chains
        if chain.name in mine
        for rule in chain.rules
        for word in rule.split()
        if word.startswith("@")
    }
    names = mine | used | {render.counter_name(d, interface) for d in Direction}
    return [line for line in differences(current, wanted) if _names_in(line) & names]


def _names_in(line: str) -> set[str]:
    return {word.rstrip(":") for word in line.split()}


# --------------------------------------------------------------------------- desired


@dataclasses.dataclass(frozen=True)
class PolicyDesired:
    table: PolicyTable
    problems: tuple[PolicyProblem, ...]
    peers: PolicyPeers
    compile_seconds: float
    inputs: str
    """The digest of the view's policy inputs (:meth:`PolicyView.digest`)."""

    @property
    def counters(self) -> tuple[DropCounter, ...]:
        return self.table.ruleset.counters


def desired(view: PolicyView, host: HostFacts, table: str) -> PolicyDesired:
    """The table this node should hold for ``view``. Raises render.RenderError for a table
    name nft would not take (the configuration is checked for that at start)."""
    started = time.perf_counter()
    peers = build(view, host.links)
    policies, problems = _parse(view)
    compilation = compile_node(policies, peers.pods, peers.namespaces, peers.node_addresses)
    known = {f"{p.namespace}/{p.name}" for p in policies}
    problems += [
        _problem(p.policy, p.code, p.message, "NetworkPolicy" if p.policy in known else "Pod")
        for p in compilation.problems  # a pod's (two claiming one interface) names the pod
    ]
    ruleset = render.ruleset(compilation, table)
    seconds = time.perf_counter() - started
    ordered = tuple(sorted(set(problems), key=lambda p: (p.namespace, p.name, p.code, p.message)))
    return PolicyDesired(PolicyTable(ruleset), ordered, peers, seconds, view.digest())


def _parse(view: PolicyView) -> tuple[list[Policy], list[PolicyProblem]]:
    policies: list[Policy] = []
    problems: list[PolicyProblem] = []
    for item in view.policies:
        try:
            parsed = parsed_policy(item)
        except InvalidPolicy as exc:
            problems.append(_problem(exc.policy, "InvalidPolicy", f"{exc}: isolates nothing"))
            continue
        policies.append(parsed.policy)
        problems += [_problem(p.policy, p.code, p.message) for p in parsed.problems]
    return policies, problems


def _problem(key: str, code: str, message: str, about: str = "NetworkPolicy") -> PolicyProblem:
    namespace, _, name = key.partition("/")
    return PolicyProblem(namespace, name, code, message, about)


# --------------------------------------------------------------------------- observed


class KernelForms:
    """Listed rules of a chain -> the rendered text that produced them, learnt from what the
    applier wrote. Shared by the reconcile worker (which writes) and diagnosis (which reads),
    so guarded by a lock."""

    def __init__(self) -> None:
        self._text_of: dict[tuple[str, ...], tuple[str, ...]] = {}
        self._base: tuple[str, ...] | None = None
        self._lock = threading.Lock()

    def text_of(self, listed: tuple[str, ...]) -> tuple[str, ...]:
        """The text that was written, else the listing read back (policy_rules), else
        UNKNOWN_RULES."""
        with self._lock:
            known = self._text_of.get(listed)
        if known is not None:
            return known
        read = [rule_text(json.loads(rule)) for rule in listed]
        return UNKNOWN_RULES if None in read else tuple(r for r in read if r is not None)

    def base_is(self, listed: tuple[str, ...] | None) -> bool:
        """Whether the base chain is listed as the renderer writes it."""
        if listed is None:
            return False
        with self._lock:
            if listed == self._base:
                return True
        return canonical_rules(self.text_of(listed)) == canonical_rules(base_rules())

    def learn(
        self, written: Iterable[NftChain], listing: Sequence[Mapping[str, Any]], *, full: bool
    ) -> None:
        """``listing``: the table listed right after ``written``'s chains were written
        (``full``: the whole table was, base chain included)."""
        rules: dict[str, list[str]] = {}
        for item in listing:
            if "rule" in item:
                body = item["rule"]
                rules.setdefault(body["chain"], []).append(listed_rule(body))
        with self._lock:
            if full:
                self._base = tuple(rules.get(render.BASE_CHAIN, ()))
            for chain in written:
                self._text_of[tuple(rules.get(chain.name, ()))] = chain.rules

    def keep_only(self, chains: Iterable[NftChain]) -> None:
        """Forget the forms of chains no longer in the table (so the memory stays bounded)."""
        wanted = {chain.rules for chain in chains}
        with self._lock:
            self._text_of = {k: v for k, v in self._text_of.items() if v in wanted}


def listed_rule(body: Mapping[str, Any]) -> str:
    """A rule as nft lists it, without what changes by itself (its handle)."""
    kept = {"expr": body.get("expr"), "comment": body.get("comment")}
    return json.dumps(kept, sort_keys=True, separators=(",", ":"))


def observed(name: str, listing: Sequence[Mapping[str, Any]], forms: KernelForms) -> PolicyTable:
    """The table as nft listed it (``list_table``), in the renderer's terms."""
    sets: list[NftSet] = []
    maps: dict[Direction, set[tuple[str, str]]] = {d: set() for d in Direction}
    chain_rules: dict[str, list[str]] = {}
    counters: dict[str, tuple[int, int]] = {}
    for item in listing:
        if "set" in item:
            sets.append(_set(item["set"]))
        elif "map" in item:
            body = item["map"]
            direction = DIRECTION_OF_MAP.get(body["name"])
            if direction is not None:
                maps[direction] |= {entry for e in body.get("elem", []) if (entry := _verdict(e))}
        elif "chain" in item:
            chain_rules.setdefault(item["chain"]["name"], [])
        elif "rule" in item:
            chain_rules.setdefault(item["rule"]["chain"], []).append(listed_rule(item["rule"]))
        elif "counter" in item:
            body = item["counter"]
            counters[body["name"]] = (int(body.get("packets", 0)), int(body.get("bytes", 0)))
    base = chain_rules.pop(render.BASE_CHAIN, None)
    chains = tuple(
        NftChain(chain, forms.text_of(tuple(rules))) for chain, rules in sorted(chain_rules.items())
    )
    ruleset = Ruleset(
        table=name,
        sets=tuple(sorted(sets, key=lambda s: s.name)),
        maps={d: frozenset(m) for d, m in maps.items()},
        chains=chains,
        counters=tuple(DropCounter(n, "", "", Direction.INGRESS) for n in sorted(counters)),
    )
    base_intact = forms.base_is(tuple(base) if base is not None else None)
    return PolicyTable(ruleset, base_intact, counters)


def _set(body: Mapping[str, Any]) -> NftSet:
    kind = body.get("type")
    type_text = " . ".join(kind) if isinstance(kind, list) else str(kind)
    elements = frozenset(_element(e) for e in body.get("elem", []))
    flags = tuple(body.get("flags", ()))
    return NftSet(str(body["name"]), type_text, flags, elements, str(body.get("comment", "")))


def _element(element: Any) -> str:
    """One listed element in the renderer's text: ``198.19.0.5``, ``198.19.0.0/24``,
    ``198.19.0.5 . tcp . 80``; anything else as JSON (never a rendered element)."""
    if isinstance(element, dict) and "elem" in element:
        return _element(element["elem"]["val"])
    if isinstance(element, str | int):
        return str(element)
    if isinstance(element, dict) and "prefix" in element:
        prefix = element["prefix"]
        return f"{prefix['addr']}/{prefix['len']}"
    if isinstance(element, dict) and "range" in element:
        first, last = element["range"]
        return f"{_element(first)}-{_element(last)}"
    if isinstance(element, dict) and "concat" in element:
        return " . ".join(_element(part) for part in element["concat"])
    return json.dumps(element, sort_keys=True)


def _verdict(element: Any) -> tuple[str, str] | None:
    if not (isinstance(element, list) and len(element) == 2):
        return None
    key, verdict = element
    target = verdict.get("jump", {}).get("target") if isinstance(verdict, dict) else None
    return (str(key), str(target)) if isinstance(target, str) else None
