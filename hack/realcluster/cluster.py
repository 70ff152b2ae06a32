"""A real Kubernetes cluster on the lab's fabric: the control plane, the scheduler, the
controller manager, and N nodes running the real kubelet and containerd.

Layout (the lab cluster's, :mod:`hybridnet.lab.cluster`, with real nodes)::

    root ns     etcd, kube-apiserver (Node,RBAC; NodeRestriction and ServiceAccount admission),
                kube-scheduler, kube-controller-manager: all on 127.0.0.1
    outside ns  eth0 198.18.100.10/24, 2001:db8:100::10/64: a host beyond the fabric
    gateway ns  eth1 198.18.100.1 / eth0 198.18.0.1; the API server is served at
                198.18.0.1:6443 by a relay (:meth:`ControlPlane.expose_in_namespace`)
    fabric ns   br0
    node i ns   eth0 198.18.0.(9+i): containerd + kubelet (:mod:`hybridnet.lab.realnode`),
                kubelet as ``system:node:nodeI`` with a client certificate of the test CA

Nothing changes in the root namespace. Stand-ins, each explained where it is made: the relay
into the gateway namespace (the API server listens on our loopback), the egress proxy out of
it (:mod:`hack.realcluster.egress`: the API server's ``cluster`` traffic, i.e. kubelet's 10250
for ``kubectl logs/exec`` and webhooks at their endpoints, dialled from the gateway namespace,
as konnectivity would), the images written from files on this machine
(:mod:`hybridnet.lab.realnode_images`), and, until hybridnet's chart is installed, the
reference bridge chain (:mod:`hack.realcluster.cni`). Pod addresses of that chain are not
routed on the fabric, so only host-network pods are reachable from the API server.

A crashed run leaves: namespaces (removed by the lab's stale-run cleanup, which kills what runs
in them), node cgroup trees with the containers
(:func:`~hybridnet.lab.realnode.remove_stale_cgroups`), and this cluster's work directory with
the PIDs of etcd, kube-apiserver, the scheduler and the controller manager, which
:func:`remove_stale_clusters` stops.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import shutil
import ssl
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from pathlib import Path
from types import TracebackType
from typing import IO, TYPE_CHECKING, Any

from hack.controlplane import ControlPlane, build_binaries, close_api_client, free_port, tail
from hack.controlplane.errors import ControlPlaneError
from hack.controlplane.state import stop_recorded
from hack.realcluster.binaries import build_node_binaries
from hack.realcluster.cni import CniSetup
from hack.realcluster.egress import ClusterEgress
from hack.realcluster.workloads import wait_default_service_account
from hybridnet.lab.cluster_model import OUTSIDE_GATEWAY, OUTSIDE_V4, OUTSIDE_V6
from hybridnet.lab.fabric import Fabric
from hybridnet.lab.netns import Namespace, TestbedRun, connect, create_namespace
from hybridnet.lab.processes import Process
from hybridnet.lab.progress import Progress
from hybridnet.lab.realnode import (
    NodeBinaries,
    RealNode,
    RealNodeSpec,
    remove_stale_cgroups,
)
from hybridnet.lab.realnode_images import (
    PAUSE_IMAGE,
    busybox_image,
    pause_image,
    write_oci_archive,
)

if TYPE_CHECKING:
    from kubernetes.client import ApiClient

TEMP_PREFIX = "hybridnet-rc-"
STATE_FILE = "controlplane.json"
"""Same name and format as the control plane's, so its :func:`stop_recorded` reads it."""
LOCK_FILE = "realcluster.lock"
APISERVER_FLAGS: Mapping[str, str | None] = {
    # Real kubelets: the Node authorizer and NodeRestriction limit each to its own node.
    "authorization-mode": "Node,RBAC",
    "enable-admission-plugins": "NodeRestriction",
    # The controller manager creates every namespace's default ServiceAccount here, so the
    # ServiceAccount admission plugin the bare control plane turns off is on again.
    "disable-admission-plugins": None,
    # Webhooks are dialled at their Service's endpoints (a host-network manager's node address),
    # not at a ClusterIP no kube-proxy serves; kubelets at their InternalIP, not their name.
    "enable-aggregator-routing": "true",
    "kubelet-preferred-address-types": "InternalIP",
}
CONTROL_PLANE_DIR = "controlplane"
"""The control plane's work directory inside the cluster's (known before it starts)."""
STOP_TIMEOUT = 15.0
API_PORT_FOR_NODES = 6443
"""The API server's port at the gateway address (198.18.0.1): fixed, so host-network pods can
be pointed at ``https://198.18.0.1:6443`` (there is no kube-proxy for the ``kubernetes``
Service's ClusterIP). The gateway namespace is the run's own, so the port is always free."""


