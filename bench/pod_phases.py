"""Where a pod's start and deletion spend their time, read from the nodes' logs after a run.

Per pod, from kubelet's log (klog, microseconds): ``SyncLoop ADD`` (the pod reached its node),
the last ``ContainerStarted`` event, ``SyncLoop DELETE`` and ``REMOVE``; from containerd's
(nanoseconds): ``RunPodSandbox`` and its return (the network is set up in between: the CNI
ADD; ``sandbox_failures`` counts attempts that failed and were retried), ``StopPodSandbox``
and ``TearDown network`` (the CNI DEL); from hybridnet's daemons, when installed, the ``pod
attached`` / ``pod detached`` lines with the seconds of each step of the call
(hybridnet.daemon.service.Phases), and from its manager the ``webhook request`` lines (the pod
create's admission review). Each phase is summarised as the median over the run's pods;
``to_node_last_s`` is when the last pod reached its kubelet, after the first did (pod creation
and scheduling, the ReplicaSet's create batches included).

A figure here is for finding the slow step, not for comparing machines: the logs are the
components' own, and on a loaded machine every step stretches.
"""

from __future__ import annotations

import datetime
import json
import re
import statistics
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from hybridnet.api.constants import INSTALL_NAMESPACE

Events = dict[str, dict[str, Any]]
"""Pod name -> event -> UNIX time (or, for ``add_steps``/``del_steps``, the daemon's dict)."""

_KLOG = re.compile(r"^[IWE](\d\d)(\d\d) (\d\d:\d\d:\d\d\.\d+)")
_KUBELET = {
    "to_node": re.compile(r'"SyncLoop ADD" source="api" pods=\["[^/"]+/([^"]+)"\]'),
    "started": re.compile(
        r'"SyncLoop \(PLEG\): event for pod" pod="[^/"]+/([^"]+)".*"ContainerStarted"'
    ),
    "delete": re.compile(r'"SyncLoop DELETE" source="api" pods=\["[^/"]+/([^"]+)"\]'),
    "removed": re.compile(r'"SyncLoop REMOVE" source="api" pods=\["[^/"]+/([^"]+)"\]'),
}
_LAST_WINS = {"started"}
"""The pause container starts first, the pod's own container last."""
_CONTAINERD_TIME = re.compile(r'^time="([^"]+)"')
_SANDBOX_RUN = re.compile(r'RunPodSandbox for name:\\"([^\\]+)\\"')
_SANDBOX_ID = re.compile(r'returns sandbox id \\"([0-9a-f]+)\\"')
_SANDBOX_STOP = re.compile(r'StopPodSandbox for \\"([0-9a-f]+)\\"')
_TEARDOWN = re.compile(r'TearDown network for sandbox \\"([0-9a-f]+)\\" successfully')
PHASES = (
    ("to_node", "sandbox_start", "kubelet_to_sandbox_s"),
    ("sandbox_start", "sandbox_done", "sandbox_s"),
    ("sandbox_done", "started", "sandbox_to_container_s"),
    ("delete", "stop_start", "delete_to_sandbox_stop_s"),
    ("stop_start", "teardown", "sandbox_stop_s"),
    ("teardown", "removed", "teardown_to_removed_s"),
)


def _utc(text: str) -> float:
    """An RFC 3339 time with any number of fractional digits, as UNIX time."""
    text = text.rstrip("Z").removesuffix("+00:00")
    whole, _, fraction = text.partition(".")
    parsed = datetime.datetime.fromisoformat(f"{whole}.{(fraction + '000000')[:6]}")
    return parsed.replace(tzinfo=datetime.UTC).timestamp()


def _klog_time(line: str, year: int) -> float | None:
    found = _KLOG.match(line)
    return _utc(f"{year}-{found[1]}-{found[2]}T{found[3]}") if found else None


def _put(events: Events, pod: str, key: str, value: Any, *, last: bool = False) -> None:
    held = events.setdefault(pod, {})
    if last or key not in held:
        held[key] = value


def read_kubelet(lines: Iterable[str], pods: set[str], year: int, events: Events) -> None:
    for line in lines:
        for key, pattern in _KUBELET.items():
            found = pattern.search(line)
            if found and found[1] in pods:
                when = _klog_time(line, year)
                if when is not None:
                    _put(events, found[1], key, when, last=key in _LAST_WINS)
                break


