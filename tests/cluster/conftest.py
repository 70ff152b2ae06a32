"""Fixtures of the cluster tier: one real kube-apiserver + etcd for the whole session."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from kubernetes import client

from hack.controlplane import (
    DEFAULT_CRD_DIR,
    ControlPlane,
    ControlPlaneError,
    build_binaries,
    close_api_client,
)


def control_plane_binaries() -> Path:
    """The cache directory with kube-apiserver, etcd and kubectl, built first when needed.

    Skips (with the reason) only when the binaries are not built and there is no Go to build
    them; a failing build is an error. A cold build takes many minutes: CI builds them in its
    own step (``make controlplane``) before the tests.
    """
    try:
        return build_binaries()
    except ControlPlaneError as exc:
        if shutil.which("go") is None:
            pytest.skip(
                f"cluster tier: control-plane binaries are not built and Go is missing: {exc}"
            )
        raise


@pytest.fixture(scope="session")
def control_plane() -> Iterator[ControlPlane]:
    """A started control plane with ``deploy/crds/*.yaml`` installed; stopped at session end."""
    if os.geteuid() != 0:
        pytest.skip(
            "cluster tier: needs root (the API server is exposed inside test-bed namespaces)"
        )
    plane = ControlPlane(bin_dir=control_plane_binaries())
    plane.start()
    try:
        if any(DEFAULT_CRD_DIR.glob("*.yaml")):
            plane.install_crds(DEFAULT_CRD_DIR)
        yield plane
    finally:
        plane.stop()


@pytest.fixture
def kube_api(control_plane: ControlPlane) -> Iterator[client.ApiClient]:
    """A ``kubernetes.client.ApiClient`` with the admin kubeconfig; closed after the test."""
    api_client = control_plane.api_client()
    yield api_client
    close_api_client(api_client)
