"""hybridnet-manager started against a real kube-apiserver that is not ready to serve it.

Two things a fresh cluster really does to a manager that starts with it:

* the CRDs are not installed (yet, or ever): listing Networks answers 404, which waiting does
  not cure, so the process exits non-zero with one line naming it;
* the API server answers 429 "storage is (re)initializing" while its watch cache for a kind
  is (re)built (right after it starts, or after a CRD is established): the manager must wait
  that out. A fresh watch cache is ready within milliseconds here, too fast to start a
  process into, so the test holds it there: an undecodable object written straight into
  etcd under the Networks' prefix makes the cache fail to build, and the API server answers
  429 to every list and watch of Networks until the object is removed (then within a second
  the cache is built and the answers are 200 again). The manager must log its retries, keep
  running, and serve once the API server does.

The control plane is this module's own, with the watch cache on (as in production; the
session's shared one has it off, see tests/cluster/controlplane.py) and nothing installed.
"""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from hack.controlplane import ControlPlane
from hybridnet.api.resources import IPInstance, Network
from hybridnet.lab.manager import IPAM_NAMESPACE, Harness, manager_argv
from hybridnet.store.errors import StoreError, Unavailable
from hybridnet.store.kube import KubeStore
from tests.cluster.conftest import control_plane_binaries
from tests.store_contract import wait_until

CORRUPT_KEY = b"/registry/networking.alibaba.com/networks/zz-undecodable"
INITIALIZING = "storage is (re)initializing"


@pytest.fixture(scope="module")
def fresh_plane() -> Iterator[ControlPlane]:
    if os.geteuid() != 0:
        pytest.skip("cluster tier: needs root")
    plane = ControlPlane(bin_dir=control_plane_binaries(), watch_cache=True)
    plane.start()
    try:
        yield plane
    finally:
        plane.stop()


def etcd(plane: ControlPlane, path: str, body: dict[str, str]) -> None:
    """A call to etcd's JSON gateway (keys and values are base64)."""
    request = urllib.request.Request(  # noqa: S310  (the control plane's own http:// URL)
        f"{plane.etcd_url}{path}",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
        response.read()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def log_lines(log: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in log.read_text().splitlines() if line.startswith("{")]


def logged(log: Path, msg: str, text: str = "") -> bool:
    return any(line["msg"] == msg and text in json.dumps(line) for line in log_lines(log))


def list_answer(store: KubeStore) -> str:
    """What listing Networks gets now: "ok", or the error."""
    try:
        store.list(Network)
    except StoreError as exc:
        return f"{type(exc).__name__}: {exc}"
    return "ok"


def start_manager(plane: ControlPlane, tmp_path: Path, log: Path) -> subprocess.Popen[bytes]:
    argv = manager_argv(
        plane.kubeconfig_path, IPAM_NAMESPACE, f"start-{uuid.uuid4().hex[:6]}",
        "--metrics-address", "",
    )  # fmt: skip
    with log.open("wb") as out:
        return subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT)


def stop(process: subprocess.Popen[bytes]) -> int:
    if process.poll() is None:
        os.kill(process.pid, signal.SIGTERM)
    try:
        return process.wait(30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
        raise


def test_the_manager_exits_naming_a_missing_crd(fresh_plane: ControlPlane, tmp_path: Path) -> None:
    log = tmp_path / "manager.log"
    process = start_manager(fresh_plane, tmp_path, log)
    try:
        code = process.wait(60)
    finally:
        stop(process)
    assert code == 1, log.read_text()
    errors = [line for line in log_lines(log) if line["level"] == "error"]
    assert len(errors) == 1, log.read_text()
    assert errors[0]["msg"] == "cannot start"
    assert errors[0]["step"] == "rebuild the IPAM state"
    assert "NotFound: list networks" in str(errors[0]["error"]), errors[0]
    assert "CRD installed" in str(errors[0]["error"])


def test_the_manager_waits_out_429_and_then_serves(
    fresh_plane: ControlPlane, tmp_path: Path
) -> None:
    fresh_plane.install_crds()
    admin = KubeStore.from_kubeconfig(fresh_plane.kubeconfig_path)
    log = tmp_path / "manager.log"
    process = None
    try:
        etcd(fresh_plane, "/v3/kv/put", {"key": b64(CORRUPT_KEY), "value": b64(b"not json")})
        wait_until(lambda: INITIALIZING in list_answer(admin), "the API server answering 429")
        with pytest.raises(Unavailable):  # what the manager's store makes of it
            admin.list(Network)

        process = start_manager(fresh_plane, tmp_path, log)
        wait_until(
            lambda: logged(log, "start-up step failed, retrying", INITIALIZING),
            "the manager retrying a 429",
            timeout=60,
        )
        wait_until(
            lambda: logged(log, "start-up step failed, retrying", '"attempt": 2'),
            "a second retry",
            timeout=60,
        )
        assert process.poll() is None, log.read_text()

        etcd(fresh_plane, "/v3/kv/deleterange", {"key": b64(CORRUPT_KEY)})
        wait_until(lambda: logged(log, "manager serving"), "the manager serving", timeout=60)

        run = uuid.uuid4().hex[:6]
        harness = Harness(admin, run)
        harness.namespace(IPAM_NAMESPACE)
        harness.namespace(f"ns-{run}")
        harness.node(f"node-{run}")
        harness.underlay(f"u-{run}")
        harness.subnet(f"s-{run}", f"u-{run}", "198.18.200.0/24")
        harness.pod(f"ns-{run}", "web", node=f"node-{run}")
        (instance,) = harness.wait_instances(f"ns-{run}", "web", 1, timeout=60)
        assert isinstance(instance, IPInstance)
        assert instance.spec.subnet == f"s-{run}"
    finally:
        etcd(fresh_plane, "/v3/kv/deleterange", {"key": b64(CORRUPT_KEY)})
        code = stop(process) if process is not None else 0
        admin.close()
    assert code == 0, log.read_text()
    errors = [line for line in log_lines(log) if line["level"] == "error"]
    assert errors == [], errors
