"""A real Kubernetes node in a lab node namespace: containerd + kubelet, nothing of the host's.

The fabric's node namespace (:class:`hybridnet.lab.fabric.Node`) gives the node its network.
Everything else a kubelet and containerd hard-code is made the node's own in a mount namespace:

* a *holder* process is started as ``nsenter --net=NODE unshare --mount --propagation slave``.
  ``ip netns exec`` is not used: it remounts ``/sys``, which hides ``/sys/fs/cgroup`` from
  kubelet and runc. Slave propagation lets the host's mounts in and none of the node's out;
* in the holder's mount namespace, per-node directories are bound over ``/var/lib``,
  ``/var/log``, ``/opt`` and ``/etc/cni``, a tmpfs covers ``/run``, and each ``/proc/sys`` entry
  kubelet would set (:data:`~hybridnet.lab.realnode_config.KUBELET_SYSCTLS`) is covered by a
  file holding the host's current value, so nothing changes on the host;
* containerd and kubelet are entered into the holder's namespaces (``nsenter --target``) and
  run in the node's own cgroup tree (``/<run prefix>-<node>`` in every hierarchy: kubelet's
  ``cgroupRoot``), which :mod:`hybridnet.lab.realnode_launch` joins before exec.

:meth:`RealNode.stop` ends kubelet and containerd by their PIDs, then every process left in the
node's cgroup tree (the runc shims, which leave containerd's process group, and the containers)
by the PIDs the tree lists, removes the tree, and ends the holder, which takes the mount
namespace and the pods' network namespaces pinned in its ``/run`` along.
:func:`remove_stale_cgroups` does the same for the trees of runs that died.

Only the standard library is used (the lab's rule); certificates and kubeconfigs are the
caller's (``hack/realcluster``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import shutil
import signal
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from hybridnet.lab.errors import TestbedError
from hybridnet.lab.fabric import Node
from hybridnet.lab.netns import PREFIX_ROOT, RUN_PREFIX_PATTERN, _run_is_alive
from hybridnet.lab.processes import Process, run
from hybridnet.lab.realnode_config import (
    CONTAINERD_SOCKET,
    KUBELET_SYSCTLS,
    ContainerdSettings,
    KubeletSettings,
    containerd_config,
    kubelet_config,
)

CGROUP_MOUNTS = Path("/sys/fs/cgroup")
NODE_BINDS = ("/var/lib", "/var/log", "/opt", "/etc/cni")
"""Host paths each node sees as its own directory (kubelet, containerd and CNI hard-code them)."""
RUNC = Path("/usr/sbin/runc")
"""Debian's runc (make deps)."""
CNI_PLUGINS = Path("/usr/lib/cni")
"""Debian's reference CNI plugins (containernetworking-plugins)."""
STOP_TIMEOUT = 15.0
CONTAINERD_START_TIMEOUT = 30.0


@dataclasses.dataclass(frozen=True)
class NodeBinaries:
    """Where a node's programs are: the cache of ``hack/realcluster/build.sh`` and Debian's."""

    directory: Path
    runc: Path = RUNC
    cni_plugins: Path = CNI_PLUGINS

    def path(self, name: str) -> Path:
        found = self.directory / name
        if not os.access(found, os.X_OK):
            raise TestbedError(f"{found} is missing; run hack/realcluster/build.sh")
        return found


@dataclasses.dataclass(frozen=True)
class RealNodeSpec:
    """One node: its name (the Node object's), its fabric namespace and its host directory.

    ``kubeconfig`` authenticates as ``system:node:<name>`` and points at an API server URL the
    node namespace reaches; ``ca_file`` is the cluster CA (kubelet's client CA).
    """

    name: str
    host: Node
    directory: Path
    kubeconfig: Path
    ca_file: Path
    sandbox_image: str
    max_pods: int = 110


def cgroup_hierarchies() -> list[Path]:
    """The mounted cgroup hierarchies: each v1 controller's and the v2 one (hybrid or not)."""
    found = []
    for line in Path("/proc/self/mounts").read_text().splitlines():
        fields = line.split()
        if len(fields) > 2 and fields[2] in {"cgroup", "cgroup2"}:
            found.append(Path(fields[1]))
    return sorted(set(found))


