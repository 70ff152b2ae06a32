"""hybridnet-daemon in a node namespace, on the embedded SQLite store, spoken to over its
socket: it allocates, attaches, reports, detaches and garbage-collects for real."""

from __future__ import annotations

import json
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
from hybridnet.api.resources import IPInstance
from hybridnet.daemon.attachment import host_ifname
from hybridnet.lab import daemon as daemon_harness
from hybridnet.rpc import daemon_pb2 as pb
from hybridnet.rpc import daemon_pb2_grpc as pb_grpc
from hybridnet.store.sqlite import SQLiteStore


def attachment(pod: testbed.Namespace, pod_name: str | None = None) -> pb.Attachment:
    """The sandbox ``pod`` (container id: its name) of the pod ``pod_name`` (default: the
    same name)."""
    return pb.Attachment(
        container_id=pod.name,
        netns=pod.path,
        ifname="eth0",
        pod_namespace="default",
        pod_name=pod_name or pod.name,
    )


def stored(directory: Path) -> list[IPInstance]:
    """The IPInstances in the daemon's embedded store (kept in ``directory``)."""
    store = SQLiteStore(directory / "store.db")
    try:
        return store.list(IPInstance, "kube-system").items
    finally:
        store.close()


def stored_sandboxes(directory: Path) -> dict[str, list[str]]:
    """Sandbox ("" when none is recorded) -> the addresses stored for it, in CIDR form."""
    found: dict[str, list[str]] = {}
    for instance in stored(directory):
        found.setdefault(instance.status.sandbox_id or "", []).append(instance.spec.address.ip)
    return found


def address_of_pod(directory: Path, pod_name: str) -> str:
    (instance,) = [
        i for i in stored(directory) if i.spec.binding and i.spec.binding.pod_name == pod_name
    ]
    return instance.spec.address.ip


def test_the_socket_is_root_only(daemon: tuple[testbed.Node, pb_grpc.DaemonStub, Path]) -> None:
    _, _, socket = daemon
    assert stat.S_IMODE(socket.stat().st_mode) == 0o600
    assert stat.S_IMODE(socket.parent.stat().st_mode) == 0o700


def test_add_attaches_pods_that_reach_each_other_and_del_removes(
    fabric: testbed.Fabric, daemon: tuple[testbed.Node, pb_grpc.DaemonStub, Path]
) -> None:
    node, stub, _ = daemon
    a, b = fabric.add_pod("da"), fabric.add_pod("db")
    reply_a = stub.Add(pb.AddRequest(attachment=attachment(a), mtu=1400))
    reply_b = stub.Add(pb.AddRequest(attachment=attachment(b)))
    assert (
        reply_a.ips[0].address.startswith("198.19.50.") and reply_a.ips[0].gateway == "169.254.1.1"
    )
    # The configuration's MTU, else the VXLAN device's (the overlay pod's way out: 1500 - 50).
    assert reply_a.interfaces[1].mtu == 1400 and reply_b.interfaces[1].mtu == 1450
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


def test_gc_removes_attachments_the_runtime_no_longer_knows_and_frees_their_addresses(
    fabric: testbed.Fabric, daemon: tuple[testbed.Node, pb_grpc.DaemonStub, Path], tmp_path: Path
) -> None:
    """GC removes the host ends of ours (marked with their alias) that the runtime does not
    list, and frees the addresses of every sandbox it does not list, also when its link is
    already gone. A link of someone else's named like ours is left alone."""
    node, stub, _ = daemon
    keep, leak, unlinked = fabric.add_pod("keep"), fabric.add_pod("leak"), fabric.add_pod("unl")
    for pod in (keep, leak, unlinked):
        stub.Add(pb.AddRequest(attachment=attachment(pod)))
    node.ip("link", "del", host_ifname(unlinked.name, "eth0"))  # its link went some other way
    # Not ours, whatever their names say (this kernel has veth, not necessarily dummy).
    node.ip("link", "add", "hybforeign0", "type", "veth", "peer", "name", "hybforeign1")
    valid = [pb.ValidAttachment(container_id=keep.name, ifname="eth0")]
    removed = stub.GarbageCollect(pb.GarbageCollectRequest(valid=valid)).removed
    assert list(removed) == [host_ifname(leak.name, "eth0")]
    assert host_ifname(keep.name, "eth0") in node.links()
    assert host_ifname(leak.name, "eth0") not in node.links()
    assert {"hybforeign0", "hybforeign1"} <= set(node.links())
    assert set(stored_sandboxes(tmp_path)) == {keep.name}


