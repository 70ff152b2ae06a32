"""The Kubernetes store keeps as many connections open as its caller says it will use at once:
the manager's workers each hold one during a request and every informer one for its watch, and
a request beyond the pool's size costs a fresh TLS connection, thrown away afterwards."""

from __future__ import annotations

from pathlib import Path

from hybridnet.manager import main
from hybridnet.store.kube import KubeStore

KUBECONFIG = """\
apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: "https://127.0.0.1:6443"}}]
users: [{name: u, user: {token: t}}]
contexts: [{name: x, context: {cluster: c, user: u}}]
current-context: x
"""


def pool_size(store: KubeStore) -> object:
    return store._client.rest_client.pool_manager.connection_pool_kw.get("maxsize")


def test_the_pool_holds_the_connections_asked_for(tmp_path: Path) -> None:
    path = tmp_path / "kubeconfig"
    path.write_text(KUBECONFIG)
    store = KubeStore.from_kubeconfig(path, connections=40)
    try:
        assert pool_size(store) == 40
    finally:
        store.close()


def test_the_manager_asks_for_one_per_worker_and_its_other_requests(tmp_path: Path) -> None:
    path = tmp_path / "kubeconfig"
    path.write_text(KUBECONFIG)
    args = main.parse_args(["--kubeconfig", str(path), "--workers", "24"])
    store = main.open_store(args)
    try:
        assert isinstance(store, KubeStore)
        assert pool_size(store) == 24 + main.CONNECTIONS_BESIDES_WORKERS
    finally:
        store.close()
