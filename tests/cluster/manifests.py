"""What the chart ships, on the test control plane: the chart (deploy/helm/hybridnet) rendered
into a test's own namespace by the real helm, applied and deleted with the real kubectl, and
``kubectl auth can-i`` as a given identity."""

from __future__ import annotations

import functools
import shutil
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml

from hack.controlplane import ControlPlane
from hack.helm import HelmError, HelmTools, build_helm, documents, template


@functools.cache
def _tools() -> HelmTools | str:
    try:
        return build_helm()
    except HelmError as exc:
        if shutil.which("go") is None:
            return f"helm is not built and Go is missing: {exc}"
        raise


def helm_tools() -> HelmTools:
    """helm (built once by hack/helm/build.sh, ``make helm``) and cert-manager's CRDs. Skips
    only when they are not built and there is no Go to build them; a failing build is an
    error."""
    tools = _tools()
    if isinstance(tools, str):
        pytest.skip(f"cluster tier: {tools}")
    return tools


def render(
    template_path: str, namespace: str, values: Mapping[str, Any] | None = None
) -> list[dict[str, Any]]:
    """The objects of one chart template (``manager/rbac.yaml``: templates/manager/rbac.yaml)
    as the chart renders them for a release in ``namespace``, with ``values`` over the
    defaults: exactly what `helm install -n NAMESPACE` would create from it."""
    helm = helm_tools().helm
    rendered = template(helm, namespace, values, "--show-only", f"templates/{template_path}")
    found = documents(rendered)
    assert found, f"templates/{template_path} rendered nothing"
    return found


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