def make_cgroup(path: Path) -> None:
    """mkdir a cgroup; in cpuset, copy the parent's cpus and mems (a new cpuset is empty)."""
    path.mkdir(exist_ok=True)
    for name in ("cpuset.cpus", "cpuset.mems"):
        own = path / name
        if own.exists() and not own.read_text().strip():
            own.write_text((path.parent / name).read_text())


def cgroup_pids(root: Path) -> set[int]:
    """Every PID in the cgroup tree under ``root`` (missing tree: none)."""
    pids: set[int] = set()
    if not root.is_dir():
        return pids
    for procs in root.rglob("cgroup.procs"):
        with contextlib.suppress(OSError):
            pids.update(int(p) for p in procs.read_text().split())
    return pids


def _remove_cgroup_tree(root: Path) -> None:
    if not root.is_dir():
        return
    for directory in sorted((p for p in root.rglob("*") if p.is_dir()), reverse=True):
        with contextlib.suppress(OSError):
            directory.rmdir()
    with contextlib.suppress(OSError):
        root.rmdir()


def kill_cgroup_trees(name: str, timeout: float = STOP_TIMEOUT) -> None:
    """SIGKILL every process in cgroup ``/name`` of every hierarchy, until none is left, then
    remove the trees. The tree is the node's alone, so what it lists is ours."""
    roots = [h / name for h in cgroup_hierarchies()]
    deadline = time.monotonic() + timeout
    while True:
        pids = set().union(*(cgroup_pids(r) for r in roots))
        if not pids:
            break
        if time.monotonic() > deadline:
            raise TestbedError(f"processes {sorted(pids)} of cgroup {name} outlived SIGKILL")
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.05)  # the kernel empties cgroup.procs as the killed processes are reaped
    for root in roots:
        _remove_cgroup_tree(root)


def stale_cgroups() -> list[str]:
    """Node cgroup trees (``/hnt<hex>-<node>``) whose run is no longer alive."""
    names: set[str] = set()
    for hierarchy in cgroup_hierarchies():
        for entry in hierarchy.glob(f"{PREFIX_ROOT}*"):
            match = RUN_PREFIX_PATTERN.match(entry.name)
            if entry.is_dir() and match and not _run_is_alive(match.group(1)):
                names.add(entry.name)
    return sorted(names)


def remove_stale_cgroups() -> list[str]:
    """Kill what runs in the node cgroup trees of dead runs and remove the trees."""
    names = stale_cgroups()
    for name in names:
        kill_cgroup_trees(name)
    return names


