"""Install the CNI plugin and its network configuration on the node, atomically.

A runtime may read the configuration directory at any moment: files are written to a temporary
name in the same directory and renamed into place, so it never sees half a file.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

CONFLIST_NAME = "00-hybridnet.conflist"
PLUGIN_NAME = "hybridnet"


def conflist(socket_path: Path, mtu: int | None = None) -> dict[str, object]:
    plugin: dict[str, object] = {"type": PLUGIN_NAME, "socket": str(socket_path)}
    if mtu:
        plugin["mtu"] = mtu
    return {"cniVersion": "1.1.0", "name": "hybridnet", "plugins": [plugin]}


def _atomic_write(path: Path, data: bytes, mode: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def install(
    plugin_source: Path, bin_dir: Path, conf_dir: Path, socket_path: Path, mtu: int | None = None
) -> tuple[Path, Path]:
    """Copy the plugin executable to ``bin_dir/hybridnet`` and write the conflist."""
    plugin = bin_dir / PLUGIN_NAME
    _atomic_write(plugin, plugin_source.read_bytes(), 0o755)
    config = conf_dir / CONFLIST_NAME
    _atomic_write(config, (json.dumps(conflist(socket_path, mtu), indent=2) + "\n").encode(), 0o644)
    return plugin, config


def plugin_executable() -> Path:
    """The installed ``hybridnet-cni`` console script (what the runtime will execute)."""
    found = shutil.which("hybridnet-cni")
    if found is None:
        raise FileNotFoundError("hybridnet-cni is not installed (pip install hybridnet)")
    return Path(found)
