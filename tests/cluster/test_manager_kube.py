"""The manager's scenarios against the real API server."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from hack.controlplane import ControlPlane
from hybridnet.store.kube import KubeStore
from tests.manager_scenarios import ManagerScenarios


class TestManagerOnKubernetes(ManagerScenarios):
    @pytest.fixture
    def store(self, control_plane: ControlPlane) -> Iterator[KubeStore]:
        store = KubeStore.from_kubeconfig(control_plane.kubeconfig_path)
        yield store
        store.close()
