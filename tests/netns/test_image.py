"""The container image, as ``make image`` builds it: a valid OCI archive that podman loads and
runs, whose daemon installs a plugin that the host's own python3 runs.

The archive comes from the image cache (``hack.image.build``: instant when built before, as
``make test`` does first; a cold build takes 1-2.5 minutes, hence this module's timeout). It is
loaded into a podman confined to the test's directories (storage, run state, configuration),
with no network (``--network none``: nothing of the host's networking is touched); podman
still keeps a blob-info cache in /var/lib/containers/cache, as for any user. One container
runs for the module, with a test directory bind-mounted at /host, and each check is a
``podman exec`` in it.

containerd's ``ctr images import`` (the real-cluster tier's way in) is not exercised here: no
containerd is on this machine until that tier builds one. The archive carries the name
containerd reads (``io.containerd.image.name``), checked below.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from hack.image import build
from hybridnet import lab as testbed
from tests.image_layout import OciImage, read_archive

pytestmark = [pytest.mark.root, pytest.mark.timeout(900)]

CONSOLE_SCRIPTS = {
    "hybridnet-manager": "hybridnet-manager",
    "hybridnet-daemon": "hybridnet-daemon",
    "hybridnet-ctl": "hybridnet-ctl",
    "kubectl-hybridnet": "kubectl hybridnet",  # a kubectl plugin names itself as kubectl runs it
}
"""Those that answer --help, and the name their usage line gives; hybridnet-cni speaks the CNI
protocol instead (VERSION below)."""
CONTAINER = "hybridnet-image-test"
HOST_PYTHON = Path("/usr/bin/python3")
CNI_VERSION_REQUEST = b'{"cniVersion": "1.0.0"}'


@pytest.fixture(scope="module")
def image() -> build.Image:
    return build.build()


@pytest.fixture(scope="module")
def layout(image: build.Image) -> OciImage:
    return read_archive(image.archive)


class Podman:
    """``podman`` with its storage, run state and configuration in the test's directories."""

    def __init__(self, home: Path, runroot: Path) -> None:
        self.home = home
        self.runroot = runroot
        """Short: podman refuses a run root longer than 50 characters."""
        (home / "tmp").mkdir(parents=True)
        self.config = home / "containers.conf"
        self.config.write_text(
            "[containers]\n"
            # runc cannot raise these limits inside this machine's sandbox: keep them modest.
            'default_ulimits = ["nofile=1024:1024", "nproc=1024:1024"]\n'
            "[engine]\n"
            'runtime = "runc"\n'
            'cgroup_manager = "cgroupfs"\n'
            'events_logger = "file"\n'
            f'events_logfile_path = "{home / "tmp" / "events.log"}"\n'
            f'tmp_dir = "{home / "tmp"}"\n'
        )

    def __call__(
        self, *args: str, check: bool = True, stdin: bytes | None = None
    ) -> subprocess.CompletedProcess[bytes]:
        argv = ["podman", "--root", str(self.home / "root"), "--runroot", str(self.runroot),
                "--storage-driver", "vfs", *args]  # fmt: skip
        env = {**os.environ, "CONTAINERS_CONF": str(self.config)}
        done = subprocess.run(argv, env=env, input=stdin, capture_output=True, check=False)
        if check and done.returncode != 0:
            raise AssertionError(
                f"podman {' '.join(args)} failed ({done.returncode}):\n{done.stderr.decode()}"
            )
        return done


@pytest.fixture(scope="module")
def host_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("image-host")


@pytest.fixture(scope="module")
def podman(
    image: build.Image, host_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Podman]:
    """The image loaded, and one container of it running ``sleep`` with /host mounted."""
    shared_before = host_state()
    runroot = Path(tempfile.mkdtemp(prefix="hnim-"))
    home = tmp_path_factory.mktemp("podman")
    runtime = Podman(home, runroot)
    try:
        loaded = runtime("load", "--input", str(image.archive)).stdout.decode()
        assert f"Loaded image: {image.name}" in loaded, loaded
        runtime("run", "--detach", "--rm", "--name", CONTAINER, "--network", "none",
                "--volume", f"{host_dir}:/host", f"hybridnet:{build.version()}",
                "sleep", "600")  # fmt: skip
        yield runtime
        runtime("rm", "--force", "--time", "0", CONTAINER)
        assert host_state() == shared_before, "podman left something in /run/netns or the cache"
    finally:
        runtime("rm", "--force", "--time", "0", CONTAINER, check=False)
        shutil.rmtree(runroot, ignore_errors=True)
        shutil.rmtree(home, ignore_errors=True)  # the image's copies: ~1 GB in vfs storage


def host_state() -> tuple[list[str], list[str]]:
    """What a podman with networking would share with the host: network namespace mounts and
    libcni's result cache (``--network none`` should add to neither). Test-bed namespaces
    (``hnt…``) of other runs come and go at any time and are left out."""

    def names(directory: str) -> list[str]:
        path = Path(directory)
        return sorted(p.name for p in path.iterdir()) if path.is_dir() else []

    netns = [name for name in names("/run/netns") if not name.startswith(testbed.PREFIX_ROOT)]
    return netns, names("/var/lib/cni/results")