def _lock_is_free(path: Path) -> bool:
    with path.open("a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        fcntl.flock(handle, fcntl.LOCK_UN)
    return True


def remove_stale_clusters() -> list[Path]:
    """Stop the scheduler and controller manager of clusters whose owner died; remove their
    directories (node trees and namespaces are cleaned by the lab, see the module docstring)."""
    removed = []
    for work_dir in Path(tempfile.gettempdir()).glob(f"{TEMP_PREFIX}*"):
        lock = work_dir / LOCK_FILE
        with contextlib.suppress(OSError):
            if lock.exists() and not _lock_is_free(lock):
                continue
            stop_recorded(work_dir)
            stop_recorded(work_dir / CONTROL_PLANE_DIR)
            shutil.rmtree(work_dir, ignore_errors=True)
            removed.append(work_dir)
    return removed


class RealCluster:
    """The cluster of one lab run; :meth:`start` builds it, :meth:`stop` removes it all.

    ``cni`` is installed on every node before kubelet starts (None: nodes register but stay
    NotReady until something installs a network, as a chart's DaemonSet would).
    """

    def __init__(
        self,
        run: TestbedRun,
        *,
        nodes: int = 3,
        cni: CniSetup | None = None,
        install_crds: bool = False,
        max_pods: int = 110,
        progress: Progress | None = None,
        ready_timeout: float = 120.0,
    ) -> None:
        self.run = run
        self.node_count = nodes
        self.cni = cni
        self.install_crds = install_crds
        self.max_pods = max_pods
        self.progress = progress or Progress()
        self.ready_timeout = ready_timeout
        self.control_plane: ControlPlane | None = None
        self.egress: ClusterEgress | None = None
        self.fabric: Fabric | None = None
        self.outside: Namespace | None = None
        self.nodes: list[RealNode] = []
        self.components: dict[str, Process] = {}
        self.api_url_for_nodes = ""
        self.work_dir: Path | None = None
        self._lock: IO[str] | None = None
        self._binaries: NodeBinaries | None = None
        self._images: list[Path] = []

    def __enter__(self) -> RealCluster:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def plane(self) -> ControlPlane:
        if self.control_plane is None:
            raise ControlPlaneError("the cluster is not started")
        return self.control_plane

    @property
    def directory(self) -> Path:
        if self.work_dir is None:
            raise ControlPlaneError("the cluster is not started")
        return self.work_dir

    def node(self, name: str) -> RealNode:
        for node in self.nodes:
            if node.spec.name == name:
                return node
        raise ControlPlaneError(f"no node {name}")

    # ----------------------------------------------------------------- building

    def start(self) -> None:
        """Control plane, fabric, scheduler and controller manager, nodes (registered, and
        Ready when a CNI setup was given)."""
        try:
            with self.progress.step("binaries (cached builds)"):
                remove_stale_clusters()
                remove_stale_cgroups()
                control_plane_bin = build_binaries()
                self._binaries = NodeBinaries(build_node_binaries())
            self.work_dir = Path(tempfile.mkdtemp(prefix=TEMP_PREFIX))
            self._lock = (self.work_dir / LOCK_FILE).open("w")
            fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            with self.progress.step("fabric: switch, gateway, outside host"):
                self.fabric = Fabric(self.run)
                self.outside = self._build_outside(self.fabric)
                self.egress = ClusterEgress(self.work_dir / "egress.sock", self.fabric.gateway.path)
            with self.progress.step("control plane"):
                self.control_plane = ControlPlane(
                    bin_dir=control_plane_bin,
                    work_dir=self.work_dir / CONTROL_PLANE_DIR,
                    apiserver_flags=self._apiserver_flags(),
                )
                self.control_plane.start()
                if self.install_crds:
                    self.control_plane.install_crds()
                self.api_url_for_nodes = self.plane.expose_in_namespace(
                    self.fabric.gateway.name, self.fabric.gateway_ipv4, API_PORT_FOR_NODES
                )
            with self.progress.step("scheduler and controller manager"):
                self._start_components()
            with self.progress.step("images"):
                self._write_images()
            with self.progress.step(f"{self.node_count} nodes: containerd + kubelet"):
                for _ in range(self.node_count):
                    self.add_node()
            with self.progress.step("nodes registered, default ServiceAccount"):
                self.wait_nodes(ready=False)
                with self.api() as api_client:
                    # The controller manager's first visible work: pods are admitted from now.
                    wait_default_service_account(api_client, "default", self.ready_timeout)
            if self.cni is not None:
                with self.progress.step(f"pod network {self.cni.name}; nodes Ready"):
                    self.cni.after_nodes(self)
                    self.wait_nodes(ready=True)
        except BaseException:
            self.stop()
            raise

    def _apiserver_flags(self) -> dict[str, str | None]:
        """:data:`APISERVER_FLAGS`, the egress into the cluster network, and kubelet access."""
        if self.egress is None:
            raise ControlPlaneError("the egress proxy is not running")
        egress_config = self.directory / "egress-selector.json"
        egress_config.write_text(self.egress.config_document() + "\n")
        # The control plane's admin certificate (system:masters), written by its start before
        # kube-apiserver runs: kubelet's webhook authorizer lets it read logs and exec.
        pki = self.directory / CONTROL_PLANE_DIR / "pki"
        return {
            **APISERVER_FLAGS,
            "egress-selector-config-file": str(egress_config),
            "kubelet-client-certificate": str(pki / "admin.crt"),
            "kubelet-client-key": str(pki / "admin.key"),
        }

    def _build_outside(self, fabric: Fabric) -> Namespace:
        """The host beyond the gateway, as in the lab's virtual cluster."""
        outside = create_namespace(self.run.name("outside"))
        gateway = fabric.gateway
        connect(gateway, "eth1", outside, "eth0")
        v4, v6 = OUTSIDE_GATEWAY
        gateway.ip("addr", "add", v4, "dev", "eth1")
        gateway.ip("-6", "addr", "add", v6, "dev", "eth1", "nodad")
        for device in ("all", "eth0", "eth1"):
            gateway.sysctl(f"net.ipv4.conf.{device}.rp_filter", "0")
        outside.ip("addr", "add", f"{OUTSIDE_V4}/24", "dev", "eth0")
        outside.ip("-6", "addr", "add", f"{OUTSIDE_V6}/64", "dev", "eth0", "nodad")
        outside.ip("route", "add", "default", "via", v4.split("/")[0])
        outside.ip("-6", "route", "add", "default", "via", v6.split("/")[0])
        return outside

    def _start_components(self) -> None:
        plane = self.plane
        binaries = self._node_binaries
        pki = plane.work_dir / "pki"
        common = ["--leader-elect=false", "--bind-address=127.0.0.1", "--v=1"]
        scheduler_config = plane.client_kubeconfig(
            "system:kube-scheduler", path=self.directory / "kube-scheduler.kubeconfig"
        )
        manager_config = plane.client_kubeconfig(
            "system:kube-controller-manager",
            path=self.directory / "kube-controller-manager.kubeconfig",
        )
        ports = {"kube-scheduler": free_port(), "kube-controller-manager": free_port()}
        argv = {
            "kube-scheduler": [
                str(binaries.path("kube-scheduler")),
                f"--kubeconfig={scheduler_config}",
                f"--authentication-kubeconfig={scheduler_config}",
                f"--authorization-kubeconfig={scheduler_config}",
                f"--secure-port={ports['kube-scheduler']}",
                *common,
            ],
            "kube-controller-manager": [
                str(binaries.path("kube-controller-manager")),
                f"--kubeconfig={manager_config}",
                f"--authentication-kubeconfig={manager_config}",
                f"--authorization-kubeconfig={manager_config}",
                f"--secure-port={ports['kube-controller-manager']}",
                # One identity per controller, as a kubeadm cluster runs it.
                "--use-service-account-credentials=true",
                f"--service-account-private-key-file={pki / 'sa.key'}",
                f"--root-ca-file={pki / 'ca.crt'}",
                f"--cluster-signing-cert-file={pki / 'ca.crt'}",
                f"--cluster-signing-key-file={pki / 'ca.key'}",
                "--controllers=*,-cloud-node-lifecycle,-service-lb-controller,-node-route-controller",
                *common,
            ],
        }
        for name, args in argv.items():
            self.components[name] = Process(args, log_path=self.directory / f"{name}.log")
            self._write_state()
        for name, port in ports.items():
            self._wait_healthy(name, port)

    def _wait_healthy(self, name: str, port: int, timeout: float = 60.0) -> None:
        """Until ``/healthz`` of a component answers ok (its own self-signed serving cert)."""
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE  # our own child on loopback, identified by port
        deadline = time.monotonic() + timeout
        last = "no answer"
        while time.monotonic() < deadline:
            if self.components[name].poll() is not None:
                break
            try:
                with urllib.request.urlopen(
                    f"https://127.0.0.1:{port}/healthz", timeout=2, context=context
                ) as response:
                    if response.status == 200:
                        return
            except (urllib.error.URLError, OSError) as exc:
                last = str(exc)
            time.sleep(0.1)
        raise ControlPlaneError(
            f"{name} not healthy ({last}); exit={self.components[name].poll()}; log:\n"
            + tail(self.directory / f"{name}.log")
        )

    def _write_state(self) -> None:
        state = {
            "processes": {
                name: {"pid": p.pid, "binary": p.argv[0], "log": str(p.log_path)}
                for name, p in self.components.items()
            },
            "detached": False,
        }
        (self.directory / STATE_FILE).write_text(json.dumps(state, indent=2) + "\n")

    @property
    def _node_binaries(self) -> NodeBinaries:
        if self._binaries is None:
            raise ControlPlaneError("the cluster is not started")
        return self._binaries

    def _write_images(self) -> None:
        images = self.directory / "images"
        pause = images / "pause.oci.tar"
        busybox = images / "busybox.oci.tar"
        write_oci_archive(pause_image(self._node_binaries.path("pause")), pause)
        write_oci_archive(busybox_image(), busybox)
        self._images = [pause, busybox]

    def add_node(self) -> RealNode:
        """One more node on the fabric: namespace, containerd with the images, kubelet."""
        if self.fabric is None:
            raise ControlPlaneError("the cluster is not started")
        index = len(self.nodes)
        name = f"node{index + 1}"
        host = self.fabric.add_node()
        directory = self.directory / name
        directory.mkdir()
        kubeconfig = self.plane.client_kubeconfig(
            f"system:node:{name}",
            ["system:nodes"],
            server_url=self.api_url_for_nodes,
            path=directory / "kubelet.kubeconfig",
        )
        spec = RealNodeSpec(
            name=name,
            host=host,
            directory=directory,
            kubeconfig=kubeconfig,
            ca_file=self.plane.ca_path,
            sandbox_image=PAUSE_IMAGE,
            max_pods=self.max_pods,
        )
        node = RealNode(spec, self._node_binaries)
        self.nodes.append(node)
        node.start_runtime()
        for archive in self._images:
            node.import_image(archive)
        if self.cni is not None:
            self.cni.install(node, index)
        node.start_kubelet()
        self.progress.item(f"{name}: {host.name}, eth0 {host.ipv4} {host.ipv6}, pids {node.pids}")
        return node

    # ----------------------------------------------------------------- the API

    def api_client(self) -> ApiClient:
        """An admin ``kubernetes.client.ApiClient``; the caller closes it."""
        return self.plane.api_client()

    @contextlib.contextmanager
    def api(self) -> Iterator[ApiClient]:
        client = self.api_client()
        try:
            yield client
        finally:
            close_api_client(client)

    def wait_nodes(self, *, ready: bool, timeout: float | None = None) -> None:
        """Until every node's Node object exists (and, with ``ready``, is Ready and the node
        lifecycle controller has taken its not-ready taint off: schedulable)."""
        from kubernetes import client  # noqa: PLC0415

        timeout = timeout or self.ready_timeout
        wanted = {n.spec.name for n in self.nodes}
        deadline = time.monotonic() + timeout
        state: dict[str, str] = {}
        with self.api() as api_client:
            core = client.CoreV1Api(api_client)
            while True:
                state = {}
                items: list[Any] = core.list_node().items
                for item in items:
                    conditions = {c.type: c for c in item.status.conditions or []}
                    condition = conditions.get("Ready")
                    taints = [t.key for t in item.spec.taints or []]
                    state[item.metadata.name] = (
                        f"Ready={condition.status} ({condition.reason}: {condition.message})"
                        if condition is not None
                        else "no Ready condition yet"
                    ) + (f" taints {taints}" if taints else "")
                ok = wanted <= state.keys() and (
                    not ready
                    or all(
                        state[n].startswith("Ready=True") and "taints" not in state[n]
                        for n in wanted
                    )
                )
                if ok:
                    return
                self._check_nodes_alive()
                if time.monotonic() > deadline:
                    break
                time.sleep(0.2)
        raise ControlPlaneError(
            f"nodes not {'Ready' if ready else 'registered'} within {timeout}s: {state}\n"
            + "\n".join(f"{n.spec.name} kubelet:\n{n.tail('kubelet')}" for n in self.nodes)
        )

    def _check_nodes_alive(self) -> None:
        for node in self.nodes:
            for name in ("containerd", "kubelet"):
                process = getattr(node, name)
                if process is not None and process.poll() is not None:
                    raise ControlPlaneError(
                        f"{node.spec.name}: {name} exited ({process.poll()}):\n{node.tail(name)}"
                    )

    # ----------------------------------------------------------------- teardown

    def stop(self) -> None:
        """Nodes, components, relay, namespaces, control plane, work directory; twice is fine."""
        errors: list[BaseException] = []
        for node in reversed(self.nodes):
            try:
                node.stop()
            except Exception as exc:  # go on tearing down; raised below
                errors.append(exc)
        self.nodes.clear()
        for process in self.components.values():
            process.stop(STOP_TIMEOUT)
        self.components.clear()
        if self.control_plane is not None and self.api_url_for_nodes:
            self.control_plane.unexpose(self.api_url_for_nodes)
        self.api_url_for_nodes = ""
        if self.egress is not None:
            self.egress.close()
            self.egress = None
        if self.outside is not None:
            self.outside.delete()
            self.outside = None
        if self.fabric is not None:
            self.fabric.teardown()
            self.fabric = None
        if self.control_plane is not None:
            self.control_plane.stop()
            self.control_plane = None
        if self.work_dir is not None:
            shutil.rmtree(self.work_dir, ignore_errors=True)
            self.work_dir = None
        if self._lock is not None:
            self._lock.close()
            self._lock = None
        if errors:
            raise ControlPlaneError(f"teardown failed: {errors}") from errors[0]
