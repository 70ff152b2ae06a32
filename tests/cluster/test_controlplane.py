"""The test control plane is a real, usable cluster API: version, RBAC, CRDs, restarts,
compaction, reach from inside a node namespace, and no process left behind."""

from __future__ import annotations

import fcntl
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from hack import controlplane
from hack.controlplane import ControlPlane
from hack.controlplane.errors import WorkDirInUse
from hack.controlplane.state import (
    LOCK_FILE,
    STATE_FILE,
    process_argv,
    remove_stale_control_planes,
)
from hybridnet import lab as testbed

GO_MOD = controlplane.REPO_ROOT / "hack" / "controlplane" / "go.mod"
CONTROLPLANE_CLI = [sys.executable, "-m", "hack.controlplane"]
"""Run from the repository root (``hack`` is not an installed package)."""


def pinned_kubernetes_version() -> str:
    for line in GO_MOD.read_text().splitlines():
        fields = line.split()
        if len(fields) >= 2 and fields[0] == "k8s.io/kubernetes":
            return fields[1]
    raise AssertionError(f"k8s.io/kubernetes is not pinned in {GO_MOD}")


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def config_map(name: str, data: dict[str, str]) -> client.V1ConfigMap:
    return client.V1ConfigMap(metadata=client.V1ObjectMeta(name=name), data=data)


def resource_version(obj: client.V1ConfigMap) -> str:
    assert obj.metadata is not None and obj.metadata.resource_version is not None
    return obj.metadata.resource_version


def raw(response: object) -> Any:
    """What a ``_preload_content=False`` call really returns: urllib3's response."""
    return response


def process_alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"


def test_api_server_answers_version_of_the_pinned_release(kube_api: client.ApiClient) -> None:
    version = client.VersionApi(kube_api).get_code()
    assert version.git_version == pinned_kubernetes_version() == "v1.34.4"


def test_rbac_denies_a_user_without_bindings_and_admin_is_allowed(
    control_plane: ControlPlane, kube_api: client.ApiClient
) -> None:
    client.CoreV1Api(kube_api).list_node()  # admin (system:masters) may

    user = unique("alice")
    user_api = control_plane.api_client(control_plane.client_kubeconfig(user, ["developers"]))
    try:
        with pytest.raises(ApiException) as denied:
            client.CoreV1Api(user_api).list_node()
        assert denied.value.status == 403
        message = json.loads(str(denied.value.body))["message"]
        assert f'User "{user}" cannot list resource "nodes"' in message

        # A binding lets the same certificate in: the 403 came from RBAC, not from a broken cert.
        rbac = client.RbacAuthorizationV1Api(kube_api)
        rbac.create_cluster_role(
            client.V1ClusterRole(
                metadata=client.V1ObjectMeta(name=user),
                rules=[client.V1PolicyRule(api_groups=[""], resources=["nodes"], verbs=["list"])],
            )
        )
        rbac.create_cluster_role_binding(
            client.V1ClusterRoleBinding(
                metadata=client.V1ObjectMeta(name=user),
                role_ref=client.V1RoleRef(
                    api_group="rbac.authorization.k8s.io", kind="ClusterRole", name=user
                ),
                subjects=[
                    client.RbacV1Subject(
                        api_group="rbac.authorization.k8s.io", kind="User", name=user
                    )
                ],
            )
        )
        deadline = time.monotonic() + 20
        while True:
            try:
                client.CoreV1Api(user_api).list_node()
                break
            except ApiException as exc:
                # The authorizer reads bindings from an informer: allow it to catch up.
                if exc.status != 403 or time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        rbac.delete_cluster_role_binding(user)
        rbac.delete_cluster_role(user)
    finally:
        controlplane.close_api_client(user_api)


def test_a_service_account_kubeconfig_authenticates_with_a_bound_token(
    control_plane: ControlPlane, kube_api: client.ApiClient
) -> None:
    name = unique("component")
    core = client.CoreV1Api(kube_api)
    core.create_namespaced_service_account(
        "default", client.V1ServiceAccount(metadata=client.V1ObjectMeta(name=name))
    )
    sa_api = control_plane.api_client(control_plane.service_account_kubeconfig("default", name))
    try:
        review = client.AuthenticationV1Api(sa_api).create_self_subject_review(
            client.V1SelfSubjectReview()
        )
        assert review.status is not None and review.status.user_info is not None
        assert review.status.user_info.username == f"system:serviceaccount:default:{name}"
        with pytest.raises(ApiException) as denied:  # no RBAC rules bound to it
            client.CoreV1Api(sa_api).list_node()
        assert denied.value.status == 403
    finally:
        controlplane.close_api_client(sa_api)
        core.delete_namespaced_service_account(name, "default")


