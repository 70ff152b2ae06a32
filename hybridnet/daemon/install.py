"""Install the CNI plugin and its network configuration on the node, atomically.

The plugin is written as one self-contained file (:mod:`hybridnet.daemon.bundle`) that runs
under the node's python3 without this package's virtual environment.

A runtime may read the configuration directory at any moment: files are written to a temporary
name in the same directory and renamed into place, so it never sees half a file.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

from hybridnet.daemon import bundle

CONFLIST_NAME = "00-hybridnet.conflist"
PLUGIN_NAME = "hybridnet"


CONF_VERSION = "1.0.0"
CONF_VERSIONS = ["1.0.0", "1.1.0"]


def conflist(socket_path: Path, mtu: int | None = None) -> dict[str, object]:
    """The network configuration. ``cniVersion`` is 1.0.0 because runtimes built on libcni
    before 1.2 (podman 4, containerd 1.7) refuse 1.1.0 results; ``cniVersions`` (CNI 1.1) lets
    newer ones choose 1.1.0, and with it STATUS and GC."""
    plugin: dict[str, object] = {"type": PLUGIN_NAME, "socket": str(socket_path)}
    if mtu:
        plugin["mtu"] = mtu
    return {
        "cniVersion": CONF_VERSION,
        "cniVersions": CONF_VERSIONS,
        "name": "hybridnet",
        "plugins": [plugin],
    }


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
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)  # the rename itself survives a crash of the node
    finally:
        os.close(directory)


def install(
    interpreter: str, bin_dir: Path, conf_dir: Path, socket_path: Path, mtu: int | None = None
) -> tuple[Path, Path]:
    """Write the plugin (bundled for ``interpreter``) to ``bin_dir/hybridnet`` and the conflist."""
    plugin = install_plugin(interpreter, bin_dir)
    config = conf_dir / CONFLIST_NAME
    _atomic_write(config, (json.dumps(conflist(socket_path, mtu), indent=2) + "\n").encode(), 0o644)
    return plugin, config


def install_plugin(interpreter: str, bin_dir: Path) -> Path:
    """Only the plugin executable (see :mod:`hybridnet.daemon.bundle`)."""
    plugin = bin_dir / PLUGIN_NAME
    _atomic_write(plugin, bundle.build(interpreter), 0o755)
    return plugin
