"""Installing the plugin and its conflist: atomic, idempotent, the runtime-facing shape."""

from __future__ import annotations

import json
import stat
from pathlib import Path

from hybridnet.daemon import install


def test_install_writes_plugin_and_conflist(tmp_path: Path) -> None:
    source = tmp_path / "hybridnet-cni"
    source.write_bytes(b"#!/bin/sh\necho plugin\n")
    bin_dir, conf_dir = tmp_path / "opt/cni/bin", tmp_path / "etc/cni/net.d"
    plugin, config = install.install(source, bin_dir, conf_dir, Path("/run/h/d.sock"), mtu=1450)
    assert plugin == bin_dir / "hybridnet" and plugin.read_bytes() == source.read_bytes()
    assert stat.S_IMODE(plugin.stat().st_mode) == 0o755
    assert config == conf_dir / "00-hybridnet.conflist"
    document = json.loads(config.read_text())
    assert document["cniVersion"] == "1.1.0" and document["name"] == "hybridnet"
    assert document["plugins"] == [{"type": "hybridnet", "socket": "/run/h/d.sock", "mtu": 1450}]
    # Idempotent, and no temporary files are left behind.
    install.install(source, bin_dir, conf_dir, Path("/run/h/d.sock"), mtu=1450)
    assert sorted(p.name for p in conf_dir.iterdir()) == ["00-hybridnet.conflist"]
    assert sorted(p.name for p in bin_dir.iterdir()) == ["hybridnet"]