CRD_YAML = """\
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: widgets.testing.hybridnet.example
spec:
  group: testing.hybridnet.example
  scope: Namespaced
  names: {plural: widgets, singular: widget, kind: Widget, listKind: WidgetList}
  versions:
    - name: v1
      served: true
      storage: true
      schema:
        openAPIV3Schema:
          type: object
          properties:
            spec:
              type: object
              properties:
                size: {type: integer, minimum: 1}
---
# Not a CRD: skipped by install_crds (a directory may hold a kustomization, for example).
apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
"""


def test_crd_from_a_directory_is_established_and_serves_objects(
    control_plane: ControlPlane, kube_api: client.ApiClient, tmp_path: Path
) -> None:
    (tmp_path / "widgets.yaml").write_text(CRD_YAML)
    (tmp_path / "notes.txt").write_text("not yaml, not read")
    name = "widgets.testing.hybridnet.example"
    extensions = client.ApiextensionsV1Api(kube_api)
    try:
        assert control_plane.install_crds(tmp_path) == [name]
        # Applying again replaces it in place.
        assert control_plane.install_crds(tmp_path) == [name]

        crd = json.loads(
            raw(extensions.read_custom_resource_definition(name, _preload_content=False)).data
        )
        established = [c for c in crd["status"]["conditions"] if c["type"] == "Established"]
        assert established[0]["status"] == "True"

        objects = client.CustomObjectsApi(kube_api)
        group, version, plural = "testing.hybridnet.example", "v1", "widgets"
        objects.create_namespaced_custom_object(
            group,
            version,
            "default",
            plural,
            {
                "apiVersion": f"{group}/{version}",
                "kind": "Widget",
                "metadata": {"name": "w1"},
                "spec": {"size": 3},
            },
        )
        got: Any = objects.get_namespaced_custom_object(group, version, "default", plural, "w1")
        assert got["spec"] == {"size": 3}
        # The schema is enforced by the real API server.
        with pytest.raises(ApiException) as invalid:
            objects.create_namespaced_custom_object(
                group,
                version,
                "default",
                plural,
                {
                    "apiVersion": f"{group}/{version}",
                    "kind": "Widget",
                    "metadata": {"name": "w2"},
                    "spec": {"size": 0},
                },
            )
        assert invalid.value.status == 422
    finally:
        extensions.delete_custom_resource_definition(name)


def test_install_crds_of_an_empty_or_missing_directory_does_nothing(
    control_plane: ControlPlane, tmp_path: Path
) -> None:
    assert control_plane.install_crds(tmp_path) == []
    assert control_plane.install_crds(tmp_path / "absent") == []


def test_restart_apiserver_keeps_data_port_and_etcd(control_plane: ControlPlane) -> None:
    name = unique("survivor")
    before = control_plane.pids
    api = control_plane.api_client()
    try:
        created = client.CoreV1Api(api).create_namespaced_config_map(
            "default", config_map(name, {"k": "v"})
        )
    finally:
        controlplane.close_api_client(api)

    control_plane.restart_apiserver()

    after = control_plane.pids
    assert after["etcd"] == before["etcd"]
    assert after["kube-apiserver"] != before["kube-apiserver"]
    assert not process_alive(before["kube-apiserver"])
    api = control_plane.api_client()  # same kubeconfig, same URL
    try:
        read = client.CoreV1Api(api).read_namespaced_config_map(name, "default")
        assert read.metadata is not None and created.metadata is not None
        assert (read.metadata.uid, read.data) == (created.metadata.uid, {"k": "v"})
        client.CoreV1Api(api).delete_namespaced_config_map(name, "default")
    finally:
        controlplane.close_api_client(api)


