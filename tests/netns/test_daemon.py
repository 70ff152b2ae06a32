"""hybridnet-daemon in a node namespace, on the embedded SQLite store, spoken to over its
socket: it allocates, attaches, reports, detaches and garbage-collects for real."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import pytest

from hybridnet import lab as testbed
from hybridnet.daemon.attachment import host_ifname
from hybridnet.rpc import daemon_pb2 as pb
from hybridnet.rpc import daemon_pb2_grpc as pb_grpc


def attachment(pod: testbed.Namespace) -> pb.Attachment:
    return pb.Attachment(
        container_id=pod.name,
        netns=pod.path,
        ifname="eth0",
        pod_namespace="default",
        pod_name=pod.name,
    )


def test_the_socket_is_root_only(daemon: tuple[testbed.Node, pb_grpc.DaemonStub, Path]) -> None:
    _, _, socket = daemon
    assert stat.S_IMODE(socket.stat().st_mode) == 0o600
    assert stat.S_IMODE(socket.parent.stat().st_mode) == 0o700


def test_add_attaches_pods_that_reach_each_other_and_del_removes(
    fabric: testbed.Fabric, daemon: tuple[testbed.Node, pb_grpc.DaemonStub, Path]
) -> None:
    node, stub, _ = daemon
    a, b = fabric.add_pod("da"), fabric.add_pod("db")
    reply_a = stub.Add(pb.AddRequest(attachment=attachment(a), mtu=1450))
    reply_b = stub.Add(pb.AddRequest(attachment=attachment(b)))
    assert (
        reply_a.ips[0].address.startswith("198.19.50.") and reply_a.ips[0].gateway == "169.254.1.1"
    )
    assert reply_a.interfaces[1].mtu == 1450 and reply_b.interfaces[1].mtu == 1500
    assert reply_a.interfaces[0].sandbox == "" and reply_a.interfaces[1].sandbox == a.path
    assert reply_a.ips[0].address != reply_b.ips[0].address
    assert testbed.ping(a, reply_b.ips[0].address.split("/")[0])
    assert stub.Status(pb.StatusRequest()).ready
    check = stub.Check(pb.CheckRequest(attachment=attachment(a), expected=reply_a))
    assert list(check.differences) == []
    stub.Delete(pb.DeleteRequest(attachment=attachment(a)))
    stub.Delete(pb.DeleteRequest(attachment=attachment(a)))  # repeated DEL succeeds
    assert host_ifname(a.name, "eth0") not in node.links()
    assert a.links() == ["lo"]


def test_add_into_a_missing_netns_is_refused_with_code_4(
    daemon: tuple[testbed.Node, pb_grpc.DaemonStub, Path],
) -> None:
    node, stub, _ = daemon
    before = node.links()
    gone = pb.Attachment(
        container_id="c1",
        netns="/run/netns/does-not-exist",
        ifname="eth0",
        pod_namespace="default",
        pod_name="ghost",
    )
    with pytest.raises(grpc.RpcError) as failed:
        stub.Add(pb.AddRequest(attachment=gone))
    metadata = dict(failed.value.trailing_metadata() or ())
    assert metadata.get("cni-code") == "4"
    assert "does not exist" in failed.value.details()
    assert node.links() == before


def test_gc_removes_attachments_the_runtime_no_longer_knows(
    fabric: testbed.Fabric, daemon: tuple[testbed.Node, pb_grpc.DaemonStub, Path]
) -> None:
    node, stub, _ = daemon
    keep, leak = fabric.add_pod("keep"), fabric.add_pod("leak")
    stub.Add(pb.AddRequest(attachment=attachment(keep)))
    stub.Add(pb.AddRequest(attachment=attachment(leak)))
    valid = [pb.ValidAttachment(container_id=keep.name, ifname="eth0")]
    removed = stub.GarbageCollect(pb.GarbageCollectRequest(valid=valid)).removed
    assert list(removed) == [host_ifname(leak.name, "eth0")]
    assert host_ifname(keep.name, "eth0") in node.links()
    assert host_ifname(leak.name, "eth0") not in node.links()


def test_50_concurrent_adds_all_succeed_with_distinct_interfaces(
    fabric: testbed.Fabric, daemon: tuple[testbed.Node, pb_grpc.DaemonStub, Path]
) -> None:
    node, stub, _ = daemon
    pods = [fabric.add_pod("burst") for _ in range(50)]
    with ThreadPoolExecutor(16) as pool:
        replies = list(pool.map(lambda p: stub.Add(pb.AddRequest(attachment=attachment(p))), pods))
    addresses = {reply.ips[0].address for reply in replies}
    assert len(addresses) == 50
    host_links = {host_ifname(p.name, "eth0") for p in pods}
    assert host_links <= set(node.links())
    for pod, reply in zip(pods, replies, strict=True):
        assert pod.addresses("eth0") == [reply.ips[0].address]


def test_kill_9_of_the_daemon_during_a_burst_leaks_nothing(
    fabric: testbed.Fabric, daemon: tuple[testbed.Node, pb_grpc.DaemonStub, Path]
) -> None:
    """Pods whose ADD succeeded are fully set up; the others, after the DEL a runtime sends for
    a failed ADD, leave no veth and no route; a GC finds nothing to remove."""
    node, stub, _ = daemon
    base_links = set(node.links())
    pods = [fabric.add_pod("kill") for _ in range(30)]
    (process,) = [p for p in node.processes if "hybridnet.daemon.main" in " ".join(p.argv)]
    outcomes: dict[str, bool] = {}

    def add(pod: testbed.Namespace) -> None:
        try:
            stub.Add(pb.AddRequest(attachment=attachment(pod)), timeout=20)
            outcomes[pod.name] = True
        except grpc.RpcError:
            outcomes[pod.name] = False

    with ThreadPoolExecutor(8) as pool:
        futures = [pool.submit(add, pod) for pod in pods]
        while sum(1 for f in futures if f.done()) < 5:
            time.sleep(0.01)
        os.killpg(process.pid, signal.SIGKILL)  # kill -9, of the daemon and nothing else
        for future in futures:
            future.result()
    assert not all(outcomes.values()), "the kill came too late to test anything"
    # Restart (same store, same socket) and do what the runtime does.
    restarted = node.spawn(process.argv[4:])
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            if stub.Status(pb.StatusRequest(), timeout=1).ready:
                break
        except grpc.RpcError:
            time.sleep(0.1)
    for pod in pods:
        if not outcomes[pod.name]:
            stub.Delete(pb.DeleteRequest(attachment=attachment(pod)))
    ok = [pod for pod in pods if outcomes[pod.name]]
    valid = [pb.ValidAttachment(container_id=p.name, ifname="eth0") for p in ok]
    assert list(stub.GarbageCollect(pb.GarbageCollectRequest(valid=valid)).removed) == []
    assert set(node.links()) - base_links == {host_ifname(p.name, "eth0") for p in ok}
    table = node.ip("route", "show", "table", "39999").stdout
    assert len([line for line in table.splitlines() if line.strip()]) == len(ok)
    for pod in ok:
        check = stub.Check(pb.CheckRequest(attachment=attachment(pod)))
        assert list(check.differences) == [], (pod.name, list(check.differences))
    for pod in pods:
        if not outcomes[pod.name]:
            assert pod.links() == ["lo"]
    assert restarted.poll() is None


def test_probe_answers_for_the_running_daemon_and_not_for_a_missing_one(
    daemon: tuple[testbed.Node, pb_grpc.DaemonStub, Path], tmp_path: Path
) -> None:
    """``hybridnet-daemon probe`` (the DaemonSet's exec probes) against the real daemon."""
    _, _, socket = daemon

    def probe(path: Path, *extra: str) -> subprocess.CompletedProcess[str]:
        argv = [sys.executable, "-m", "hybridnet.daemon.main", "--socket", str(path), "probe"]
        return subprocess.run([*argv, *extra], capture_output=True, text=True, check=False)

    assert probe(socket).returncode == 0
    assert probe(socket, "--ready").returncode == 0
    for extra in ((), ("--ready",)):
        missing = probe(tmp_path / "none.sock", *extra)
        assert missing.returncode == 1 and "Traceback" not in missing.stderr
        assert missing.stderr.startswith("hybridnet-daemon probe:")
        assert missing.stderr.count("\n") == 1