def test_a_late_del_of_an_old_sandbox_keeps_the_current_sandboxs_address(
    fabric: testbed.Fabric, daemon: tuple[testbed.Node, pb_grpc.DaemonStub, Path], tmp_path: Path
) -> None:
    """The pod's sandbox is replaced (same pod, new container): the new sandbox keeps the
    pod's address. The runtime's DEL of the old sandbox, arriving late, frees nothing."""
    _, stub, _ = daemon
    old, new = fabric.add_pod("old"), fabric.add_pod("new")
    first = stub.Add(pb.AddRequest(attachment=attachment(old, pod_name="web")))
    testbed.delete_namespace(old.name)  # the old sandbox dies, its DEL not yet sent
    second = stub.Add(pb.AddRequest(attachment=attachment(new, pod_name="web")))
    assert second.ips[0].address == first.ips[0].address
    stub.Delete(pb.DeleteRequest(attachment=attachment(old, pod_name="web")))
    assert stored_sandboxes(tmp_path) == {new.name: [second.ips[0].address]}
    other = stub.Add(pb.AddRequest(attachment=attachment(fabric.add_pod("other"))))
    assert other.ips[0].address != second.ips[0].address  # still allocated, not only stored
    stub.Delete(pb.DeleteRequest(attachment=attachment(new, pod_name="web")))
    assert new.name not in stored_sandboxes(tmp_path)


def test_del_after_a_failed_add_frees_the_address_and_repeats_are_harmless(
    daemon: tuple[testbed.Node, pb_grpc.DaemonStub, Path], tmp_path: Path
) -> None:
    """An ADD that failed after allocating (its netns is gone) recorded no sandbox: its DEL
    frees the address, and the same DEL again finds nothing to do."""
    _, stub, _ = daemon
    gone = pb.Attachment(
        container_id="failed1",
        netns="/run/netns/does-not-exist",
        ifname="eth0",
        pod_namespace="default",
        pod_name="unlucky",
    )
    with pytest.raises(grpc.RpcError):
        stub.Add(pb.AddRequest(attachment=gone))
    assert stored_sandboxes(tmp_path) == {"": [address_of_pod(tmp_path, "unlucky")]}
    stub.Delete(pb.DeleteRequest(attachment=gone))
    stub.Delete(pb.DeleteRequest(attachment=gone))
    assert stored_sandboxes(tmp_path) == {}


def test_del_after_the_store_lost_the_pod_lets_go_of_its_address(
    fabric: testbed.Fabric, tmp_path: Path
) -> None:
    """The store lost a pod's IPInstances (deleted behind the daemon's back) while the
    daemon's allocator still holds the address: the pod's DEL succeeds and lets go of it, so
    the address serves again. Embedded store, a /29 filled up first."""
    node = fabric.nodes[0]
    _, socket = daemon_harness.start_embedded_daemon(node, tmp_path, "198.19.52.0/29")
    with grpc.insecure_channel(f"unix:{socket}") as channel:
        stub = pb_grpc.DaemonStub(channel)  # type: ignore[no-untyped-call]
        attached: list[testbed.Namespace] = []
        refused: testbed.Namespace | None = None
        for _ in range(9):  # a /29 has at most 6 host addresses
            pod = fabric.add_pod("full")
            try:
                stub.Add(pb.AddRequest(attachment=attachment(pod)))
            except grpc.RpcError as exc:
                assert "no address" in (exc.details() or ""), exc
                refused = pod
                break
            attached.append(pod)
        assert refused is not None and attached, "the /29 never ran out"
        lost = attached[0]
        store = SQLiteStore(tmp_path / "store.db")
        for instance in store.list(IPInstance, "kube-system").items:
            if instance.status.sandbox_id == lost.name:
                store.delete(IPInstance, instance.name, "kube-system")
        store.close()
        stub.Delete(pb.DeleteRequest(attachment=attachment(lost)))
        reply = stub.Add(pb.AddRequest(attachment=attachment(refused)))
        assert stored_sandboxes(tmp_path)[refused.name] == [reply.ips[0].address]