def test_watch_from_before_a_compaction_is_gone(
    control_plane: ControlPlane, kube_api: client.ApiClient
) -> None:
    """With the watch cache off (ControlPlane's default), etcd itself answers the watch."""
    core = client.CoreV1Api(kube_api)
    name = unique("compacted")
    old = core.create_namespaced_config_map("default", config_map(name, {"n": "0"}))
    for n in range(1, 4):
        latest = core.patch_namespaced_config_map(name, "default", {"data": {"n": str(n)}})

    revision = control_plane.compact_etcd()
    assert revision >= int(resource_version(latest))
    assert control_plane.compact_etcd() >= revision  # compacting again is harmless

    try:
        response = raw(
            core.list_namespaced_config_map(
                "default",
                watch=True,
                resource_version=resource_version(old),
                timeout_seconds=5,
                _preload_content=False,
            )
        )
    except ApiException as exc:  # some API server versions refuse before streaming
        assert exc.status == 410
    else:
        # A watch that fails after it started is a 200 stream whose first event is the error.
        first = json.loads(response.data.decode().splitlines()[0])
        response.release_conn()
        assert first["type"] == "ERROR"
        assert first["object"]["code"] == 410
        assert first["object"]["reason"] == "Expired"

    # From the current resourceVersion a watch works (and sees a change).
    response = raw(
        core.list_namespaced_config_map(
            "default",
            watch=True,
            resource_version=resource_version(latest),
            field_selector=f"metadata.name={name}",
            timeout_seconds=30,
            _preload_content=False,
        )
    )
    try:
        core.patch_namespaced_config_map(name, "default", {"data": {"n": "after"}})
        event = json.loads(next(iter(response)))
    finally:
        response.close()
        response.release_conn()
    assert (event["type"], event["object"]["data"]["n"]) == ("MODIFIED", "after")
    core.delete_namespaced_config_map(name, "default")


@pytest.mark.root
def test_api_server_is_reachable_from_a_node_namespace(
    control_plane: ControlPlane, fabric: testbed.Fabric, tmp_path: Path
) -> None:
    """The gateway namespace listens on 198.18.0.1; the root namespace stays untouched."""
    root_listeners_before = testbed.run(["ss", "-Hltn"]).stdout
    with control_plane.exposed(fabric.gateway.name, fabric.gateway_ipv4, 6443) as url:
        assert url == "https://198.18.0.1:6443"
        assert "198.18.0.1:6443" in fabric.gateway.exec(["ss", "-Hltn"]).stdout
        assert "198.18.0.1" not in testbed.run(["ss", "-Hltn"]).stdout
        assert "198.18.0.1" not in root_listeners_before

        kubeconfig = control_plane.kubeconfig_for(url)
        kubectl = [
            str(control_plane.kubectl),
            "--kubeconfig",
            str(kubeconfig),
            "--cache-dir",
            str(tmp_path / "kube-cache"),
        ]
        node = fabric.nodes[0]
        version = node.exec([*kubectl, "get", "--raw", "/version"])
        assert json.loads(version.stdout)["gitVersion"] == pinned_kubernetes_version()
        # Several requests on the relayed connections, with client-certificate auth end to end.
        whoami = node.exec([*kubectl, "auth", "whoami", "-o", "json"])
        assert json.loads(whoami.stdout)["status"]["userInfo"]["username"] == "admin"
        namespaces = node.exec([*kubectl, "get", "namespaces", "-o", "name"])
        assert "namespace/default" in namespaces.stdout.split()
    assert "198.18.0.1:6443" not in fabric.gateway.exec(["ss", "-Hltn"]).stdout


def test_expose_refuses_an_address_the_certificate_does_not_name(
    control_plane: ControlPlane,
) -> None:
    with pytest.raises(controlplane.ControlPlaneError, match="extra_sans"):
        control_plane.expose_in_namespace("does-not-matter", "198.18.0.99", 6443)
    with pytest.raises(controlplane.ControlPlaneError, match="no network namespace"):
        control_plane.expose_in_namespace("hybridnet-no-such-netns", "198.18.0.1", 6443)


