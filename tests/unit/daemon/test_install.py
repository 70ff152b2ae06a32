"""Installing the plugin and its conflist: atomic, idempotent, the runtime-facing shape."""

from __future__ import annotations

import json
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from hybridnet.daemon import bundle, install


def test_install_writes_plugin_and_conflist(tmp_path: Path) -> None:
    bin_dir, conf_dir = tmp_path / "opt/cni/bin", tmp_path / "etc/cni/net.d"
    python = "/usr/bin/python3"
    plugin, config = install.install(python, bin_dir, conf_dir, Path("/run/h/d.sock"), mtu=1450)
    assert plugin == bin_dir / "hybridnet"
    assert plugin.read_bytes() == bundle.build(python)
    assert plugin.read_bytes().startswith(b"#!/usr/bin/python3 -IS\n")
    assert stat.S_IMODE(plugin.stat().st_mode) == 0o755
    assert config == conf_dir / "00-hybridnet.conflist"
    document = json.loads(config.read_text())
    assert document["cniVersion"] == "1.0.0" and document["name"] == "hybridnet"
    assert document["cniVersions"] == ["1.0.0", "1.1.0"]  # newer runtimes may pick 1.1.0
    assert document["plugins"] == [{"type": "hybridnet", "socket": "/run/h/d.sock", "mtu": 1450}]
    # Idempotent, and no temporary files are left behind.
    install.install(python, bin_dir, conf_dir, Path("/run/h/d.sock"), mtu=1450)
    assert sorted(p.name for p in conf_dir.iterdir()) == ["00-hybridnet.conflist"]
    assert sorted(p.name for p in bin_dir.iterdir()) == ["hybridnet"]


@pytest.mark.parametrize("python", ["python3", "/opt/my python/bin/python3", "/" + "p" * 130])
def test_an_interpreter_no_kernel_can_start_is_refused_in_one_line(
    python: str, tmp_path: Path
) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "hybridnet.daemon.main", "install", "--cni-bin-dir",
         str(tmp_path / "bin"), "--cni-conf-dir", str(tmp_path / "conf"), "--python", python],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert done.returncode == 1
    assert done.stderr.startswith("hybridnet-daemon install: --python")
    assert done.stderr.count("\n") == 1
    assert not (tmp_path / "bin").exists() and not (tmp_path / "conf").exists()


def test_without_python_the_plugin_gets_the_interpreter_the_environment_names(
    tmp_path: Path,
) -> None:
    """In the image, the default would be the image's own interpreter (/usr/bin/python3.11 there,
    absent on a node whose python3 is another version): the image names the node's in
    HYBRIDNET_PLUGIN_PYTHON instead."""
    done = subprocess.run(
        [sys.executable, "-m", "hybridnet.daemon.main", "install", "--cni-bin-dir",
         str(tmp_path / "bin"), "--cni-conf-dir", str(tmp_path / "conf")],
        capture_output=True, text=True, check=False,
        env={"HYBRIDNET_PLUGIN_PYTHON": "/usr/bin/python3"},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "bin" / "hybridnet").read_bytes().startswith(b"#!/usr/bin/python3 -IS\n")


def test_without_python_or_the_environment_the_plugin_gets_this_interpreter(
    tmp_path: Path,
) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "hybridnet.daemon.main", "install", "--cni-bin-dir",
         str(tmp_path / "bin"), "--cni-conf-dir", str(tmp_path / "conf")],
        capture_output=True, text=True, check=False, env={},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    shebang = f"#!{Path(sys.executable).resolve()} -IS\n".encode()
    assert (tmp_path / "bin" / "hybridnet").read_bytes().startswith(shebang)