def test_add_after_the_store_lost_the_pod_allocates_afresh(
    fabric: testbed.Fabric, daemon: tuple[testbed.Node, pb_grpc.DaemonStub, Path], tmp_path: Path
) -> None:
    """The pod's IPInstances vanished from the store (no DEL came) while the daemon's allocator
    still holds its address: the pod's next sandbox gets an address that is stored again."""
    _, stub, _ = daemon
    first, second = fabric.add_pod("lost"), fabric.add_pod("again")
    stub.Add(pb.AddRequest(attachment=attachment(first, pod_name="web")))
    store = SQLiteStore(tmp_path / "store.db")
    for instance in store.list(IPInstance, "kube-system").items:
        store.delete(IPInstance, instance.name, "kube-system")
    store.close()
    reply = stub.Add(pb.AddRequest(attachment=attachment(second, pod_name="web")))
    assert stored_sandboxes(tmp_path) == {second.name: [reply.ips[0].address]}
    assert second.addresses("eth0") == [reply.ips[0].address]


def test_add_returns_once_the_node_answers_for_the_pods_address(
    fabric: testbed.Fabric, daemon: tuple[testbed.Node, pb_grpc.DaemonStub, Path]
) -> None:
    """The proxy neighbour entry that answers for an overlay pod's address on the VXLAN
    device is the reconcile worker's; ADD waits for a reconcile that includes its pod."""
    node, stub, _ = daemon
    for _ in range(5):
        pod = fabric.add_pod("answered")
        reply = stub.Add(pb.AddRequest(attachment=attachment(pod)))
        address = reply.ips[0].address.split("/")[0]
        proxies = json.loads(node.ip("-j", "neigh", "show", "proxy").stdout)
        assert address in {entry["dst"] for entry in proxies}, proxies


def test_check_reports_a_host_end_that_lost_our_mark(
    fabric: testbed.Fabric, daemon: tuple[testbed.Node, pb_grpc.DaemonStub, Path]
) -> None:
    node, stub, _ = daemon
    pod = fabric.add_pod("mark")
    reply = stub.Add(pb.AddRequest(attachment=attachment(pod)))
    host = host_ifname(pod.name, "eth0")
    link = json.loads(node.ip("-j", "-d", "link", "show", host).stdout)[0]
    assert link["ifalias"] == f"hybridnet:{pod.name}/eth0"
    check = stub.Check(pb.CheckRequest(attachment=attachment(pod), expected=reply))
    assert list(check.differences) == []
    node.ip("link", "set", host, "alias", "someone-else")
    check = stub.Check(pb.CheckRequest(attachment=attachment(pod), expected=reply))
    assert list(check.differences) == [
        f"host interface {host} has alias 'someone-else', expected 'hybridnet:{pod.name}/eth0'"
    ]


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
    fabric: testbed.Fabric, daemon: tuple[testbed.Node, pb_grpc.DaemonStub, Path], tmp_path: Path
) -> None:
    """Pods whose ADD succeeded are fully set up; the others, after the DEL a runtime sends for
    a failed ADD, leave no veth, no route and no address; a GC finds nothing to remove."""
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
    failed = [pod for pod in pods if not outcomes[pod.name]]
    ok = [pod for pod in pods if outcomes[pod.name]]
    assert failed, "the kill came too late to test anything"
    # Restart (same store, same socket) and do what the runtime does.
    restarted = node.spawn(process.argv[4:])
    deadline = time.monotonic() + 20
    ready = False
    while not ready and time.monotonic() < deadline:
        try:
            ready = stub.Status(pb.StatusRequest(), timeout=1).ready
        except grpc.RpcError:
            time.sleep(0.1)
    assert ready, "the restarted daemon did not become ready"
    for pod in failed:
        stub.Delete(pb.DeleteRequest(attachment=attachment(pod)))
    valid = [pb.ValidAttachment(container_id=p.name, ifname="eth0") for p in ok]
    assert list(stub.GarbageCollect(pb.GarbageCollectRequest(valid=valid)).removed) == []
    assert set(node.links()) - base_links == {host_ifname(p.name, "eth0") for p in ok}
    table = node.ip("route", "show", "table", "39999").stdout
    assert len([line for line in table.splitlines() if line.strip()]) == len(ok)
    for pod in ok:
        check = stub.Check(pb.CheckRequest(attachment=attachment(pod)))
        assert list(check.differences) == [], (pod.name, list(check.differences))
    for pod in failed:
        assert pod.links() == ["lo"]
    assert set(stored_sandboxes(tmp_path)) == {pod.name for pod in ok}  # no address leaked
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
