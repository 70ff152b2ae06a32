"""Shipped manifests (deploy/) on the test control plane: rendered into a test's own namespace,
applied and deleted with the real kubectl, and ``kubectl auth can-i`` as a given identity."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import yaml

from hack.controlplane import ControlPlane

SHIPPED_NAMESPACE = "kube-system"


def render(path: Path, namespace: str) -> list[dict[str, Any]]:
    """The file's objects with the shipped namespace replaced by ``namespace``."""
    documents = [d for d in yaml.safe_load_all(path.read_text()) if d]
    for document in documents:
        metadata = document["metadata"]
        if metadata.get("namespace") == SHIPPED_NAMESPACE:
            metadata["namespace"] = namespace
        for subject in document.get("subjects", []):
            if subject.get("namespace") == SHIPPED_NAMESPACE:
                subject["namespace"] = namespace
        containers = document.get("spec", {}).get("template", {}).get("spec", {})
        for container in containers.get("containers", []):
            container["args"] = [
                namespace if a == SHIPPED_NAMESPACE else a for a in container.get("args", [])
            ]
    text = yaml.safe_dump_all(documents)
    assert SHIPPED_NAMESPACE not in text, f"{path.name}: kube-system left after rendering"
    return documents


def kubectl(
    control_plane: ControlPlane, *args: str, kubeconfig: Path | None = None, stdin: str = ""
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            str(control_plane.kubectl),
            "--kubeconfig",
            str(kubeconfig or control_plane.kubeconfig_path),
            *args,
        ],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def apply(control_plane: ControlPlane, documents: list[dict[str, Any]], *extra: str) -> str:
    done = kubectl(control_plane, "apply", *extra, "-f", "-", stdin=yaml.safe_dump_all(documents))
    assert done.returncode == 0, f"kubectl apply {' '.join(extra)}: {done.stderr}"
    return done.stdout


def remove(control_plane: ControlPlane, documents: list[dict[str, Any]]) -> None:
    """Delete what :func:`apply` created; gone already is fine, and nothing waits (without a
    controller-manager a namespace would never finish deleting)."""
    kubectl(
        control_plane,
        "delete",
        "--ignore-not-found",
        "--wait=false",
        "-f",
        "-",
        stdin=yaml.safe_dump_all(documents),
    )


def can_i(control_plane: ControlPlane, kubeconfig: Path, *args: str) -> bool:
    """``kubectl auth can-i`` as the kubeconfig's own identity (a SelfSubjectAccessReview:
    the token's user and all its groups, no impersonation)."""
    done = kubectl(control_plane, "auth", "can-i", *args, kubeconfig=kubeconfig)
    answer = done.stdout.strip()
    assert answer in ("yes", "no"), f"kubectl auth can-i {' '.join(args)}: {done.stderr}"
    return answer == "yes"
