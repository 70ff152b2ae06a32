"""ADD, CHECK, DEL, STATUS and GC through the real plugin executable, driven the way a runtime
drives it (hybridnet/lab/cni_runtime.py), against the fake daemon (a stand-in: see fake_daemon)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import grpc
import pytest

from hybridnet.cni import versions
from hybridnet.lab.cni_runtime import Attachment, CniPluginError, CniRuntime
from tests.unit.cni.conftest import plugin_executable
from tests.unit.cni.fake_daemon import Failure, FakeDaemon

Daemon = tuple[FakeDaemon, Path]
POD_ARGS = {"IgnoreUnknown": "1", "K8S_POD_NAMESPACE": "shop", "K8S_POD_NAME": "cart-0",
            "K8S_POD_UID": "5d1e", "K8S_POD_INFRA_CONTAINER_ID": "c0ffee"}  # fmt: skip


def conflist(socket_path: Path, version: str = versions.LATEST, **options: Any) -> dict[str, Any]:
    plugin = {"type": "hybridnet", "socket": str(socket_path), "mtu": 1450, **options}
    return {"cniVersion": version, "name": "hybridnet", "plugins": [plugin]}


def runtime(config: dict[str, Any], plugin_dir: Path, tmp_path: Path) -> CniRuntime:
    return CniRuntime(config, [str(plugin_dir)], tmp_path / "cache", timeout=30)


def expected_result(version: str, netns: str) -> dict[str, Any]:
    legacy = versions.is_legacy(version)
    interface: dict[str, Any] = {"name": "eth0", "mac": "02:00:c6:13:00:05", "sandbox": netns}
    if version == "1.1.0":
        interface["mtu"] = 1450
    v4: dict[str, Any] = {"address": "198.19.0.5/24", "gateway": "169.254.1.1", "interface": 0}
    v6: dict[str, Any] = {"address": "2001:db8:1::5/64", "gateway": "fe80::1", "interface": 0}
    if legacy:
        v4, v6 = {"version": "4", **v4}, {"version": "6", **v6}
    return {
        "cniVersion": version,
        "interfaces": [interface],
        "ips": [v4, v6],
        "routes": [{"dst": "0.0.0.0/0", "gw": "169.254.1.1"}, {"dst": "::/0", "gw": "fe80::1"}],
        "dns": {},
    }


@pytest.mark.parametrize("version", versions.SUPPORTED)
def test_add_check_del_in_every_version(
    version: str, daemon: Daemon, plugin_dir: Path, tmp_path: Path, netns_path: Path
) -> None:
    fake, socket_path = daemon
    cni = runtime(conflist(socket_path, version), plugin_dir, tmp_path)
    pod = Attachment(container_id="pod1", netns=str(netns_path), args=POD_ARGS)

    result = cni.add(pod)
    assert result == expected_result(version, str(netns_path))
    (request,) = fake.calls("Add")
    assert request.mtu == 1450
    attachment = request.attachment
    assert (attachment.container_id, attachment.netns, attachment.ifname) == (
        "pod1",
        str(netns_path),
        "eth0",
    )
    assert (attachment.pod_namespace, attachment.pod_name, attachment.pod_uid) == (
        "shop",
        "cart-0",
        "5d1e",
    )

    if versions.allows(version, "CHECK"):
        cni.check(pod)
        (check,) = fake.calls("Check")
        assert check.attachment == attachment
        # The cached result went back to the daemon in its own shape (mtu only from 1.1.0).
        assert [ip.address for ip in check.expected.ips] == ["198.19.0.5/24", "2001:db8:1::5/64"]
        assert check.expected.interfaces[0].sandbox == str(netns_path)
    else:
        with pytest.raises(CniPluginError) as refused:
            cni.check(pod)
        assert refused.value.code == 1

    cni.delete(pod)
    (delete,) = fake.calls("Delete")
    assert delete.attachment == attachment


def test_without_namespace_in_cni_args_the_pod_is_in_default(
    daemon: Daemon, plugin_dir: Path, tmp_path: Path, netns_path: Path
) -> None:
    fake, socket_path = daemon
    cni = runtime(conflist(socket_path), plugin_dir, tmp_path)
    cni.add(Attachment("podman1", str(netns_path), args={"K8S_POD_NAME": "web"}))
    (request,) = fake.calls("Add")
    assert (request.attachment.pod_namespace, request.attachment.pod_name) == ("default", "web")


def test_del_without_netns_and_repeated(daemon: Daemon, plugin_dir: Path, tmp_path: Path) -> None:
    fake, socket_path = daemon
    cni = runtime(conflist(socket_path), plugin_dir, tmp_path)
    gone = Attachment(container_id="pod1", netns="")
    cni.delete(gone)
    fake.failures["Delete"] = Failure(grpc.StatusCode.NOT_FOUND, "no such attachment")
    cni.delete(gone)
    fake.failures["Delete"] = Failure(grpc.StatusCode.FAILED_PRECONDITION, "gone", cni_code="3")
    cni.delete(gone)
    assert [r.attachment.netns for r in fake.calls("Delete")] == ["", "", ""]


def test_status_and_gc(daemon: Daemon, plugin_dir: Path, tmp_path: Path) -> None:
    fake, socket_path = daemon
    cni = runtime(conflist(socket_path), plugin_dir, tmp_path)
    cni.status()
    assert len(fake.calls("Status")) == 1
    cni.gc([Attachment("pod1", "/run/netns/a"), Attachment("pod2", "/run/netns/b", ifname="net1")])
    (gc,) = fake.calls("GarbageCollect")
    assert [(v.container_id, v.ifname) for v in gc.valid] == [("pod1", "eth0"), ("pod2", "net1")]

    fake.status_reply.ready = False
    fake.status_reply.reason = "store unavailable: connection refused"
    with pytest.raises(CniPluginError) as not_ready:
        cni.status()
    assert not_ready.value.code == 50 and "connection refused" in not_ready.value.details


@pytest.mark.parametrize("version", ["0.4.0", "1.0.0"])
def test_status_and_gc_need_1_1(
    version: str, daemon: Daemon, plugin_dir: Path, tmp_path: Path
) -> None:
    cni = runtime(conflist(daemon[1], version), plugin_dir, tmp_path)
    for call in (cni.status, lambda: cni.gc([])):
        with pytest.raises(CniPluginError) as refused:
            call()
        assert refused.value.code == 1
    assert daemon[0].requests == []


def test_check_reports_differences(
    daemon: Daemon, plugin_dir: Path, tmp_path: Path, netns_path: Path
) -> None:
    fake, socket_path = daemon
    cni = runtime(conflist(socket_path), plugin_dir, tmp_path)
    pod = Attachment("pod1", str(netns_path))
    cni.add(pod)
    fake.differences = ["route 0.0.0.0/0 via 169.254.1.1 missing", "mtu 1500, expected 1450"]
    with pytest.raises(CniPluginError) as failed:
        cni.check(pod)
    assert failed.value.code == 100
    assert "route 0.0.0.0/0" in failed.value.details and "mtu 1500" in failed.value.details


def test_daemon_down(short_dir: Path, plugin_dir: Path, tmp_path: Path, netns_path: Path) -> None:
    cni = runtime(conflist(short_dir / "nobody.sock"), plugin_dir, tmp_path)
    pod = Attachment("pod1", str(netns_path))
    for command, call in [("ADD", cni.add), ("DEL", cni.delete), ("GC", lambda _: cni.gc([]))]:
        with pytest.raises(CniPluginError) as down:
            call(pod)
        assert (command, down.value.code) == (command, 11)
        assert "not available" in down.value.msg
    with pytest.raises(CniPluginError) as status:
        cni.status()
    assert status.value.code == 50


def test_daemon_too_slow_is_try_again_later(
    daemon: Daemon, plugin_dir: Path, tmp_path: Path, netns_path: Path
) -> None:
    fake, socket_path = daemon
    fake.held.add("Add")  # never answers while the plugin waits
    cni = runtime(conflist(socket_path, timeout=0.5), plugin_dir, tmp_path)
    with pytest.raises(CniPluginError) as late:
        cni.add(Attachment("pod1", str(netns_path)))
    assert late.value.code == 11 and "DEADLINE_EXCEEDED" in late.value.details


@pytest.mark.parametrize(
    ("status", "code"),
    [
        (grpc.StatusCode.UNAVAILABLE, "11"),  # e.g. no IPInstance in time
        (grpc.StatusCode.FAILED_PRECONDITION, "4"),  # e.g. CNI_NETNS gone
        (grpc.StatusCode.FAILED_PRECONDITION, "7"),
        (grpc.StatusCode.INTERNAL, "999"),
        (grpc.StatusCode.INTERNAL, "not-a-number"),
    ],
)
def test_daemon_error_carries_its_cni_code(
    status: grpc.StatusCode,
    code: str,
    daemon: Daemon,
    plugin_dir: Path,
    tmp_path: Path,
    *,
    netns_path: Path,
) -> None:
    fake, socket_path = daemon
    fake.failures["Add"] = Failure(status, "no address for shop/cart-0 within 30s", cni_code=code)
    cni = runtime(conflist(socket_path), plugin_dir, tmp_path)
    with pytest.raises(CniPluginError) as failed:
        cni.add(Attachment("pod1", str(netns_path)))
    assert failed.value.code == (int(code) if code.isdigit() else 999)
    assert failed.value.msg == "no address for shop/cart-0 within 30s"
    assert failed.value.details.endswith(status.name)


def test_daemon_error_without_code_is_internal(
    daemon: Daemon, plugin_dir: Path, tmp_path: Path, netns_path: Path
) -> None:
    fake, socket_path = daemon
    fake.failures["Add"] = Failure(grpc.StatusCode.INTERNAL, "boom")
    cni = runtime(conflist(socket_path), plugin_dir, tmp_path)
    with pytest.raises(CniPluginError) as failed:
        cni.add(Attachment("pod1", str(netns_path)))
    assert (failed.value.code, failed.value.msg) == (999, "boom")


def test_add_with_prev_result_passes_it_through(daemon: Daemon, netns_path: Path) -> None:
    """hybridnet is meant to be first; after another plugin it appends its part."""
    _, socket_path = daemon
    previous = {
        "cniVersion": "1.0.0",
        "interfaces": [{"name": "net0", "mac": "02:00:00:00:00:01", "sandbox": str(netns_path)}],
        "ips": [{"address": "10.9.0.2/24", "interface": 0}],
        "routes": [{"dst": "10.9.0.0/16"}],
        "dns": {"nameservers": ["10.9.0.10"]},
    }
    config = {**conflist(socket_path, "1.0.0")["plugins"][0], "cniVersion": "1.0.0",
              "name": "hybridnet", "prevResult": previous}  # fmt: skip
    done = subprocess.run(
        [str(plugin_executable())],
        input=json.dumps(config).encode(),
        env={
            "CNI_COMMAND": "ADD",
            "CNI_CONTAINERID": "pod1",
            "CNI_NETNS": str(netns_path),
            "CNI_IFNAME": "eth0",
            "CNI_PATH": "/opt/cni/bin",
        },
        capture_output=True,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    result = json.loads(done.stdout)
    assert [i["name"] for i in result["interfaces"]] == ["net0", "eth0"]
    assert [(ip["address"], ip["interface"]) for ip in result["ips"]] == [
        ("10.9.0.2/24", 0),
        ("198.19.0.5/24", 1),
        ("2001:db8:1::5/64", 1),
    ]
    assert result["routes"][0] == {"dst": "10.9.0.0/16"}
    assert result["dns"] == {"nameservers": ["10.9.0.10"]}
