"""Counting the API requests of hybridnet's components from kube-apiserver's audit log.

The benchmarks give the manager and the daemon client certificates of their own (users
:data:`MANAGER_USER` and :data:`DAEMON_USER`), start the API server with a policy that records
only those two users at level Metadata, and read the log afterwards: every request, by whom, its
verb, its resource (and subresource) and when the server received it.

A request appears once or twice in the log: ``ResponseComplete`` always, and before it
``ResponseStarted`` for long-running ones (watches), so requests are counted by ``auditID``.
A watch's events are written when it opens and when it ends; a window counts the watches
*opened* in it.
"""

from __future__ import annotations

import collections
import dataclasses
import datetime
import json
from collections.abc import Iterable, Iterator
from pathlib import Path

MANAGER_USER = "hybridnet-bench-manager"
DAEMON_USER = "hybridnet-bench-daemon"
COMPONENTS = {MANAGER_USER: "manager", DAEMON_USER: "daemon"}
"""The audited users and the component each one is."""

WRITE_VERBS = frozenset({"create", "update", "patch", "delete", "deletecollection"})
LEADER_ELECTION_RESOURCES = frozenset({"leases"})
"""Renewing the leader Lease is a write every retry period that any leader-elected component
makes (client-go's leaderelection too); tables show it apart from the rest."""

POLICY = """\
apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: ["RequestReceived"]
rules:
  - level: Metadata
    users: [{users}]
  - level: None
"""


def write_policy(path: Path, users: Iterable[str] = COMPONENTS) -> Path:
    """An audit policy recording ``users`` at level Metadata and nobody else."""
    path.write_text(POLICY.format(users=", ".join(json.dumps(u) for u in users)))
    return path


def apiserver_flags(policy: Path, log: Path) -> dict[str, str | None]:
    """kube-apiserver flags that write the audit log (blocking: an event is on disk before the
    request's response is sent, so the log is complete once the measured calls returned)."""
    return {
        "audit-policy-file": str(policy),
        "audit-log-path": str(log),
        "audit-log-format": "json",
        "audit-log-mode": "blocking",
        "audit-log-maxsize": "0",
    }


@dataclasses.dataclass(frozen=True)
class Request:
    """One API request as the audit log recorded it."""

    audit_id: str
    user: str
    verb: str
    resource: str
    """``ipinstances``, ``ipinstances/status``, or the path of a non-resource request."""
    received: float
    """When the API server received it, seconds since the epoch."""
    code: int

    @property
    def component(self) -> str:
        return COMPONENTS.get(self.user, self.user)

    @property
    def is_write(self) -> bool:
        return self.verb in WRITE_VERBS

    @property
    def is_leader_election(self) -> bool:
        return self.resource.partition("/")[0] in LEADER_ELECTION_RESOURCES


def _timestamp(text: str) -> float:
    return datetime.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def parse_event(event: dict[str, object]) -> Request:
    """The request an audit event (one JSON line of the log) describes."""
    ref = event.get("objectRef")
    if isinstance(ref, dict):
        resource = str(ref.get("resource", ""))
        if ref.get("subresource"):
            resource += f"/{ref['subresource']}"
    else:
        resource = str(event.get("requestURI", "")).partition("?")[0]
    user = event.get("user")
    status = event.get("responseStatus")
    return Request(
        audit_id=str(event["auditID"]),
        user=str(user.get("username", "")) if isinstance(user, dict) else "",
        verb=str(event.get("verb", "")),
        resource=resource,
        received=_timestamp(str(event["requestReceivedTimestamp"])),
        code=int(status.get("code", 0)) if isinstance(status, dict) else 0,
    )


class AuditLog:
    """Reads the log as it grows: :meth:`new` returns the requests not returned before."""

    def __init__(self, path: Path):
        self.path = path
        self._offset = 0
        self._seen: set[str] = set()

    def new(self) -> list[Request]:
        if not self.path.exists():
            return []
        with self.path.open("rb") as handle:
            handle.seek(self._offset)
            data = handle.read()
        complete = data.rpartition(b"\n")[0]  # a line still being written waits for next time
        if not complete:
            return []
        self._offset += len(complete) + 1
        found = []
        for line in complete.splitlines():
            if not line.strip():
                continue
            request = parse_event(json.loads(line))
            if request.audit_id not in self._seen:
                self._seen.add(request.audit_id)
                found.append(request)
        return found

    def all(self) -> Iterator[Request]:
        """Every request in the file, once each (a fresh reader; this one's position stays)."""
        yield from AuditLog(self.path).new()


Key = tuple[str, str, str]
"""(component, verb, resource)."""


def count(
    requests: Iterable[Request], start: float, end: float, user: str | None = None
) -> collections.Counter[Key]:
    """Requests received in ``[start, end)``, of ``user`` (None: every audited user)."""
    return collections.Counter(
        (r.component, r.verb, r.resource)
        for r in requests
        if start <= r.received < end and (user is None or r.user == user)
    )


def count_within(
    requests: Iterable[Request], intervals: Iterable[tuple[float, float]], user: str
) -> collections.Counter[Key]:
    """Requests of ``user`` received during any of ``intervals`` (each ``[start, end]``)."""
    spans = sorted(intervals)
    counted: collections.Counter[Key] = collections.Counter()
    for request in requests:
        if request.user == user and any(s <= request.received <= e for s, e in spans):
            counted[(request.component, request.verb, request.resource)] += 1
    return counted


def category(verb: str, resource: str) -> str:
    """``watch``, ``list``, ``write``, ``get`` (or another read verb), or ``leader election``
    for the Lease requests every leader-elected component makes."""
    if resource.partition("/")[0] in LEADER_ELECTION_RESOURCES:
        return "leader election"
    if verb in WRITE_VERBS:
        return "write"
    return verb


def on_target(verb: str, resource: str) -> bool:
    """The steady-state target: watches only (and leader election's Lease renewals)."""
    return category(verb, resource) in {"watch", "leader election"}
