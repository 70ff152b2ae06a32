"""``policy explain POD_A POD_B PORT[/PROTO]``: would a new connection from pod A to pod B
pass the NetworkPolicies in the store, and why.

The same compiler and evaluator the daemons enforce with (hybridnet.policy), on the store's
policies, pods (addresses from their IPInstances and their status) and namespaces, with the
two pods as if they were local: A's egress and B's ingress are each judged, naming the
policies that isolate that side and the rules that allow the flow, or saying none does.
Exit 0 when the flow is allowed, 3 when it is denied, 1 on bad input.
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Iterable, Mapping
from typing import Any

from hybridnet.api.builtin import Namespace, NetworkPolicy, Pod
from hybridnet.api.resources import IPInstance
from hybridnet.ctl.context import Context
from hybridnet.ctl.errors import EXIT_FOUND, EXIT_OK, CtlError
from hybridnet.ctl.output import Column, Record
from hybridnet.ipamstore import ipinstances
from hybridnet.policy import evaluate
from hybridnet.policy.compiler import RuleRef, compile_node
from hybridnet.policy.endpoints import (
    canonical_addresses,
    namespace_info,
    parsed_policy,
    pod_endpoint,
)
from hybridnet.policy.errors import InvalidPolicy
from hybridnet.policy.model import (
    Direction,
    IPAddress,
    PodEndpoint,
    Policy,
    Problem,
    Protocol,
)

COLUMNS = [
    Column("side", lambda r: r["side"]),
    Column("pod", lambda r: r["pod"]),
    Column("verdict", lambda r: r["verdict"]),
    Column("isolated by", lambda r: r["isolatedBy"]),
    Column("why", lambda r: r["why"]),
]
_FLOW = re.compile(r"^(\d+)(?:/([A-Za-z]+))?$")
_NAME = re.compile(r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")
SOURCE_INTERFACE, DESTINATION_INTERFACE = "explain-src", "explain-dst"


def parse_port(text: str) -> tuple[int, Protocol]:
    """``80``, ``53/udp``, ``9000/SCTP``."""
    found = _FLOW.match(text.strip())
    if not found:
        raise CtlError(f"port {text!r} is not PORT or PORT/PROTOCOL", "e.g. 80 or 53/UDP")
    port = int(found.group(1))
    if not 1 <= port <= 65535:
        raise CtlError(f"port {port} is out of range", "use 1-65535")
    try:
        protocol = Protocol((found.group(2) or "TCP").upper())
    except ValueError:
        raise CtlError(f"protocol {found.group(2)!r} is unknown", "use TCP, UDP or SCTP") from None
    return port, protocol


def parse_pod(text: str, namespace: str) -> tuple[str, str]:
    """``NAME`` (in ``namespace``) or ``NAMESPACE/NAME``."""
    ns, _, name = text.rpartition("/")
    ns = ns or namespace
    if not _NAME.match(ns) or not _NAME.match(name):
        raise CtlError(f"{text!r} is not a pod", "give NAME or NAMESPACE/NAME")
    return ns, name


class _Snapshot:
    """What the store holds, as the policy layer reads it."""

    def __init__(self, ctx: Context):
        store = ctx.store()
        self.policies: dict[str, Policy] = {}
        self.problems: list[Problem] = []
        for obj in store.list(NetworkPolicy).items:
            try:
                parsed = parsed_policy(obj)
            except InvalidPolicy as exc:
                self.problems.append(
                    Problem(exc.policy, "InvalidPolicy", f"{exc.path}: {exc.message}")
                )
                continue
            self.policies[parsed.policy.key] = parsed.policy
            self.problems.extend(parsed.problems)
        self.namespaces = [namespace_info(n) for n in store.list(Namespace).items]
        held: dict[str, list[str]] = {}
        for instance in store.list(IPInstance, ctx.ipam_namespace).items:
            owner = ipinstances.owner_of(instance)
            if owner:
                held.setdefault(owner, []).append(instance.spec.address.ip)
        self.pods: dict[str, Pod] = {}
        self.addresses: dict[str, tuple[IPAddress, ...]] = {}
        for pod in store.list(Pod).items:
            key = f"{pod.metadata.namespace}/{pod.metadata.name}"
            self.pods[key] = pod
            self.addresses[key] = canonical_addresses(held.get(key, ()))

    def endpoints(self, local: Mapping[str, str]) -> list[PodEndpoint]:
        """Every pod on the pod network (host-network pods are not subject to policies), the
        ``local`` ones (key -> interface) given an interface."""
        found = []
        for key, pod in self.pods.items():
            if _host_network(pod) or pod.phase in ("Succeeded", "Failed"):
                continue
            found.append(pod_endpoint(pod, self.addresses[key], local.get(key)))
        return found


def _host_network(pod: Pod) -> bool:
    return bool((pod.body.get("spec") or {}).get("hostNetwork"))


def _pick_addresses(
    source: PodEndpoint, destination: PodEndpoint, family: int | None
) -> tuple[IPAddress, IPAddress]:
    for version in (family,) if family else (4, 6):
        src = [a for a in source.addresses if a.version == version]
        dst = [a for a in destination.addresses if a.version == version]
        if src and dst:
            return src[0], dst[0]
    which = f"IPv{family} " if family else ""
    raise CtlError(
        f"{source.key} and {destination.key} have no {which}addresses of one family",
        "is each pod running, with an address?",
    )


def _rule_text(policies: Mapping[str, Policy], ref: RuleRef) -> str:
    rule = policies[ref.policy].rules(ref.direction)[ref.index]
    word = "from" if ref.direction is Direction.INGRESS else "to"
    peers = "; ".join(p.describe() for p in rule.peers) or "any peer"
    ports = ", ".join(p.describe() for p in rule.ports) or "any port"
    return f"{ref.describe()} ({word} {peers}; ports {ports})"


def _why(side: evaluate.SideVerdict, policies: Mapping[str, Policy]) -> str:
    if side.reason == evaluate.RULE:
        return "allowed by " + " and ".join(_rule_text(policies, r) for r in side.allowed_by)
    if side.reason == evaluate.NO_RULE:
        return f"no {side.direction.lower()} rule of these policies matches"
    if side.reason == evaluate.NOT_ISOLATED:
        return f"no policy selects it for {side.direction.lower()}: all is allowed"
    return f"traffic with {side.reason} is always allowed"


def _side_record(
    side: evaluate.SideVerdict | None,
    direction: Direction,
    pod: str,
    policies: Mapping[str, Policy],
) -> Record:
    if side is None:
        why = "a host-network pod: NetworkPolicy does not apply"
        return {"side": direction.lower(), "pod": pod, "verdict": "allowed", "isolatedBy": [],
                "allowedBy": [], "why": why}  # fmt: skip
    return {
        "side": direction.lower(),
        "pod": pod,
        "verdict": "allowed" if side.allowed else "denied",
        "isolatedBy": list(side.isolated_by),
        "allowedBy": [r.describe() for r in side.allowed_by],
        "why": _why(side, policies),
    }


def _relevant(problems: Iterable[Problem], policies: Iterable[str]) -> list[Problem]:
    wanted = set(policies)
    return sorted({p for p in problems if p.policy in wanted})


def explain(ctx: Context, args: argparse.Namespace) -> int:
    port, protocol = parse_port(args.port)
    source_key = "/".join(parse_pod(args.source, args.namespace))
    destination_key = "/".join(parse_pod(args.destination, args.namespace))
    snapshot = _Snapshot(ctx)
    for key in (source_key, destination_key):
        if key not in snapshot.pods:
            raise CtlError(f"pod {key} not found", "check the name and namespace (-n)")
        if snapshot.pods[key].phase in ("Succeeded", "Failed"):
            raise CtlError(f"pod {key} has finished ({snapshot.pods[key].phase})")
    local = {
        key: interface
        for key, interface in (
            (source_key, SOURCE_INTERFACE),
            (destination_key, DESTINATION_INTERFACE),
        )
        if not _host_network(snapshot.pods[key])
    }
    if source_key == destination_key:
        local = {source_key: SOURCE_INTERFACE} if local else {}
    endpoints = snapshot.endpoints(local)
    by_key = {e.key: e for e in endpoints}
    ends = [
        by_key.get(key) or pod_endpoint(snapshot.pods[key], snapshot.addresses[key])
        for key in (source_key, destination_key)
    ]
    src, dst = _pick_addresses(ends[0], ends[1], args.family)
    compiled = compile_node(list(snapshot.policies.values()), endpoints, snapshot.namespaces)
    verdict = evaluate.explain(compiled, src, dst, port, protocol)
    involved = [*(verdict.egress.isolated_by if verdict.egress else ()),
                *(verdict.ingress.isolated_by if verdict.ingress else ())]  # fmt: skip
    problems = _relevant([*snapshot.problems, *compiled.problems], involved)
    record: Record = {
        "source": {"pod": source_key, "address": str(src)},
        "destination": {"pod": destination_key, "address": str(dst)},
        "port": port,
        "protocol": str(protocol),
        "verdict": "allowed" if verdict.allowed else "denied",
        "sides": [
            _side_record(verdict.egress, Direction.EGRESS, source_key, snapshot.policies),
            _side_record(verdict.ingress, Direction.INGRESS, destination_key, snapshot.policies),
        ],
        "problems": [{"policy": p.policy, "code": p.code, "message": p.message} for p in problems],
    }
    _show(ctx, record, args.output)
    return EXIT_OK if verdict.allowed else EXIT_FOUND


def _show(ctx: Context, record: Record, fmt: Any) -> None:
    if fmt in ("json", "yaml"):
        ctx.show(record, COLUMNS, fmt)
        return
    ctx.say(
        f"{record['source']['pod']} ({record['source']['address']}) -> "
        f"{record['destination']['pod']} ({record['destination']['address']}) "
        f"port {record['port']}/{record['protocol']}: {record['verdict']}"
    )
    ctx.show(record["sides"], COLUMNS, fmt)
    for problem in record["problems"]:
        ctx.note(f"note: {problem['policy']}: {problem['message']}")