class RealNode:
    """containerd + kubelet for one :class:`RealNodeSpec`; see the module docstring."""

    def __init__(self, spec: RealNodeSpec, binaries: NodeBinaries):
        self.spec = spec
        self.binaries = binaries
        self.cgroup_name = spec.host.name  # the run's prefix and the node: hnt1a2b3c-node1
        self.holder: Process | None = None
        self.containerd: Process | None = None
        self.kubelet: Process | None = None

    # ----------------------------------------------------------------- paths

    @property
    def directory(self) -> Path:
        return self.spec.directory

    def host_path(self, inside: str) -> Path:
        """Where a path under one of :data:`NODE_BINDS` is kept on the host."""
        for bound in NODE_BINDS:
            if inside == bound or inside.startswith(bound + "/"):
                return self._bind_source(bound) / inside[len(bound) :].lstrip("/")
        raise TestbedError(f"{inside} is not under one of the node's own paths {NODE_BINDS}")

    def _bind_source(self, bound: str) -> Path:
        return self.directory / "fs" / bound.strip("/").replace("/", "-")

    @property
    def log_paths(self) -> dict[str, Path]:
        return {name: self.directory / f"{name}.log" for name in ("containerd", "kubelet")}

    @property
    def pids(self) -> dict[str, int]:
        children = {"holder": self.holder, "containerd": self.containerd, "kubelet": self.kubelet}
        return {name: c.pid for name, c in children.items() if c and c.poll() is None}

    # ----------------------------------------------------------------- running inside

    def _enter(self) -> list[str]:
        if self.holder is None or self.holder.poll() is not None:
            raise TestbedError(f"node {self.spec.name}: its mount namespace holder is not running")
        return ["nsenter", f"--target={self.holder.pid}", "--mount", "--net", "--"]

    def exec(self, argv: Sequence[str], timeout: float = 60.0) -> str:
        """Run a command in the node's network and mount namespaces; return its stdout."""
        return run([*self._enter(), *argv], timeout=timeout).stdout

    def ctr(self, *args: str, timeout: float = 60.0) -> str:
        """``ctr`` against the node's containerd, in the ``k8s.io`` namespace (CRI's)."""
        ctr = str(self.binaries.path("ctr"))
        return self.exec([ctr, f"--address={CONTAINERD_SOCKET}", "-n", "k8s.io", *args], timeout)

    def import_image(self, archive: Path) -> None:
        """Import an OCI archive (its path must be visible to the node: not under its binds)."""
        self.ctr("images", "import", "--platform=linux/amd64", str(archive), timeout=120)

    def install_cni_plugins(self, names: Sequence[str] | None = None) -> None:
        """Link Debian's reference plugins (all, or ``names``) into the node's /opt/cni/bin."""
        bin_dir = self.host_path("/opt/cni/bin")
        bin_dir.mkdir(parents=True, exist_ok=True)
        for plugin in sorted(self.binaries.cni_plugins.iterdir()):
            if names is None or plugin.name in names:
                link = bin_dir / plugin.name
                link.unlink(missing_ok=True)
                link.symlink_to(plugin)

    def write_cni_config(self, filename: str, document: dict[str, object]) -> Path:
        """Write a CNI network configuration into the node's /etc/cni/net.d (atomically)."""
        conf_dir = self.host_path("/etc/cni/net.d")
        conf_dir.mkdir(parents=True, exist_ok=True)
        path = conf_dir / filename
        temporary = conf_dir / f".{filename}.partial"
        temporary.write_text(json.dumps(document, indent=2) + "\n")
        temporary.replace(path)
        return path

    # ----------------------------------------------------------------- life cycle

    def start(self) -> None:
        """:meth:`start_runtime`, then :meth:`start_kubelet`."""
        self.start_runtime()
        self.start_kubelet()

    def start_runtime(self) -> None:
        """The holder and its mounts, the cgroup tree, and containerd (answering).

        Images are imported and the CNI configuration written before :meth:`start_kubelet`.
        """
        try:
            self._start_holder()
            self._make_cgroups()
            self._start_containerd()
        except BaseException:
            self.stop()
            raise

    def start_kubelet(self) -> None:
        """kubelet: it registers the Node and reports it Ready once the CNI config is there."""
        try:
            self._start_kubelet()
        except BaseException:
            self.stop()
            raise

    def _start_holder(self) -> None:
        for bound in NODE_BINDS:
            self._bind_source(bound).mkdir(parents=True, exist_ok=True)
            if not Path(bound).is_dir():
                raise TestbedError(f"{bound} does not exist on this host to be bound over")
        self.holder = Process(
            [
                "nsenter",
                f"--net={self.spec.host.path}",
                "--",
                "unshare",
                "--mount",
                "--propagation=slave",
                "--",
                "sleep",
                "infinity",
            ],
            log_path=self.directory / "holder.log",
        )
        self._wait_for_own_mount_namespace()
        mount = [*self._enter(), "mount"]
        for bound in NODE_BINDS:
            run([*mount, "--bind", str(self._bind_source(bound)), bound])
        run([*mount, "-t", "tmpfs", "-o", "mode=0755,size=256m", "tmpfs", "/run"])
        # Shared inside the node (a new mount here is private): a container's volume under /run
        # with HostToContainer propagation (the CNI daemon's view of pods' network namespaces,
        # pinned later) needs a shared or slave source, or containerd refuses to start it.
        run([*mount, "--make-rshared", "/run"])
        sysctl_dir = self.directory / "sysctl"
        sysctl_dir.mkdir(exist_ok=True)
        for key in KUBELET_SYSCTLS:
            entry = Path("/proc/sys") / key
            if entry.exists():
                cover = sysctl_dir / key.replace("/", ".")
                cover.write_text(entry.read_text())
                run([*mount, "--bind", str(cover), str(entry)])

    def _wait_for_own_mount_namespace(self, timeout: float = 10.0) -> None:
        """Until the holder runs ``sleep`` in a mount namespace that is not ours."""
        if self.holder is None:
            raise TestbedError("no holder")
        ours = os.readlink("/proc/self/ns/mnt")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.holder.poll() is not None:
                break
            with contextlib.suppress(OSError):
                exe = os.readlink(f"/proc/{self.holder.pid}/exe")
                if os.readlink(f"/proc/{self.holder.pid}/ns/mnt") != ours and "sleep" in exe:
                    return
            time.sleep(0.01)
        raise TestbedError(
            f"node {self.spec.name}: the mount namespace holder did not start; "
            f"{(self.directory / 'holder.log').read_text(errors='replace')[-2000:]}"
        )

    def _cgroup_dirs(self, child: str | None = None) -> list[Path]:
        base = [h / self.cgroup_name for h in cgroup_hierarchies()]
        return [b / child for b in base] if child else base

    def _make_cgroups(self) -> None:
        for directory in self._cgroup_dirs():
            make_cgroup(directory)
        for child in ("containerd", "kubelet"):
            for directory in self._cgroup_dirs(child):
                make_cgroup(directory)

    def _launch(self, child: str, argv: Sequence[str]) -> Process:
        launcher = [sys.executable, "-m", "hybridnet.lab.realnode_launch"]
        cgroups = [str(d) for d in self._cgroup_dirs(child)]
        return Process(
            [*launcher, *cgroups, "--", *self._enter(), *argv], log_path=self.log_paths[child]
        )

    def _start_containerd(self) -> None:
        root = self.directory / "containerd-root"
        root.mkdir(exist_ok=True)
        config = self.directory / "containerd.toml"
        settings = ContainerdSettings(
            root=root, runc=self.binaries.runc, sandbox_image=self.spec.sandbox_image
        )
        config.write_text(containerd_config(settings))
        self.install_cni_plugins()
        argv = [str(self.binaries.path("containerd")), f"--config={config}"]
        # The shim is found on PATH, beside containerd.
        env_path = f"{self.binaries.directory}:{os.environ.get('PATH', '/usr/sbin:/usr/bin')}"
        self.containerd = self._launch("containerd", ["env", f"PATH={env_path}", *argv])
        deadline = time.monotonic() + CONTAINERD_START_TIMEOUT
        while True:
            if self.containerd.poll() is not None:
                raise TestbedError(f"node {self.spec.name}: containerd exited:\n{self.tail()}")
            try:
                self.ctr("version", timeout=10)
                return
            except TestbedError:
                if time.monotonic() > deadline:
                    raise TestbedError(
                        f"node {self.spec.name}: containerd did not answer within "
                        f"{CONTAINERD_START_TIMEOUT}s:\n{self.tail()}"
                    ) from None
            time.sleep(0.1)

    def _start_kubelet(self) -> None:
        settings = KubeletSettings(
            cgroup_root=f"/{self.cgroup_name}",
            client_ca_file=self.spec.ca_file,
            max_pods=self.spec.max_pods,
        )
        config = self.directory / "kubelet.json"
        config.write_text(json.dumps(kubelet_config(settings), indent=2) + "\n")
        host = self.spec.host
        argv = [
            str(self.binaries.path("kubelet")),
            f"--config={config}",
            f"--kubeconfig={self.spec.kubeconfig}",
            f"--hostname-override={self.spec.name}",
            f"--node-ip={host.ipv4},{host.ipv6}",
            "--v=2",
        ]
        self.kubelet = self._launch("kubelet", argv)

    def tail(self, name: str = "containerd", lines: int = 30) -> str:
        """The last lines of ``containerd`` or ``kubelet``'s log."""
        with contextlib.suppress(OSError):
            text = self.log_paths[name].read_text(errors="replace")
            return "\n".join(text.splitlines()[-lines:])
        return ""

    def stop(self) -> None:
        """kubelet, containerd, whatever is left in the cgroup tree, the holder; twice is fine."""
        for child in (self.kubelet, self.containerd):
            if child is not None:
                child.stop(STOP_TIMEOUT)
        self.kubelet = self.containerd = None
        try:
            kill_cgroup_trees(self.cgroup_name)
        finally:
            if self.holder is not None:
                self.holder.stop(STOP_TIMEOUT)
                self.holder = None

    def remove_files(self) -> None:
        """Remove the node's directory (after :meth:`stop`)."""
        shutil.rmtree(self.directory, ignore_errors=True)
