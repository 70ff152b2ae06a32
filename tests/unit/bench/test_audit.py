"""The audit-log reading the API benchmarks count requests with."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from bench import audit


def event(
    audit_id: str,
    stage: str,
    verb: str,
    received: str,
    *,
    user: str = audit.MANAGER_USER,
    resource: str | None = "pods",
    subresource: str | None = None,
    uri: str = "/api/v1/pods",
) -> dict[str, Any]:
    """An event as kube-apiserver writes it at level Metadata."""
    line: dict[str, Any] = {
        "kind": "Event",
        "apiVersion": "audit.k8s.io/v1",
        "level": "Metadata",
        "auditID": audit_id,
        "stage": stage,
        "requestURI": uri,
        "verb": verb,
        "user": {"username": user, "groups": ["system:masters", "system:authenticated"]},
        "sourceIPs": ["127.0.0.1"],
        "responseStatus": {"metadata": {}, "code": 200},
        "requestReceivedTimestamp": received,
        "stageTimestamp": received,
    }
    if resource is not None:
        line["objectRef"] = {"resource": resource, "apiVersion": "v1"}
        if subresource:
            line["objectRef"]["subresource"] = subresource
    return line


def write(path: Path, *events: dict[str, Any], tail: str = "") -> None:
    with path.open("a") as handle:
        handle.write("".join(json.dumps(e) + "\n" for e in events) + tail)


def test_a_watch_is_one_request_though_it_has_two_stages(tmp_path: Path) -> None:
    log = tmp_path / "audit.log"
    opened = "2030-01-01T00:00:01.000000Z"
    write(
        log,
        event("w1", "ResponseStarted", "watch", opened, uri="/api/v1/pods?watch=true"),
        event("l1", "ResponseComplete", "list", "2030-01-01T00:00:02.500000Z"),
        event("w1", "ResponseComplete", "watch", opened, uri="/api/v1/pods?watch=true"),
    )
    requests = audit.AuditLog(log).new()
    assert [(r.audit_id, r.verb, r.resource) for r in requests] == [
        ("w1", "watch", "pods"),
        ("l1", "list", "pods"),
    ]
    assert requests[0].component == "manager"
    assert requests[1].received - requests[0].received == 1.5


def test_the_log_is_read_as_it_grows_and_a_half_written_line_waits(tmp_path: Path) -> None:
    log = tmp_path / "audit.log"
    reader = audit.AuditLog(log)
    assert reader.new() == []  # no file yet
    second = json.dumps(event("g2", "ResponseComplete", "get", "2030-01-01T00:00:03Z"))
    write(log, event("g1", "ResponseComplete", "get", "2030-01-01T00:00:02Z"), tail=second[:40])
    assert [r.audit_id for r in reader.new()] == ["g1"]
    write(log, tail=second[40:] + "\n")
    assert [r.audit_id for r in reader.new()] == ["g2"]
    assert reader.new() == []
    assert [r.audit_id for r in reader.all()] == ["g1", "g2"]


def test_subresources_and_non_resource_requests_are_named() -> None:
    status = audit.parse_event(
        event("u1", "ResponseComplete", "update", "2030-01-01T00:00:00Z",
              resource="ipinstances", subresource="status")
    )  # fmt: skip
    assert status.resource == "ipinstances/status"
    assert status.is_write
    discovery = audit.parse_event(
        event("d1", "ResponseComplete", "get", "2030-01-01T00:00:00Z", resource=None,
              uri="/apis/networking.alibaba.com/v1?timeout=32s")
    )  # fmt: skip
    assert discovery.resource == "/apis/networking.alibaba.com/v1"


def test_counts_are_by_window_user_and_call() -> None:
    def at(second: float, user: str, verb: str = "get") -> audit.Request:
        return audit.Request(f"{user}-{second}", user, verb, "pods", second, 200)

    requests = [
        at(9.9, audit.DAEMON_USER),
        at(10.0, audit.DAEMON_USER),
        at(15.0, audit.DAEMON_USER, "list"),
        at(15.0, audit.MANAGER_USER),
        at(20.0, audit.DAEMON_USER),
    ]
    assert audit.count(requests, 10, 20) == {
        ("daemon", "get", "pods"): 1,
        ("daemon", "list", "pods"): 1,
        ("manager", "get", "pods"): 1,
    }
    assert audit.count(requests, 10, 20, audit.MANAGER_USER) == {("manager", "get", "pods"): 1}
    within = audit.count_within(requests, [(14.5, 15.5), (19.0, 20.0)], audit.DAEMON_USER)
    assert within == {("daemon", "list", "pods"): 1, ("daemon", "get", "pods"): 1}


def test_only_watches_and_lease_renewals_are_on_target() -> None:
    assert audit.category("update", "leases") == "leader election"
    assert audit.on_target("get", "leases")
    assert audit.on_target("watch", "ipinstances")
    assert audit.category("update", "ipinstances/status") == "write"
    assert not audit.on_target("list", "networks")
    assert not audit.on_target("get", "pods")
    assert not audit.on_target("patch", "nodes")


def test_the_policy_records_only_the_components(tmp_path: Path) -> None:
    text = audit.write_policy(tmp_path / "policy.yaml").read_text()
    assert 'users: ["hybridnet-bench-manager", "hybridnet-bench-daemon"]' in text
    assert text.rstrip().endswith("- level: None")
