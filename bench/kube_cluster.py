"""The cluster the API-server benchmarks run: a real kube-apiserver writing an audit log, the
manager as a process of a tree, and a daemon of that tree in a node namespace of the test bed.

The manager and the daemon authenticate with client certificates of their own
(:data:`bench.audit.MANAGER_USER`, :data:`bench.audit.DAEMON_USER`) in ``system:masters``, so
a tree runs whatever RBAC rules it ships: the benchmarks count requests, permissions are the
RBAC tests' job. The daemon reaches the API server as in the cluster tests, through the
bed's gateway address, where a forwarder listening inside the gateway namespace relays to the
API server on loopback; the root namespace is not changed.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from bench import audit
from bench.trees import Tree
from hack.controlplane import ControlPlane, build_binaries, tail
from hybridnet import lab as testbed
from hybridnet.api.builtin import Namespace, Pod
from hybridnet.api.meta import ObjectMeta
from hybridnet.lab.cni_runtime import Attachment
from hybridnet.store.errors import AlreadyExists
from hybridnet.store.kube import KubeStore

IPAM_NAMESPACE = "kube-system"
MASTERS = ("system:masters",)


class BenchError(RuntimeError):
    """A process of the benchmark did not start or the cluster did not settle."""


class Component:
    """A manager or daemon process, its output in a log file, ended by its own PID.

    Started in a session of its own, so :meth:`stop` signals its process group and nothing
    else; inside a namespace, ``ip netns exec`` execs the command, so the PID is the program's.
    """

    def __init__(self, name: str, argv: list[str], env: dict[str, str], log_path: Path):
        self.name = name
        self.log_path = log_path
        self._log: IO[bytes] = log_path.open("ab")
        self._popen = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )

    def alive(self) -> bool:
        return self._popen.poll() is None

    def check(self) -> None:
        if not self.alive():
            raise BenchError(
                f"{self.name} exited with {self._popen.returncode}:\n{tail(self.log_path)}"
            )

    def stop(self, timeout: float = 20.0) -> None:
        if self.alive():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self._popen.pid, signal.SIGTERM)
            try:
                self._popen.wait(timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self._popen.pid, signal.SIGKILL)
                self._popen.wait(timeout)
        self._log.close()


class Cluster:
    """A started control plane with audit on, the tree's CRDs, and an admin store."""

    def __init__(self, tree: Tree, work: Path):
        self.tree = tree
        self.work = work
        self.audit_path = work / "audit.log"
        policy = audit.write_policy(work / "audit-policy.yaml")
        self.plane = ControlPlane(
            bin_dir=build_binaries(), apiserver_flags=audit.apiserver_flags(policy, self.audit_path)
        )
        self.audit = audit.AuditLog(self.audit_path)
        self._store: KubeStore | None = None

    def start(self) -> None:
        self.plane.start()
        self.plane.install_crds(self.tree.path / "deploy" / "crds")
        self._store = KubeStore.from_kubeconfig(self.plane.kubeconfig_path)
        self.namespace(IPAM_NAMESPACE)

    def stop(self) -> None:
        if self._store is not None:
            self._store.close()
        self.plane.stop()

    @property
    def store(self) -> KubeStore:
        """The bench's own admin client (its requests are not in the audit log)."""
        assert self._store is not None, "start() first"
        return self._store

    def namespace(self, name: str) -> None:
        with contextlib.suppress(AlreadyExists):
            self.store.create(Namespace(ObjectMeta(name=name)))

    def kubeconfig(self, user: str, server_url: str | None = None) -> Path:
        suffix = "local" if server_url is None else "exposed"
        return self.plane.client_kubeconfig(
            user, MASTERS, server_url=server_url, path=self.work / f"{user}-{suffix}.kubeconfig"
        )

    def start_manager(self, *extra: str) -> Component:
        """The tree's manager, leader-elected as it is deployed, in the root namespace."""
        argv = self.tree.module(
            "hybridnet.manager.main",
            "--kubeconfig",
            str(self.kubeconfig(audit.MANAGER_USER)),
            "--namespace",
            IPAM_NAMESPACE,
            "--metrics-address",
            "",
            "--log-level",
            "warning",
            *extra,
        )
        return Component("manager", argv, self.tree.env(), self.work / "manager.log")


@contextlib.contextmanager
def cluster(tree: Tree) -> Iterator[Cluster]:
    with tempfile.TemporaryDirectory(prefix="hnt-bench-kube-") as tmp:
        running = Cluster(tree, Path(tmp))
        running.start()
        try:
            yield running
        finally:
            running.stop()


def start_daemon(
    tree: Tree, node: testbed.Namespace, socket: Path, log_path: Path, *args: str
) -> Component:
    """The tree's daemon inside ``node``, once its socket exists."""
    argv = [
        "ip",
        "netns",
        "exec",
        node.name,
        *tree.module("hybridnet.daemon.main", "--socket", str(socket), "--log-level", "warning"),
        *args,
    ]
    daemon = Component(f"daemon in {node.name}", argv, tree.env(), log_path)
    deadline = time.monotonic() + 30
    while not socket.exists():
        daemon.check()
        if time.monotonic() > deadline:
            daemon.stop()
            raise BenchError(f"daemon made no socket within 30 s:\n{tail(log_path)}")
        time.sleep(0.05)
    return daemon


def start_kube_daemon(
    cluster: Cluster, node: testbed.Namespace, node_name: str, server_url: str, work: Path
) -> tuple[Component, Path]:
    """The tree's daemon of ``node_name`` on the API server at ``server_url``; and its socket."""
    socket = work / "run" / "daemon.sock"
    daemon = start_daemon(
        cluster.tree,
        node,
        socket,
        work / "daemon.log",
        "--node-name",
        node_name,
        "--kubeconfig",
        str(cluster.kubeconfig(audit.DAEMON_USER, server_url)),
        "--ipam-namespace",
        IPAM_NAMESPACE,
    )
    return daemon, socket


def install_plugin(tree: Tree, socket: Path, directory: Path) -> tuple[Path, dict[str, Any]]:
    """``hybridnet-daemon install`` of the tree: its CNI_PATH directory and the conflist it
    wrote, which the benchmarks hand to their runtime as a node's runtime would read it."""
    bin_dir, conf_dir = directory / "bin", directory / "net.d"
    tree.run(
        "-m",
        "hybridnet.daemon.main",
        "--socket",
        str(socket),
        "install",
        "--cni-bin-dir",
        str(bin_dir),
        "--cni-conf-dir",
        str(conf_dir),
    )
    (conflist,) = sorted(conf_dir.glob("*.conflist"))
    loaded: dict[str, Any] = json.loads(conflist.read_text())
    return bin_dir, loaded


def kubelet_attachment(pod_netns: testbed.Namespace, pod: Pod) -> Attachment:
    """What containerd hands the plugin for ``pod``'s sandbox: a 64-hex-digit container id,
    the sandbox's netns, and the pod's identity in CNI_ARGS."""
    container_id = secrets.token_hex(32)
    return Attachment(
        container_id=container_id,
        netns=pod_netns.path,
        ifname="eth0",
        args={
            "IgnoreUnknown": "1",
            "K8S_POD_NAMESPACE": pod.metadata.namespace or "default",
            "K8S_POD_NAME": pod.metadata.name,
            "K8S_POD_INFRA_CONTAINER_ID": container_id,
            "K8S_POD_UID": pod.metadata.uid or "",
        },
    )
