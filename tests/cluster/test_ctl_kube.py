"""hybridnet-ctl end to end against the real API server: the shared scenarios, and how a
kubeconfig's context and an unreachable API server read."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from hack.controlplane import ControlPlane
from hybridnet.ctl.main import run as ctl_run
from hybridnet.lab.manager import IPAM_NAMESPACE
from hybridnet.store.kube import KubeStore
from tests.ctl_scenarios import CtlScenarios


class TestCtlOnKubernetes(CtlScenarios):
    @pytest.fixture
    def store(self, control_plane: ControlPlane) -> Iterator[KubeStore]:
        store = KubeStore.from_kubeconfig(control_plane.kubeconfig_path)
        yield store
        store.close()

    @pytest.fixture
    def where(self, control_plane: ControlPlane) -> list[str]:
        return [
            "--kubeconfig",
            str(control_plane.kubeconfig_path),
            "--ipam-namespace",
            IPAM_NAMESPACE,
        ]


def _ctl(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = ctl_run(list(argv), out, err)
    return code, out.getvalue(), err.getvalue()


def test_context_chooses_the_cluster(control_plane: ControlPlane, tmp_path: Path) -> None:
    """A kubeconfig whose current context points nowhere: --context picks the real one."""
    config = yaml.safe_load(control_plane.kubeconfig_path.read_text())
    real = config["contexts"][0]["name"]
    cluster = config["clusters"][0]
    config["clusters"].append({"name": "dead", "cluster": {**cluster["cluster"],
                               "server": "https://127.0.0.1:1"}})  # fmt: skip
    config["contexts"].append({"name": "dead", "context": {
        **config["contexts"][0]["context"], "cluster": "dead"}})  # fmt: skip
    config["current-context"] = "dead"
    path = tmp_path / "kubeconfig"
    path.write_text(yaml.safe_dump(config))
    code, _, err = _ctl("--kubeconfig", str(path), "network", "list")
    assert code == 1 and err.count("\n") == 1
    assert "cannot reach the cluster of" in err and "Connection refused" in err, err
    assert "Traceback" not in err
    code, _, err = _ctl("network", "list", "-o", "json", "--kubeconfig", str(path),
                        "--context", real)  # fmt: skip
    assert code == 0, err
