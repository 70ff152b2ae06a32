"""A node of the datapath cluster (tests/cluster/test_datapath_kube.py): hybridnet-daemon in
a node namespace of the lab's fabric, on the real API server, with the node datapath on, and
what a test reads back from that node's kernel (VXLAN FDB, neighbours, routes).

The daemon logs to a file, not a pipe: nothing reads a pipe while the test runs, and a full
pipe would block the daemon's logging (and with it the daemon).
"""

from __future__ import annotations

import dataclasses
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hybridnet import lab as testbed
from hybridnet.daemon import bundle
from hybridnet.daemon.install import install_plugin
from hybridnet.lab.cni_runtime import Attachment, CniRuntime
from hybridnet.rpc.client import DaemonClient, DaemonError

START_BOUND = 90.0
"""How long a daemon may take to be ready: start the interpreter, list five kinds through the
forwarder and reconcile once. A few seconds here; the rest is slack for a loaded machine."""

FLOOD_MAC = "00:00:00:00:00:00"


def wait_for(what: str, check: Callable[[], Any], bound: float) -> Any:
    """Poll until ``check`` returns something truthy (the positive signal) and return it."""
    deadline = time.monotonic() + bound
    while True:
        found = check()
        if found:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {bound:.0f}s")
        time.sleep(0.05)


@dataclasses.dataclass(frozen=True)
class Remote:
    """What every other node's kernel must hold for one node: its VTEP and addresses."""

    name: str
    vtep: str
    mac: str
    addresses: tuple[str, ...]


