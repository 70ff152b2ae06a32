"""The node binaries (kubelet, scheduler, controller manager, containerd, pause), built once by
``build.sh`` into a cache outside the tree, like the control plane's."""

from __future__ import annotations

from pathlib import Path

from hack.controlplane.binaries import REPO_ROOT, checked_binaries

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
    return checked_binaries(BUILD_SCRIPT, BINARIES, timeout)
