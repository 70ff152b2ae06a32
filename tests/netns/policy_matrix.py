"""A probe matrix in the style of the upstream network-policy e2e suite: every pod (and any
other peer) probes every target at once, and the result is compared with a truth table.

A round sends all probes in parallel from one ``policy_agent.py probe`` process per source.
What counts as proof:

* **allowed**: the client got the server's answer to its token. A probe expected to pass that
  did not is tried again alone with a long timeout, so a slow machine never turns an allowed
  flow into a failure.
* **denied**: the client got no answer within the short timeout, and the server never logged
  the probe's token, while the round's control probes to that same server (from its node, which
  upstream lets through whatever the policies say) were logged after it. A TCP client that gave
  up cannot be accepted later (its kernel resets a late SYN-ACK), so no accept can follow; the
  control proves the server listened and the path carried packets meanwhile.

Pods always reach themselves (their own address never leaves the pod's namespace), so a
pod's probe of itself is expected to pass whatever the table says, as upstream expects.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import itertools
import json
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, Protocol

from hybridnet.lab.processes import Process

AGENT = str(Path(__file__).with_name("policy_agent.py"))
DENY_TIMEOUT = 1.0
"""Seconds a client waits before it counts as refused: a flow the filter allows answers in
milliseconds here; one that seems refused is tried again with ALLOW_TIMEOUT when expected to
pass, so this bound only decides how quickly a denial is concluded, never a result."""
ALLOW_TIMEOUT = 10.0
UDP_SOURCE_PORTS = range(20000, 30000)
"""One per round: a pair's UDP probes of two rounds never share a conntrack entry."""
SERVER_READY_TIMEOUT = 20.0
_rounds = itertools.count(1)


def agent_argv(*args: str) -> list[str]:
    return [sys.executable, "-X", "utf8", AGENT, *args]


class Netns(Protocol):
    """Where a peer's servers and probes run: a lab namespace, or a real pod's (entered from
    the host, tests/realcluster/policy_bed.py)."""

    def spawn(self, args: Sequence[str]) -> Process: ...

    def exec(self, args: Sequence[str], **kwargs: Any) -> subprocess.CompletedProcess[str]: ...


@dataclasses.dataclass
class Peer:
    """Something that probes or is probed: a pod (``ns/name``), a node or an outside host."""

    name: str
    netns: Netns
    addresses: dict[int, str]
    server: Process | None = None
    node: Peer | None = None
    """For a pod: its node (the source of the control probes)."""

    @property
    def namespace(self) -> str:
        return self.name.partition("/")[0] if "/" in self.name else ""

    def start_server(self, ports: Sequence[int], binds: Sequence[str] = ()) -> None:
        """``binds``: the addresses to serve on, each its own socket (default: all)."""
        options = [word for address in binds for word in ("--bind", address)]
        self.server = self.netns.spawn(agent_argv("serve", *options, *map(str, ports)))
        self.server.wait_for_line("^ready$", timeout=SERVER_READY_TIMEOUT)

    def wait_for_tokens(self, wanted: set[str], timeout: float) -> set[str]:
        """Until the server's log, as read so far, holds every token of ``wanted`` (the
        server prints a token before it answers, but our reader of its output may still be
        behind); returns those still missing at ``timeout``."""
        deadline = time.monotonic() + timeout
        while (missing := wanted - self.tokens()) and time.monotonic() < deadline:
            time.sleep(0.01)
        return missing

    def tokens(self) -> set[str]:
        """Every token this peer's server logged so far."""
        if self.server is None:
            return set()
        found = set()
        for line in list(self.server.output_lines):
            if line.startswith("{"):
                found.add(json.loads(line)["token"])
        return found


@dataclasses.dataclass(frozen=True)
class Flow:
    """One column set of a check: a port, a protocol and an address family."""

    port: int
    proto: str = "tcp"
    family: int = 4

    def __str__(self) -> str:
        return f"{self.proto}/{self.port} IPv{self.family}"


class Reachability:
    """The expected truth table: ``expected[(source, target)]``, every pair ``default``."""

    def __init__(self, sources: Sequence[Peer], targets: Sequence[Peer], default: bool = True):
        self.sources = list(sources)
        self.targets = list(targets)
        self.expected = {(s.name, t.name): default for s in sources for t in targets}

    def expect(
        self,
        ok: bool,
        *,
        source: Callable[[Peer], bool] = lambda p: True,
        target: Callable[[Peer], bool] = lambda p: True,
    ) -> Reachability:
        """Set every pair whose source and target match the predicates."""
        for s in self.sources:
            for t in self.targets:
                if source(s) and target(t):
                    self.expected[(s.name, t.name)] = ok
        return self

    def ingress(self, target: str, ok: bool) -> Reachability:
        return self.expect(ok, target=lambda p: p.name == target)

    def egress(self, source: str, ok: bool) -> Reachability:
        return self.expect(ok, source=lambda p: p.name == source)

    def pair(self, source: str, target: str, ok: bool) -> Reachability:
        self.expected[(source, target)] = ok
        return self


@dataclasses.dataclass(frozen=True)
class Check:
    expected: Reachability
    flow: Flow


@dataclasses.dataclass(frozen=True)
class Outcome:
    source: str
    target: str
    flow: Flow
    expected: bool
    observed: bool
    detail: str


