"""podman 4 as a second real CNI runtime: its CNI backend calls the installed plugin through
libcni, with ``K8S_POD_NAME=<container name>`` and no namespace (so the pod is ``default/<name>``).
The plugin and conflist are the ones ``hybridnet-daemon install`` writes: podman 4.3's libcni
(1.1) refuses 1.1.0 results, which is why the installed conflist says 1.0.0 and offers 1.1.0
only in ``cniVersions``.

podman's configuration, image store and run state live in the test's directories; the image is
a busybox-static root file system imported with ``podman import``. podman still uses three
places of the host's own, as it does for any user: a container's network namespace is a mount
in /run/netns while it runs, libcni caches results in /var/lib/cni/results, and podman keeps a
blob-info cache in /var/lib/containers/cache. The test checks that the first two hold after it
what they held before. The daemon serves from a node namespace on the embedded store, so the
pods' host ends live there too.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
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

IMAGE = "localhost/hybridnet-test:latest"
BUSYBOX = Path("/bin/busybox")
APPLETS = ("sh", "ip", "ping", "sleep", "cat")


class Podman:
    """``podman`` confined to one directory, on the CNI backend, with runc."""

    def __init__(self, home: Path, runroot: Path, plugin_dir: Path):
        self.home = home
        self.runroot = runroot
        """Short: podman refuses a run root longer than 50 characters."""
        (home / "net.d").mkdir(parents=True)
        (home / "tmp").mkdir()
        self.config = home / "containers.conf"
        self.config.write_text(
            "[containers]\n"
            # runc cannot raise these limits inside this machine's sandbox: keep them modest.
            'default_ulimits = ["nofile=1024:1024", "nproc=1024:1024"]\n'
            "[network]\n"
            'network_backend = "cni"\n'
            f'cni_plugin_dirs = ["{plugin_dir}"]\n'
            f'network_config_dir = "{home / "net.d"}"\n'
            "[engine]\n"
            'runtime = "runc"\n'
            'cgroup_manager = "cgroupfs"\n'
            'events_logger = "file"\n'
            f'events_logfile_path = "{home / "tmp" / "events.log"}"\n'
            f'tmp_dir = "{home / "tmp"}"\n'
        )

    def __call__(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        argv = ["podman", "--root", str(self.home / "root"), "--runroot", str(self.runroot),
                "--storage-driver", "vfs", *args]  # fmt: skip
        env = {**os.environ, "CONTAINERS_CONF": str(self.config)}
        done = subprocess.run(argv, env=env, capture_output=True, text=True, check=False)
        if check and done.returncode != 0:
            raise AssertionError(f"{' '.join(args)} failed ({done.returncode}):\n{done.stderr}")
        return done

    def import_busybox(self) -> None:
        rootfs = self.home / "rootfs"
        (rootfs / "bin").mkdir(parents=True)
        shutil.copy2(BUSYBOX, rootfs / "bin" / "busybox")
        for applet in APPLETS:
            (rootfs / "bin" / applet).symlink_to("busybox")
        tarball = self.home / "rootfs.tar"
        subprocess.run(["tar", "-C", str(rootfs), "-cf", str(tarball), "."], check=True)
        self("import", str(tarball), IMAGE)


@pytest.fixture
def podman(
    daemon: tuple[testbed.Node, pb_grpc.DaemonStub, Path], tmp_path: Path
) -> Iterator[Podman]:
    _, _, socket = daemon
    plugin_dir = tmp_path / "cni-bin"
    shared_before = host_state()
    runroot = Path(tempfile.mkdtemp(prefix="hnpm-"))
    runtime: Podman | None = None
    try:
        runtime = Podman(tmp_path / "podman", runroot, plugin_dir)
        # The plugin and the conflist exactly as `hybridnet-daemon install` writes them.
        install = [sys.executable, "-m", "hybridnet.daemon.main", "--socket", str(socket),
                   "install", "--cni-bin-dir", str(plugin_dir),
                   "--cni-conf-dir", str(runtime.home / "net.d")]  # fmt: skip
        subprocess.run(install, check=True, capture_output=True)
        runtime.import_busybox()
        yield runtime
        runtime("rm", "--all", "--force", "--time", "0")
        assert host_state() == shared_before, "podman left something in /run/netns or the cache"
    finally:
        if runtime is not None:  # after a failure: remove what is left, quietly
            runtime("rm", "--all", "--force", "--time", "0", check=False)
        shutil.rmtree(runroot, ignore_errors=True)


def host_state() -> tuple[list[str], list[str]]:
    """What podman shares with the host: network namespace mounts and libcni's result cache.

    Test-bed namespaces (``hnt…``) are left out: test beds of this and of other runs on the
    machine make and remove them at any time, and podman never names one so."""

    def names(directory: str) -> list[str]:
        path = Path(directory)
        return sorted(p.name for p in path.iterdir()) if path.is_dir() else []

    netns = [name for name in names("/run/netns") if not name.startswith(testbed.PREFIX_ROOT)]
    return netns, names("/var/lib/cni/results")


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
    shown = podman("exec", "web", "ip", "-o", "-4", "addr", "show", "eth0").stdout
    address = shown.split(" inet ")[1].split()[0]
    assert address.startswith("198.19.50.") and address.endswith("/24")
    web_id = podman("inspect", "--format", "{{.Id}}", "web").stdout.strip()
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
