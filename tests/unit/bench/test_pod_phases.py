"""bench.pod_phases reads kubelet's, containerd's and hybridnet's log lines (in the shapes those
components write them) into per-pod phases, and only for the run's own pods."""

from __future__ import annotations

import json

import pytest

from bench import pod_phases

POD = "bench-84684c56d9-95ctf"
OTHER = "bench-84684c56d9-zzzzz"
SANDBOX = "cc34d28939a03f5cbce01f0297f52e4a9d1a002e68496e9173fe610c86d2ddbe"


def klog(time: str, text: str) -> str:
    return f"I1201 {time}   26737 kubelet.go:2515] {text}"


def sync(what: str, pod: str) -> str:
    return f'"SyncLoop {what}" source="api" pods=["default/{pod}"]'


def started(data: str) -> str:
    event = json.dumps(
        {"ID": "551c", "Type": "ContainerStarted", "Data": data}, separators=(",", ":")
    )
    return f'"SyncLoop (PLEG): event for pod" pod="default/{POD}" event={event}'


KUBELET = [
    klog("19:02:52.500000", sync("ADD", POD)),
    klog("19:02:53.000000", sync("ADD", OTHER)),
    klog("19:02:54.000000", started(SANDBOX)),
    klog("19:02:57.000000", started("e8ca")),
    klog("19:03:00.000000", sync("DELETE", POD)),
    klog("19:03:09.000000", sync("REMOVE", POD)),
]
RUN = f'msg="RunPodSandbox for name:\\"{POD}\\"  uid:\\"551c\\"  namespace:\\"default\\"'
CONTAINERD = [
    f'time="2026-12-01T19:02:52.750000000Z" level=info {RUN}"',
    f'time="2026-12-01T19:02:53.000000000Z" level=error {RUN} failed, error" error="rpc error"',
    f'time="2026-12-01T19:02:53.250000000Z" level=info {RUN}"',
    f'time="2026-12-01T19:02:53.750000000Z" level=info {RUN} returns sandbox id \\"{SANDBOX}\\""',
    f'time="2026-12-01T19:03:01.000000000Z" level=info msg="StopPodSandbox for \\"{SANDBOX}\\""',
    f'time="2026-12-01T19:03:04.000000000Z" level=info msg="TearDown network for sandbox '
    f'\\"{SANDBOX}\\" successfully"',
]


def cri(record: dict[str, object]) -> str:
    return f"2026-12-01T19:02:53.1Z stderr F {json.dumps(record)}"


DAEMON = [
    cri({"ts": "2026-12-01T19:02:53.500+00:00", "msg": "pod attached", "pod": f"default/{POD}",
         "container": SANDBOX, "seconds": {"lock": 0.0, "allocation": 0.25, "attach": 0.5}}),
    cri({"ts": "2026-12-01T19:02:53.600+00:00", "msg": "pod attached", "pod": f"default/{OTHER}",
         "container": "ffff", "seconds": {"lock": 0.0, "allocation": 9.0, "attach": 9.0}}),
    cri({"ts": "2026-12-01T19:03:03.000+00:00", "msg": "pod detached", "container": SANDBOX,
         "seconds": {"lock": 0.0, "detach": 0.125}}),
    "not a record",
]  # fmt: skip


def webhook(second: int, path: str, ms: float) -> str:
    when = f"2026-12-01T19:02:{second:02d}.000+00:00"
    return cri({"ts": when, "msg": "webhook request", "path": path, "duration_ms": ms})


MANAGER = [
    webhook(51, "/mutate?timeout=10s", 100.0),
    webhook(52, "/mutate?timeout=10s", 300.0),
    webhook(52, "/validate?timeout=10s", 9000.0),
]


def test_phases_of_one_pod_from_its_components_lines() -> None:
    events: pod_phases.Events = {}
    pods = {POD}
    pod_phases.read_kubelet(KUBELET, pods, 2026, events)
    sandboxes = pod_phases.read_containerd(CONTAINERD, pods, events)
    webhook = pod_phases.read_hybridnet(
        pod_phases.json_lines(DAEMON + MANAGER), pods, sandboxes, events
    )
    assert set(events) == {POD}  # the other pod is not this run's
    found = pod_phases.breakdown(events, webhook)
    assert found == {
        "to_node_last_s": 0.0,
        "sandbox_failures": 1,
        "kubelet_to_sandbox_s": 0.25,
        "sandbox_s": 1.0,  # from the first attempt
        "sandbox_to_container_s": 3.25,  # the pod's container, after the pause container
        "delete_to_sandbox_stop_s": 1.0,
        "sandbox_stop_s": 3.0,
        "teardown_to_removed_s": 5.0,
        "daemon_add_s": 0.75,
        "daemon_add_lock_s": 0.0,
        "daemon_add_allocation_s": 0.25,
        "daemon_add_attach_s": 0.5,
        "daemon_del_s": 0.125,
        "daemon_del_lock_s": 0.0,
        "daemon_del_detach_s": 0.125,
        "webhook_s": 0.2,
    }


def test_utc_times_with_any_precision() -> None:
    assert pod_phases._utc("1970-01-01T00:00:01.5Z") == pytest.approx(1.5)
    assert pod_phases._utc("1970-01-01T00:00:01.123456789Z") == pytest.approx(1.123456)
    assert pod_phases._utc("1970-01-01T00:00:02.000+00:00") == pytest.approx(2.0)