@dataclasses.dataclass
class _Probe:
    token: str
    source: Peer
    target: Peer
    flow: Flow
    expected: bool
    result: str = ""

    source_port: int = 0
    """For UDP: the round's own source port (see policy_agent.py)."""

    def request(self, timeout: float) -> dict[str, object]:
        return {
            "id": self.token,
            "address": self.target.addresses[self.flow.family],
            "port": self.flow.port,
            "proto": self.flow.proto,
            "timeout": timeout,
            "source_port": self.source_port,
        }


def _run(probes: Sequence[_Probe], timeout: float) -> None:
    """Each source's probes in one agent process, all sources side by side."""
    by_source: dict[str, list[_Probe]] = {}
    for each in probes:
        by_source.setdefault(each.source.name, []).append(each)

    def one(group: list[_Probe]) -> None:
        stdin = json.dumps([p.request(timeout) for p in group])
        done = group[0].source.netns.exec(
            agent_argv("probe"), input_text=stdin, timeout=timeout + 60
        )
        results = json.loads(done.stdout)
        for each in group:
            each.result = results[each.token]

    with concurrent.futures.ThreadPoolExecutor(max(len(by_source), 1)) as pool:
        list(pool.map(one, by_source.values()))


def probe(checks: Iterable[Check]) -> list[Outcome]:
    """One round of every check's pairs; the outcomes, each proven as the module says."""
    number = next(_rounds)
    probes: list[_Probe] = []
    for index, (check, pair) in enumerate(
        (c, p) for c in checks for p in c.expected.expected.items()
    ):
        (source_name, target_name), ok = pair
        source = _named(check.expected.sources, source_name)
        target = _named(check.expected.targets, target_name)
        if check.flow.family not in source.addresses or check.flow.family not in target.addresses:
            continue
        ok = ok or source is target
        token = f"r{number}-{index}"
        source_port = UDP_SOURCE_PORTS.start + number % len(UDP_SOURCE_PORTS)
        probes.append(_Probe(token, source, target, check.flow, ok, source_port=source_port))
    _run(probes, DENY_TIMEOUT)
    retry = [p for p in probes if p.expected and p.result != "ok"]
    if retry:
        _run(retry, ALLOW_TIMEOUT)
    _control(number, {p.target.name: p.target for p in probes}.values(), probes)
    return [_outcome(p) for p in probes]


def _control(number: int, targets: Iterable[Peer], probes: Sequence[_Probe]) -> None:
    """From each pod target's node (upstream lets a pod's node through), or from a host
    itself, one TCP probe per family on a port the round used: the server answered while the
    round's probes ran, and its output has been read up to there."""
    controls = []
    for index, target in enumerate(targets):
        used = [p.flow for p in probes if p.target is target]
        for family in sorted({f.family for f in used}):
            port = next(f.port for f in used if f.family == family)
            source = target.node or target
            flow = Flow(port, "tcp", family)
            token = f"r{number}-control-{index}-{family}"
            controls.append(_Probe(token, source, target, flow, True))
    _run(controls, ALLOW_TIMEOUT)
    failed = [
        f"{c.source.name} -> {c.target.name} {c.flow}: {c.result}"
        for c in controls
        if c.result != "ok"
    ]
    assert not failed, "control probes from the pods' own nodes failed:\n" + "\n".join(failed)
    for control in controls:
        missing = control.target.wait_for_tokens({control.token}, ALLOW_TIMEOUT)
        assert not missing, f"{control.target.name} answered {control.token} but never logged it"


def _outcome(each: _Probe) -> Outcome:
    answered = each.result == "ok"
    logged = each.token in each.target.tokens()
    observed = answered or logged
    detail = each.result if not logged or answered else f"{each.result}, but the server logged it"
    return Outcome(each.source.name, each.target.name, each.flow, each.expected, observed, detail)


def _named(peers: Sequence[Peer], name: str) -> Peer:
    for peer in peers:
        if peer.name == name:
            return peer
    raise KeyError(name)


def mismatches(outcomes: Iterable[Outcome]) -> list[Outcome]:
    return [o for o in outcomes if o.expected != o.observed]


def table(outcomes: Sequence[Outcome]) -> str:
    """The observed truth table of each flow (``.`` allowed, ``X`` denied, ``!`` where it
    differs from the expected one), as the upstream suite prints it."""
    lines = []
    for flow in dict.fromkeys(o.flow for o in outcomes):
        mine = [o for o in outcomes if o.flow == flow]
        sources = list(dict.fromkeys(o.source for o in mine))
        targets = list(dict.fromkeys(o.target for o in mine))
        cell = {(o.source, o.target): o for o in mine}
        width = max(len(n) for n in sources + targets)
        lines.append(f"{flow}:")
        lines.append(" " * (width + 1) + " ".join(t[-width:].rjust(width) for t in targets))
        for source in sources:
            row = []
            for target in targets:
                found = cell.get((source, target))
                mark = "-" if found is None else "." if found.observed else "X"
                if found is not None and found.observed != found.expected:
                    mark = "!" + mark
                row.append(mark.rjust(width))
            lines.append(source.rjust(width) + " " + " ".join(row))
    return "\n".join(lines)


def assert_matrix(checks: Sequence[Check]) -> None:
    outcomes = probe(checks)
    assert outcomes, "no pair of these checks has the flows' address family"
    wrong = mismatches(outcomes)
    if wrong:
        listed = "\n".join(
            f"  {o.source} -> {o.target} {o.flow}: expected "
            f"{'allowed' if o.expected else 'denied'}, got {o.detail}"
            for o in wrong
        )
        raise AssertionError(f"{len(wrong)} flows differ:\n{listed}\n{table(outcomes)}")
