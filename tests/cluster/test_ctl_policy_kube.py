"""``hybridnet-ctl policy explain`` against the real API server: the shared scenarios, with
NetworkPolicies, Pods (status written through the status subresource) and Namespaces as the
API server validates and stores them."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from hack.controlplane import ControlPlane
from hybridnet.store.kube import KubeStore
from tests.ctl_policy_scenarios import PolicyExplainScenarios


class TestPolicyExplainOnKubernetes(PolicyExplainScenarios):
    @pytest.fixture
    def store(self, control_plane: ControlPlane) -> Iterator[KubeStore]:
        store = KubeStore.from_kubeconfig(control_plane.kubeconfig_path)
        yield store
        store.close()

    @pytest.fixture
    def where(self, control_plane: ControlPlane) -> list[str]:
        return ["--kubeconfig", str(control_plane.kubeconfig_path)]
