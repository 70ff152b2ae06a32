"""Fixtures of the real-cluster tier: one 3-node cluster (real kubelet + containerd) per module.

:func:`real_cluster` runs the reference bridge + host-local chain (:class:`hack.realcluster.cni.
ReferenceBridge`); test_hybridnet.py makes its own with hybridnet installed by its chart.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterator

import pytest
from kubernetes import client

from hack.controlplane import ControlPlaneError, close_api_client
from hack.realcluster.cluster import RealCluster
from hack.realcluster.cni import CniSetup, ReferenceBridge
from hybridnet.lab.netns import TestbedRun
from tests.cluster.conftest import control_plane_binaries

NODES = 3


def require_node_binaries() -> None:
    """Build the node binaries when needed; skip only when they are missing and Go is too."""
    from hack.realcluster.binaries import build_node_binaries  # noqa: PLC0415

    control_plane_binaries()
    try:
        build_node_binaries()
    except ControlPlaneError as exc:
        if shutil.which("go") is None:
            pytest.skip(f"real-cluster tier: node binaries are not built and Go is missing: {exc}")
        raise


@contextlib.contextmanager
def running_cluster(testbed_run: TestbedRun, cni: CniSetup) -> Iterator[RealCluster]:
    """Three Ready nodes, the scheduler and the controller manager with ``cni`` installed;
    stopped on leaving (skipped without root)."""
    if os.geteuid() != 0:
        pytest.skip("real-cluster tier: needs root (namespaces, mounts, cgroups)")
    require_node_binaries()
    cluster = RealCluster(testbed_run, nodes=NODES, cni=cni)
    cluster.start()
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(scope="module")
def real_cluster(testbed_run: TestbedRun) -> Iterator[RealCluster]:
    """The reference chain's cluster, removed after the module (the next module may start a
    cluster of its own on the same run's names)."""
    with running_cluster(testbed_run, ReferenceBridge()) as cluster:
        yield cluster


@pytest.fixture
def kube(real_cluster: RealCluster) -> Iterator[client.ApiClient]:
    """An admin API client of the session's cluster; closed after the test."""
    api_client = real_cluster.api_client()
    yield api_client
    close_api_client(api_client)