@dataclasses.dataclass
class KubeNode:
    """One node: its namespace, its Node name, and its daemon (None while stopped)."""

    netns: testbed.Node
    name: str
    directory: Path
    vxlan: str
    process: testbed.Process | None = None

    @property
    def socket(self) -> Path:
        return self.directory / "run" / "daemon.sock"

    @property
    def log_path(self) -> Path:
        return self.directory / "daemon.log"

    def start(self, kubeconfig: Path, ipam_namespace: str, *extra: str) -> KubeNode:
        """Start the daemon (``extra``: more of its flags) and wait until its STATUS says
        ready (informers listed, the datapath reconciled once)."""
        argv = [
            sys.executable, "-m", "hybridnet.daemon.main", "--socket", str(self.socket),
            "--node-name", self.name, "--kubeconfig", str(kubeconfig),
            "--ipam-namespace", ipam_namespace, "--allocation-timeout", "60",
            "--vtep-interface", "eth0", "--underlay-interface", "eth0", *extra,
        ]  # fmt: skip
        self.directory.mkdir(parents=True, exist_ok=True)
        process = testbed.Process(argv, netns=self.netns.name, log_path=self.log_path)
        self.netns.processes.append(process)  # stopped with the namespace, whatever happens
        self.process = process
        deadline = time.monotonic() + START_BOUND
        why = "its socket did not appear"
        while time.monotonic() < deadline and process.poll() is None:
            if self.socket.exists():
                try:
                    status = DaemonClient(str(self.socket), 5.0).status()
                except DaemonError as exc:
                    why = str(exc)
                else:
                    if status.ready:
                        return self
                    why = status.reason
            time.sleep(0.1)
        raise AssertionError(f"daemon of {self.name} not ready ({why}):\n{self.log_tail()}")

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop(timeout=15)
            self.netns.processes.remove(self.process)
            self.process = None

    def log_tail(self, lines: int = 60) -> str:
        if not self.log_path.exists():
            return "(no log)"
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def cni(self) -> CniRuntime:
        """The container runtime's side, executing the installed plugin in this node."""
        conflist = {
            "cniVersion": "1.1.0",
            "name": "hybridnet",
            "plugins": [{"type": "hybridnet", "socket": str(self.socket)}],
        }
        plugins = self.directory / "cni-bin"
        if not (plugins / "hybridnet").exists():
            install_plugin(bundle.default_interpreter(), plugins)
        return CniRuntime(
            conflist, [str(plugins)], self.directory / "cni-cache", exec_netns=self.netns.name
        )

    def add(self, pod: testbed.Namespace, pod_namespace: str, pod_name: str) -> Attachment:
        """CNI ADD of ``pod_namespace/pod_name`` into the pod namespace ``pod``."""
        attachment = Attachment(
            container_id=pod.name,
            netns=pod.path,
            args={
                "K8S_POD_NAMESPACE": pod_namespace,
                "K8S_POD_NAME": pod_name,
                "IgnoreUnknown": "1",
            },
        )
        self.cni().add(attachment)
        return attachment

    def as_remote(self) -> Remote:
        """This node as the others must see it: VTEP on eth0, its eth0 addresses."""
        return Remote(
            self.name,
            self.netns.ipv4,
            mac_of(self.netns, "eth0"),
            (self.netns.ipv4, self.netns.ipv6),
        )

    # ----------------------------------------------------------------- kernel state

    def _json(self, argv: list[str]) -> list[dict[str, Any]]:
        out = self.netns.exec(argv, check=False).stdout.strip()
        parsed: list[dict[str, Any]] = json.loads(out) if out else []
        return parsed

    def fdb(self) -> set[tuple[str, str]]:
        """(MAC, destination VTEP) of every FDB entry on the VXLAN device."""
        entries = self._json(["bridge", "-j", "fdb", "show", "dev", self.vxlan])
        return {(e["mac"], e["dst"]) for e in entries if "dst" in e}

    def neighbours(self) -> set[tuple[str, str, str]]:
        """(address, MAC, state) of every neighbour on the VXLAN device, both families."""
        entries = self._json(["ip", "-j", "neigh", "show", "dev", self.vxlan])
        return {
            (e["dst"], e.get("lladdr", ""), ",".join(e.get("state", [])))
            for e in entries
            if "dst" in e
        }

    def host_routes(self) -> set[str]:
        """Destinations of the routes out of the VXLAN device in every table, both families
        (a host route shows as the bare address)."""
        found: set[str] = set()
        for family in ("-4", "-6"):
            argv = ["ip", family, "-j", "route", "show", "table", "all", "dev", self.vxlan]
            found |= {r["dst"] for r in self._json(argv)}
        return found

    def has_fdb_for(self, remote: Remote) -> bool:
        return {(FLOOD_MAC, remote.vtep), (remote.mac, remote.vtep)} <= self.fdb()

    def has_any_fdb_for(self, remote: Remote) -> bool:
        return any(dst == remote.vtep for _, dst in self.fdb())

    def holds_state_for(self, remote: Remote) -> bool:
        """The FDB entries, a permanent neighbour per address, a host route per address."""
        neighbours = {(a, m) for a, m, state in self.neighbours() if "PERMANENT" in state}
        return (
            self.has_fdb_for(remote)
            and all((a, remote.mac) in neighbours for a in remote.addresses)
            and set(remote.addresses) <= self.host_routes()
        )

    def holds_nothing_for(self, remote: Remote) -> bool:
        neighbours = {a for a, _, _ in self.neighbours()}
        return (
            not self.has_any_fdb_for(remote)
            and not neighbours & set(remote.addresses)
            and not self.host_routes() & set(remote.addresses)
        )


def mac_of(namespace: testbed.Namespace, ifname: str) -> str:
    return str(json.loads(namespace.ip("-j", "link", "show", ifname).stdout)[0]["address"])


def time_until_each(
    nodes: list[KubeNode], check: Callable[[KubeNode], bool], since: float, bound: float
) -> dict[str, float]:
    """Seconds from ``since`` (time.monotonic) until ``check`` first held on each node,
    polling all of them in turn (each poll is one command per node: ~10 ms per round)."""
    seen: dict[str, float] = {}
    deadline = time.monotonic() + bound
    while len(seen) < len(nodes):
        for node in nodes:
            if node.name not in seen and check(node):
                seen[node.name] = time.monotonic() - since
        if time.monotonic() > deadline:
            missing = sorted(n.name for n in nodes if n.name not in seen)
            raise AssertionError(f"not within {bound:.0f}s on {missing}")
    return seen
