"""podman 4 confined to a test's directories, on its CNI backend with runc: what the podman
tests share.

podman's configuration, image store and run state live in the test's directories; the image is
a busybox-static root file system imported with ``podman import``. podman still uses three
places of the host's own, as it does for any user: a container's network namespace is a mount
in /run/netns while it runs, libcni caches results in /var/lib/cni/results, and podman keeps a
blob-info cache in /var/lib/containers/cache. :func:`confined_podman` checks that the first two
hold after it what they held before.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

from hybridnet import lab as testbed

IMAGE = "localhost/hybridnet-test:latest"
BUSYBOX = Path("/bin/busybox")
APPLETS = ("sh", "ip", "ping", "sleep", "cat", "nc", "echo")


class Podman:
    """``podman`` confined to one directory, on the CNI backend, with runc."""

    def __init__(self, home: Path, runroot: Path, plugin_dir: Path):
        self.home = home
        self.runroot = runroot
        """Short: podman refuses a run root longer than 50 characters."""
        self.conf_dir = home / "net.d"
        """podman's CNI configuration directory (its ``network_config_dir``)."""
        self.conf_dir.mkdir(parents=True)
        plugin_dir.mkdir(parents=True, exist_ok=True)  # podman refuses a configured one missing
        (home / "tmp").mkdir()
        self.config = home / "containers.conf"
        self.config.write_text(
            "[containers]\n"
            # runc cannot raise these limits inside this machine's sandbox: keep them modest.
            'default_ulimits = ["nofile=1024:1024", "nproc=1024:1024"]\n'
            "[network]\n"
            'network_backend = "cni"\n'
            f'cni_plugin_dirs = ["{plugin_dir}"]\n'
            f'network_config_dir = "{self.conf_dir}"\n'
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

    def address(self, container: str, ifname: str = "eth0") -> str:
        """The container's IPv4 address on ``ifname`` in CIDR form, as it sees it itself."""
        shown = self("exec", container, "ip", "-o", "-4", "addr", "show", ifname).stdout
        return shown.split(" inet ")[1].split()[0]

    def container_id(self, container: str) -> str:
        return self("inspect", "--format", "{{.Id}}", container).stdout.strip()


@contextlib.contextmanager
def confined_podman(home: Path, plugin_dir: Path) -> Iterator[Podman]:
    """podman in ``home`` finding CNI plugins in ``plugin_dir``, the busybox image imported;
    afterwards every container is removed and the host's shared places are as they were."""
    shared_before = host_state()
    runroot = Path(tempfile.mkdtemp(prefix="hnpm-"))
    runtime: Podman | None = None
    try:
        runtime = Podman(home, runroot, plugin_dir)
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
