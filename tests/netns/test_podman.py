"""podman 4 as a second real CNI runtime: its CNI backend calls the installed plugin through
libcni, with ``K8S_POD_NAME=<container name>`` and no namespace (so the pod is ``default/<name>``).
The plugin and conflist are the ones ``hybridnet-daemon install`` writes: podman 4.3's libcni
(1.1) refuses 1.1.0 results, which is why the installed conflist says 1.0.0 and offers 1.1.0
only in ``cniVersions``.

podman itself is confined as :mod:`tests.netns.podman_harness` says. The daemon serves from a
node namespace on the embedded store, so the pods' host ends live there too.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from hybridnet import lab as testbed
from hybridnet.api import constants
from hybridnet.api.naming import LABEL_POD_NAMESPACE
from hybridnet.api.resources import IPInstance
from hybridnet.daemon.attachment import host_ifname
from hybridnet.rpc import daemon_pb2_grpc as pb_grpc
from hybridnet.store.sqlite import SQLiteStore
from tests.netns.podman_harness import IMAGE, Podman, confined_podman


@pytest.fixture
def podman(
    daemon: tuple[testbed.Node, pb_grpc.DaemonStub, Path], tmp_path: Path
) -> Iterator[Podman]:
    _, _, socket = daemon
    plugin_dir = tmp_path / "cni-bin"
    with confined_podman(tmp_path / "podman", plugin_dir) as runtime:
        # The plugin and the conflist exactly as `hybridnet-daemon install` writes them.
        install = [sys.executable, "-m", "hybridnet.daemon.main", "--socket", str(socket),
                   "install", "--cni-bin-dir", str(plugin_dir),
                   "--cni-conf-dir", str(runtime.conf_dir)]  # fmt: skip
        subprocess.run(install, check=True, capture_output=True)
        yield runtime


def instances(store_path: Path) -> list[IPInstance]:
    store = SQLiteStore(store_path)
    try:
        return list(store.list(IPInstance).items)
    finally:
        store.close()


def test_podman_runs_pods_that_reach_each_other(
    daemon: tuple[testbed.Node, pb_grpc.DaemonStub, Path], podman: Podman, tmp_path: Path
) -> None:
    node = daemon[0]
    root_before = testbed.root_links()
    # --rm: should the test run be killed, the container removes itself (netns and all) on exit.
    podman(
        "run", "--rm", "--detach", "--name", "web", "--network", "hybridnet", IMAGE, "sleep", "120"
    )
    address = podman.address("web")
    assert address.startswith("198.19.50.") and address.endswith("/24")
    web_id = podman.container_id("web")
    assert host_ifname(web_id, "eth0") in node.links()
    (web_instance,) = instances(tmp_path / "store.db")
    assert web_instance.metadata.labels[constants.LABEL_POD] == "web"
    assert web_instance.metadata.labels[LABEL_POD_NAMESPACE] == "default"  # podman gives none

    ping = podman("run", "--rm", "--name", "client", "--network", "hybridnet", IMAGE,
                  "ping", "-c", "2", "-W", "5", address.split("/")[0], check=False)  # fmt: skip
    assert ping.returncode == 0, ping.stdout + ping.stderr

    podman("rm", "--force", "--time", "0", "web")
    assert host_ifname(web_id, "eth0") not in node.links()
    assert [link for link in node.links() if link.startswith("hyb")] == []
    assert instances(tmp_path / "store.db") == []
    assert testbed.root_links() == root_before
