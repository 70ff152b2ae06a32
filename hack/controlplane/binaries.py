"""kube-apiserver, etcd and kubectl, built once by ``build.sh`` into a cache outside the tree."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from hack.controlplane.errors import ControlPlaneError

REPO_ROOT = Path(__file__).resolve().parents[2]
BUILD_SCRIPT = REPO_ROOT / "hack" / "controlplane" / "build.sh"
BINARIES = ("etcd", "kube-apiserver", "kubectl")


def run_build_script(script: Path, timeout: float | None = None) -> Path:
    """Run a cached build script (instant when its cache is complete; the control plane's, the
    real cluster's and helm's all work so) and return the directory it prints last."""
    try:
        done = subprocess.run(
            [str(script)], capture_output=True, text=True, check=False, timeout=timeout
        )
    except subprocess.TimeoutExpired as exc:
        raise ControlPlaneError(f"{script} did not finish within {timeout}s") from exc
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        raise ControlPlaneError(
            f"{script} failed (exit {done.returncode}):\n{done.stderr.strip()[-3000:]}"
        )
    return Path(lines[-1])


def checked_binaries(script: Path, names: tuple[str, ...], timeout: float | None = None) -> Path:
    """run_build_script's directory, once it holds every one of ``names`` as an executable."""
    bin_dir = run_build_script(script, timeout)
    missing = [name for name in names if not os.access(bin_dir / name, os.X_OK)]
    if missing:
        raise ControlPlaneError(f"{script} printed {bin_dir}, which lacks {missing}")
    return bin_dir


def build_binaries(timeout: float | None = None) -> Path:
    """Run ``build.sh`` (instant when the cache is complete) and return the binaries' directory."""
    return checked_binaries(BUILD_SCRIPT, BINARIES, timeout)
