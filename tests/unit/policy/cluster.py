"""The upstream e2e suite's shape: namespaces x, y, z with pods a, b, c each, all on one node
(so one compilation judges both ends of every flow), and a reachability matrix to expect.

Pod ``<ns>/<p>`` has labels ``pod=<p>``, IPv4 ``198.18.<n>.<i>`` and IPv6 ``2001:db8:<n>::<i>``
(n: x=1 y=2 z=3; i: a=1 b=2 c=3), host interface ``veth<ns><p>``, and named ports that differ
per pod so a named port resolves per destination: ``http`` is TCP 80 on a-pods and TCP 8080 on
b-pods (c-pods have none), ``dns`` is UDP 53 on every pod.
"""

from __future__ import annotations

import dataclasses
import ipaddress
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from hybridnet.policy.compiler import Compilation, compile_node
from hybridnet.policy.model import (
    IPAddress,
    NamedPort,
    NamespaceInfo,
    PodEndpoint,
    Policy,
    Protocol,
    parse_policy,
)

NAMESPACES = ("x", "y", "z")
POD_NAMES = ("a", "b", "c")
NODE_V4 = ipaddress.ip_address("198.18.0.10")
NODE_V6 = ipaddress.ip_address("2001:db8::a")
OUTSIDE_V4 = ipaddress.ip_address("198.19.7.7")
"""A host outside the cluster (no pod, not the node)."""


def address(pod: str, version: int = 4) -> IPAddress:
    namespace, name = pod.split("/")
    n, i = NAMESPACES.index(namespace) + 1, POD_NAMES.index(name) + 1
    text = f"198.18.{n}.{i}" if version == 4 else f"2001:db8:{n}::{i}"
    return ipaddress.ip_address(text)


def _named_ports(name: str) -> tuple[NamedPort, ...]:
    ports = [NamedPort("dns", Protocol.UDP, 53)]
    if name == "a":
        ports.append(NamedPort("http", Protocol.TCP, 80))
    elif name == "b":
        ports.append(NamedPort("http", Protocol.TCP, 8080))
    return tuple(ports)


def pods(
    labels: Mapping[str, Mapping[str, str]] | None = None, local: bool = True
) -> list[PodEndpoint]:
    """The nine pods; ``labels`` replaces a pod's labels (``{"x/c": {"pod": "b"}}``)."""
    found = []
    for namespace in NAMESPACES:
        for name in POD_NAMES:
            key = f"{namespace}/{name}"
            found.append(
                PodEndpoint(
                    namespace=namespace,
                    name=name,
                    labels=dict((labels or {}).get(key, {"pod": name})),
                    addresses=(address(key, 4), address(key, 6)),
                    named_ports=_named_ports(name),
                    host_interface=f"veth{namespace}{name}" if local else None,
                )
            )
    return found


def namespaces(labels: Mapping[str, Mapping[str, str]] | None = None) -> list[NamespaceInfo]:
    """Namespace ``n`` has ``ns=n`` unless ``labels`` says otherwise; y also ``team=a``."""
    defaults = {"x": {"ns": "x"}, "y": {"ns": "y", "team": "a"}, "z": {"ns": "z"}}
    return [NamespaceInfo(n, dict((labels or {}).get(n, defaults[n]))) for n in NAMESPACES]


def policy(namespace: str, name: str, spec: Mapping[str, Any]) -> Policy:
    parsed = parse_policy(namespace, name, spec)
    assert not parsed.problems, parsed.problems
    return parsed.policy


def compile_lab(
    policies: Sequence[Policy],
    pod_labels: Mapping[str, Mapping[str, str]] | None = None,
    namespace_labels: Mapping[str, Mapping[str, str]] | None = None,
) -> Compilation:
    return compile_node(
        policies, pods(pod_labels), namespaces(namespace_labels), (NODE_V4, NODE_V6)
    )


ALL_PODS = tuple(f"{n}/{p}" for n in NAMESPACES for p in POD_NAMES)


def _matches(pattern: str, pod: str) -> bool:
    """``x/a`` one pod, ``x`` (or ``x/*``) a namespace, ``*`` every pod, ``*/b`` one name."""
    namespace, _, name = pattern.partition("/")
    pod_namespace, pod_name = pod.split("/")
    return namespace in ("*", pod_namespace) and name in ("", "*", pod_name)


@dataclasses.dataclass
class Reachability:
    """Expected verdicts between every pair, like upstream's: a default, then overrides in
    order (later wins); a pod always reaches itself."""

    default: bool = True
    overrides: list[tuple[str, str, bool]] = dataclasses.field(default_factory=list)

    def expect(self, source: str, destination: str, allowed: bool) -> Reachability:
        self.overrides.append((source, destination, allowed))
        return self

    def expected(self, source: str, destination: str) -> bool:
        if source == destination:
            return True
        verdict = self.default
        for src, dst, allowed in self.overrides:
            if _matches(src, source) and _matches(dst, destination):
                verdict = allowed
        return verdict

    def table(self, pods: Iterable[str] = ALL_PODS) -> dict[tuple[str, str], bool]:
        listed = list(pods)
        return {(s, d): self.expected(s, d) for s in listed for d in listed}


def differences(
    expected: Mapping[tuple[str, str], bool], actual: Mapping[tuple[str, str], bool]
) -> list[str]:
    words = {True: "allow", False: "deny"}
    return [
        f"{s} -> {d}: expected {words[want]}, got {words[actual[s, d]]}"
        for (s, d), want in sorted(expected.items())
        if actual[s, d] != want
    ]