def test_up_and_down_command_line_leave_nothing_running(
    control_plane: ControlPlane, tmp_path: Path
) -> None:
    """``python -m hack.controlplane up`` leaves the processes running; ``down`` ends them."""
    work_dir = tmp_path / "cp"
    up = subprocess.run(
        [*CONTROLPLANE_CLI, "up", "--dir", str(work_dir), "--no-crds"],
        cwd=controlplane.REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert up.returncode == 0, up.stdout + up.stderr
    assert f"export KUBECONFIG={work_dir / 'kubeconfig'}" in up.stdout
    state = json.loads((work_dir / STATE_FILE).read_text())
    pids = [entry["pid"] for entry in state["processes"].values()]
    assert len(pids) == 2 and all(process_alive(pid) for pid in pids)

    kubectl = [str(control_plane.kubectl), "--kubeconfig", str(work_dir / "kubeconfig")]
    done = subprocess.run(
        [*kubectl, "--cache-dir", str(tmp_path / "kc"), "get", "--raw", "/readyz"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.stdout == "ok", done.stderr

    again = subprocess.run(
        [*CONTROLPLANE_CLI, "up", "--dir", str(work_dir)],
        cwd=controlplane.REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert again.returncode == 1 and "already running" in again.stdout

    down = subprocess.run(
        [*CONTROLPLANE_CLI, "down", "--dir", str(work_dir)],
        cwd=controlplane.REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert down.returncode == 0, down.stdout + down.stderr
    assert not any(process_alive(pid) for pid in pids)
    assert not work_dir.exists()


STARTER = textwrap.dedent(
    """
    import sys, time
    sys.path.insert(0, {root!r})
    from hack.controlplane import ControlPlane
    plane = ControlPlane(bin_dir=__import__("pathlib").Path({bin_dir!r}))
    plane.start()
    print(plane.work_dir, plane.pids["etcd"], plane.pids["kube-apiserver"], flush=True)
    time.sleep(300)
    """
)


def test_processes_of_a_crashed_owner_are_stopped_by_the_next_start(
    control_plane: ControlPlane,
) -> None:
    """An owner killed with SIGKILL cannot stop its children; the next start does."""
    owner = subprocess.Popen(
        [
            sys.executable,
            "-c",
            STARTER.format(root=str(controlplane.REPO_ROOT), bin_dir=str(control_plane.bin_dir)),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert owner.stdout is not None
        work_dir, *pids = owner.stdout.readline().split()
    finally:
        os.kill(owner.pid, signal.SIGKILL)
        owner.wait()
        if owner.stdout is not None:
            owner.stdout.close()
    assert Path(work_dir).is_dir()
    assert all(process_alive(int(pid)) for pid in pids)

    removed = remove_stale_control_planes()

    assert Path(work_dir) in removed
    assert not Path(work_dir).exists()
    assert not any(process_alive(int(pid)) for pid in pids)
    # Our own, live control plane was left alone.
    assert control_plane.work_dir not in removed
    assert set(control_plane.pids) == {"etcd", "kube-apiserver"}


def test_a_failed_start_says_why_and_leaves_nothing_running(
    control_plane: ControlPlane, tmp_path: Path
) -> None:
    """A kube-apiserver that cannot start: the error carries its log; etcd is stopped again."""
    work_dir = tmp_path / "broken"
    broken = ControlPlane(
        bin_dir=control_plane.bin_dir, work_dir=work_dir, apiserver_flags={"no-such-flag": "1"}
    )
    with pytest.raises(controlplane.ControlPlaneError) as failed:
        broken.start()
    message = str(failed.value)
    assert "kube-apiserver not ready (exited with status" in message
    assert "unknown flag: --no-such-flag" in message
    assert broken.pids == {}
    running_in_work_dir = [
        pid
        for pid in map(int, filter(str.isdigit, os.listdir("/proc")))
        if str(work_dir) in " ".join(process_argv(pid) or [])
    ]
    assert running_in_work_dir == []
    assert "unknown flag" in (work_dir / "kube-apiserver.log").read_text()


def test_a_work_dir_locked_by_another_control_plane_is_refused_and_left_alone(
    control_plane: ControlPlane, tmp_path: Path
) -> None:
    work_dir = tmp_path / "taken"
    work_dir.mkdir()
    (work_dir / "theirs.txt").write_text("kept")
    with (work_dir / LOCK_FILE).open("w") as held:
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        second = ControlPlane(bin_dir=control_plane.bin_dir, work_dir=work_dir)
        with pytest.raises(WorkDirInUse, match="in use by another control plane"):
            second.start()
    assert (work_dir / "theirs.txt").read_text() == "kept"
    assert second.pids == {}


def test_up_with_a_corrupt_state_file_says_so_in_one_line(tmp_path: Path) -> None:
    work_dir = tmp_path / "corrupt"
    work_dir.mkdir()
    (work_dir / STATE_FILE).write_text("{not json")
    result = subprocess.run(
        [sys.executable, "-m", "hack.controlplane", "up", "--dir", str(work_dir)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=controlplane.REPO_ROOT,
    )
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1, result.stderr
    assert "is not a control plane's state" in result.stderr