def read_containerd(lines: Iterable[str], pods: set[str], events: Events) -> dict[str, str]:
    """Sandbox events; returns sandbox id -> pod (hybridnet's DEL lines name the sandbox)."""
    sandboxes: dict[str, str] = {}
    for line in lines:
        stamp = _CONTAINERD_TIME.match(line)
        if stamp is None:
            continue
        run = _SANDBOX_RUN.search(line)
        if run and run[1] in pods:
            sandbox = _SANDBOX_ID.search(line)
            if " failed, error" in line:
                held = events.setdefault(run[1], {})
                held["sandbox_failures"] = held.get("sandbox_failures", 0) + 1
            elif sandbox:
                sandboxes[sandbox[1]] = run[1]
                _put(events, run[1], "sandbox_done", _utc(stamp[1]))
            else:
                _put(events, run[1], "sandbox_start", _utc(stamp[1]))
            continue
        for key, pattern in (("stop_start", _SANDBOX_STOP), ("teardown", _TEARDOWN)):
            found = pattern.search(line)
            if found and found[1] in sandboxes:
                _put(events, sandboxes[found[1]], key, _utc(stamp[1]))
                break
    return sandboxes


def json_lines(lines: Iterable[str]) -> Iterator[dict[str, Any]]:
    """The JSON records of a CRI container log (``<time> <stream> <tag> <line>``)."""
    for line in lines:
        start = line.find("{")
        if start < 0:
            continue
        try:
            record = json.loads(line[start:])
        except ValueError:
            continue
        if isinstance(record, dict):
            yield record


def read_hybridnet(
    records: Iterable[dict[str, Any]], pods: set[str], sandboxes: dict[str, str], events: Events
) -> list[float]:
    """The daemons' per-call steps into ``events``; returns the webhook's request seconds."""
    webhook = []
    for record in records:
        message, steps = record.get("msg"), record.get("seconds")
        path = str(record.get("path", "")).partition("?")[0]  # the API server adds ?timeout=
        if message == "webhook request" and path == "/mutate":
            webhook.append(float(record.get("duration_ms", 0)) / 1000)
            continue
        if not isinstance(steps, dict):
            continue
        if message == "pod attached":
            pod = str(record.get("pod", "")).partition("/")[2]
            if pod in pods:
                _put(events, pod, "add_steps", steps)
        elif message == "pod detached" and record.get("container") in sandboxes:
            _put(events, sandboxes[str(record["container"])], "del_steps", steps)
    return webhook


def breakdown(events: Events, webhook: list[float]) -> dict[str, float]:
    """Medians over the pods of each phase (seconds; see the module docstring)."""
    found: dict[str, float] = {}
    arrivals = [e["to_node"] for e in events.values() if "to_node" in e]
    if arrivals:
        found["to_node_last_s"] = max(arrivals) - min(arrivals)
    found["sandbox_failures"] = sum(e.get("sandbox_failures", 0) for e in events.values())
    for start, end, name in PHASES:
        spans = [e[end] - e[start] for e in events.values() if start in e and end in e]
        if spans:
            found[name] = statistics.median(spans)
    for key, prefix in (("add_steps", "daemon_add"), ("del_steps", "daemon_del")):
        calls = [e[key] for e in events.values() if isinstance(e.get(key), dict)]
        if not calls:
            continue
        found[f"{prefix}_s"] = statistics.median(sum(c.values()) for c in calls)
        for step in calls[0]:
            found[f"{prefix}_{step}_s"] = statistics.median(float(c.get(step, 0)) for c in calls)
    if webhook:
        found["webhook_s"] = statistics.median(webhook)
    return {name: round(value, 3) for name, value in found.items()}


def _lines(path: Path) -> list[str]:
    return path.read_text(errors="replace").splitlines() if path.exists() else []


def measure(nodes: Iterable[Any], pods: set[str], year: int, since: float) -> dict[str, float]:
    """The breakdown for ``pods`` from every node's logs (:class:`~hybridnet.lab.realnode.
    RealNode`: its ``log_paths`` and ``host_path``); webhook lines from ``since`` (UNIX time)
    on, the manager's log holding every run's."""
    events: Events = {}
    webhook: list[float] = []
    for node in nodes:
        read_kubelet(_lines(node.log_paths["kubelet"]), pods, year, events)
        sandboxes = read_containerd(_lines(node.log_paths["containerd"]), pods, events)
        for log in sorted(
            (node.host_path("/var/log") / "pods").glob(f"{INSTALL_NAMESPACE}_*/*/*.log")
        ):
            records = [
                r
                for r in json_lines(_lines(log))
                if _utc(str(r.get("ts", "1970-01-01T00:00:00"))) >= since
            ]
            webhook += read_hybridnet(records, pods, sandboxes, events)
    return breakdown(events, webhook)
