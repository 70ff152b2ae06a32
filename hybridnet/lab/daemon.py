"""Starting hybridnet-daemon in a node namespace the way tests, benchmarks and the demo need it:
an embedded store with a pod network, the daemon process, and a CNI_PATH with the plugin."""

from __future__ import annotations

import sys
import time
from pathlib import Path

from hybridnet.api.meta import ObjectMeta
from hybridnet.api.resources import AddressRange, Network, NetworkSpec, Subnet, SubnetSpec
from hybridnet.daemon import bundle
from hybridnet.daemon.install import install_plugin
from hybridnet.lab.errors import TestbedError
from hybridnet.lab.manager import IPAM_NAMESPACE
from hybridnet.lab.netns import Namespace
from hybridnet.lab.processes import Process
from hybridnet.rpc.client import DaemonClient, DaemonError
from hybridnet.store.sqlite import SQLiteStore

POD_NETWORK = "pods"


def embedded_store(path: Path, cidr_v4: str, cidr_v6: str | None = None) -> Path:
    """A SQLite store holding the overlay network ``pods`` with its subnet(s)."""
    store = SQLiteStore(path)
    spec = NetworkSpec(type="Overlay", mode="VXLAN", net_id=5)
    store.create(Network(ObjectMeta(name=POD_NETWORK), spec))
    for version, cidr in (("4", cidr_v4), ("6", cidr_v6)):
        if cidr is not None:
            subnet_range = AddressRange(version=version, cidr=cidr)
            subnet = SubnetSpec(network=POD_NETWORK, range=subnet_range)
            store.create(Subnet(ObjectMeta(name=f"{POD_NETWORK}-v{version}"), subnet))
    store.close()
    return path


def start_daemon(
    node: Namespace, socket: Path, *args: str, module: str = "hybridnet.daemon.main"
) -> Process:
    """Run ``hybridnet-daemon ARGS`` (``python -m module``) inside ``node`` and wait until it
    is ready: its socket exists and its CNI STATUS says its informers have listed."""
    argv = [sys.executable, "-m", module, "--socket", str(socket), *args]
    process = node.spawn(argv)
    deadline = time.monotonic() + 20
    why = "its socket did not appear"
    while time.monotonic() < deadline and process.poll() is None:
        if socket.exists():
            try:
                status = DaemonClient(str(socket), 2.0).status()
            except DaemonError as exc:
                status, why = None, str(exc)
            if status is not None and status.ready:
                return process
            why = status.reason if status is not None else why
        time.sleep(0.05)
    raise TestbedError(f"daemon did not start ({why}):\n{process.read_remaining()}")


def start_embedded_daemon(
    node: Namespace,
    directory: Path,
    cidr_v4: str,
    cidr_v6: str | None = None,
    *args: str,
) -> tuple[Process, Path]:
    """The daemon of node ``node1`` on a fresh embedded store (network ``pods`` with the given
    subnets) kept in ``directory``, its VTEP on the node's ``eth0`` (the overlay needs one);
    ``args`` are more daemon flags. Returns it and its socket."""
    store = embedded_store(directory / "store.db", cidr_v4, cidr_v6)
    socket = directory / "run" / "daemon.sock"
    argv = ["--node-name", "node1", "--store", str(store), "--network", POD_NETWORK,
            "--ipam-namespace", IPAM_NAMESPACE]  # fmt: skip
    argv += ["--vtep-interface", "eth0", *args]
    return start_daemon(node, socket, *argv), socket


def plugin_dir(directory: Path) -> Path:
    """A CNI_PATH directory holding ``hybridnet`` exactly as ``hybridnet-daemon install`` writes
    it (the bundled plugin, run by this interpreter outside the virtual environment)."""
    install_plugin(bundle.default_interpreter(), directory)
    return directory


def start_node_daemon(
    node: Namespace, node_name: str, directory: Path, store: Path, *args: str
) -> tuple[Process, Path]:
    """The daemon of ``node_name`` in ``node``, on the embedded store ``store`` that the other
    nodes' daemons share (network ``pods``), its VTEP on the node's ``eth0``; ``args`` are more
    daemon flags (a later ``--vtep-interface`` wins). Its socket lives in ``directory``."""
    socket = directory / "run" / "daemon.sock"
    argv = ["--node-name", node_name, "--store", str(store), "--network", POD_NETWORK,
            "--ipam-namespace", IPAM_NAMESPACE]  # fmt: skip
    return start_daemon(node, socket, *argv, "--vtep-interface", "eth0", *args), socket