def test_the_archive_is_an_oci_image_named_for_podman_and_containerd(
    image: build.Image, layout: OciImage
) -> None:
    name = f"docker.io/library/hybridnet:{build.version()}"
    assert image.name == name and image.manifest_digest == layout.index_entry["digest"]
    assert layout.index_entry["annotations"]["io.containerd.image.name"] == name
    assert layout.index_entry["platform"] == {"architecture": "amd64", "os": "linux"}
    config = layout.config["config"]
    assert config["Cmd"] == ["hybridnet-ctl", "--help"] and "Entrypoint" not in config
    env = dict(entry.split("=", 1) for entry in config["Env"])
    assert env["PATH"].startswith("/opt/hybridnet/bin:")
    assert env["HYBRIDNET_PLUGIN_PYTHON"] == "/usr/bin/python3"
    assert config["Labels"]["org.opencontainers.image.title"] == "hybridnet"
    assert len(layout.config["history"]) == len(layout.layers) == 2


def test_the_layers_hold_debian_the_entry_points_and_nothing_of_this_machine(
    layout: OciImage,
) -> None:
    debian, application = layout.layers
    for script in (*CONSOLE_SCRIPTS, "hybridnet-cni", "exabgp"):
        entry = application[f"opt/hybridnet/bin/{script}"]
        assert entry.isfile() and entry.mode & stat.S_IXOTH, script
    assert not [name for name in application if not name.startswith("opt/hybridnet")]
    for tool in ("usr/sbin/nft", "usr/bin/ip", "usr/bin/kmod", "usr/bin/python3.11"):
        assert debian[tool].isfile() or debian[tool].issym(), tool
    assert debian["bin"].issym() and debian["bin"].linkname == "usr/bin"  # merged /usr
    assert not [name for name in debian if name.startswith(("dev/", "proc/", "sys/"))]
    assert "etc/hostname" not in debian and "etc/resolv.conf" not in debian
    assert "usr/share/perl" not in debian  # usr-is-merged, not usrmerge and all of perl
    assert not [e for layer in layout.layers for e in layer.values() if e.ischr() or e.isblk()]


def test_each_console_script_runs_in_the_image(podman: Podman) -> None:
    for script, prog in CONSOLE_SCRIPTS.items():
        done = podman("exec", CONTAINER, script, "--help")
        assert done.stdout.decode().startswith(f"usage: {prog} "), script
    # The manager's Deployment runs it as 65532, no user of the image: it reads the venv too.
    unprivileged = podman("exec", "--user", "65532:65532", CONTAINER, "hybridnet-manager", "--help")
    assert unprivileged.stdout.decode().startswith("usage: hybridnet-manager ")
    version = podman("exec", "--interactive", "--env", "CNI_COMMAND=VERSION", CONTAINER,
                     "hybridnet-cni", stdin=CNI_VERSION_REQUEST)  # fmt: skip
    assert "1.0.0" in json.loads(version.stdout)["supportedVersions"]
    # The BGP speaker's child process: the launcher and the ExaBGP function it wraps import.
    podman("exec", CONTAINER, "python3", "-I", "-c",
           "from hybridnet.bgp.launcher import install_nodelay; install_nodelay()")  # fmt: skip
    for tool in (["nft", "--version"], ["ip", "-V"], ["modprobe", "--version"]):
        podman("exec", CONTAINER, *tool)


def test_the_images_default_command_runs(podman: Podman, layout: OciImage) -> None:
    """The config's Cmd, run in the module's container (a container of its own would cost a
    second copy of the image in podman's vfs storage)."""
    done = podman("exec", CONTAINER, *layout.config["config"]["Cmd"])
    assert done.stdout.decode().startswith("usage: hybridnet-ctl ")


def test_install_in_the_image_writes_a_plugin_the_hosts_python_runs(
    podman: Podman, host_dir: Path
) -> None:
    """No --python: the image's HYBRIDNET_PLUGIN_PYTHON makes it the node's /usr/bin/python3,
    not the image's own interpreter. The plugin then runs here, outside the image, started by
    its #! line, in an empty environment."""
    done = podman("exec", CONTAINER, "hybridnet-daemon", "install",
                  "--cni-bin-dir", "/host/opt/cni/bin",
                  "--cni-conf-dir", "/host/etc/cni/net.d")  # fmt: skip
    assert "installed /host/opt/cni/bin/hybridnet" in done.stdout.decode()
    plugin = host_dir / "opt" / "cni" / "bin" / "hybridnet"
    assert plugin.read_bytes().startswith(f"#!{HOST_PYTHON} -IS\n".encode())
    assert stat.S_IMODE(plugin.stat().st_mode) == 0o755
    conflist = json.loads(
        (host_dir / "etc" / "cni" / "net.d" / "00-hybridnet.conflist").read_text()
    )
    assert conflist["plugins"][0]["type"] == "hybridnet"
    answer = subprocess.run(
        [str(plugin)],
        input=CNI_VERSION_REQUEST,
        env={"CNI_COMMAND": "VERSION"},
        capture_output=True,
        check=True,
    )
    versions = json.loads(answer.stdout)
    assert versions["cniVersion"] == "1.0.0"
    assert {"1.0.0", "1.1.0"} <= set(versions["supportedVersions"])
