"""Installing the plugin and its conflist: atomic, idempotent, the runtime-facing shape."""

from __future__ import annotations

import json
import stat
from pathlib import Path

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
    assert document["cniVersion"] == "1.1.0" and document["name"] == "hybridnet"
    assert document["plugins"] == [{"type": "hybridnet", "socket": "/run/h/d.sock", "mtu": 1450}]
    # Idempotent, and no temporary files are left behind.
    install.install(python, bin_dir, conf_dir, Path("/run/h/d.sock"), mtu=1450)
    assert sorted(p.name for p in conf_dir.iterdir()) == ["00-hybridnet.conflist"]
    assert sorted(p.name for p in bin_dir.iterdir()) == ["hybridnet"]
