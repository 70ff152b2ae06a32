"""The node binaries (kubelet, scheduler, controller manager, containerd, pause), built once by
``build.sh`` into a cache outside the tree, like the control plane's."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from hack.controlplane.binaries import REPO_ROOT
from hack.controlplane.errors import ControlPlaneError

BUILD_SCRIPT = REPO_ROOT / "hack" / "realcluster" / "build.sh"
BINARIES = (
    "kubelet",
    "kube-scheduler",
    "kube-controller-manager",
    "containerd",
    "containerd-shim-runc-v2",
    "ctr",
    "pause",
)


def build_node_binaries(timeout: float | None = None) -> Path:
    """Run ``build.sh`` (instant when the cache is complete) and return the binaries' directory."""
    try:
        done = subprocess.run(
            [str(BUILD_SCRIPT)], capture_output=True, text=True, check=False, timeout=timeout
        )
    except subprocess.TimeoutExpired as exc:
        raise ControlPlaneError(f"{BUILD_SCRIPT} did not finish within {timeout}s") from exc
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        raise ControlPlaneError(
            f"{BUILD_SCRIPT} failed (exit {done.returncode}):\n{done.stderr.strip()[-3000:]}"
        )
    bin_dir = Path(lines[-1])
    missing = [name for name in BINARIES if not os.access(bin_dir / name, os.X_OK)]
    if missing:
        raise ControlPlaneError(f"{BUILD_SCRIPT} printed {bin_dir}, which lacks {missing}")
    return bin_dir
