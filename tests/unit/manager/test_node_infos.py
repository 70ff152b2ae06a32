"""A departed node's NodeInfo is deleted by the leader (hybridnet/manager/nodes.py), else every
daemon keeps that node in its VXLAN FDB. The manager as the process builds it (main.Manager),
on the embedded store; with ``--kubeconfig`` it treats Nodes as registered, as on Kubernetes."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from hybridnet.api.builtin import Node
from hybridnet.api.meta import ObjectMeta
from hybridnet.api.resources import NodeInfo, NodeInfoSpec, VTEPInfo
from hybridnet.lab.manager import IPAM_NAMESPACE, Harness
from hybridnet.manager import main
from hybridnet.metrics import new_registry
from hybridnet.store.errors import NotFound
from hybridnet.store.sqlite import SQLiteStore
from tests.store_contract import wait_until


def node_info(name: str, vtep: str) -> NodeInfo:
    spec = NodeInfoSpec(VTEPInfo(ip=vtep, mac="02:00:00:00:00:01", local_ips=[vtep]))
    return NodeInfo(ObjectMeta(name=name), spec)


def exists(store: SQLiteStore, name: str) -> bool:
    try:
        store.get(NodeInfo, name)
    except NotFound:
        return False
    return True


@pytest.fixture(params=["embedded", "registered"])
def cluster(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, Harness]]:
    """Nodes ``stays`` and ``goes`` with their NodeInfos, and the NodeInfo of ``orphan``, whose
    Node was deleted before the manager started; then the manager."""
    store = SQLiteStore(tmp_path / "store.db")
    harness = Harness(store, "t")
    harness.namespace(IPAM_NAMESPACE)
    for index, name in enumerate(("stays", "goes", "orphan"), start=10):
        if name != "orphan":
            harness.node(name)
        store.create(node_info(name, f"198.18.0.{index}"))
    where = ["--store", "unused"] if request.param == "embedded" else ["--kubeconfig", "unused"]
    args = main.parse_args([*where, "--no-leader-elect"])
    manager = main.Manager(store, args, new_registry(), watch_timeout=0.5)
    manager.start()
    try:
        yield request.param, harness
    finally:
        manager.stop()
        store.close()


def test_the_nodeinfo_of_a_deleted_node_is_deleted_and_no_other(
    cluster: tuple[str, Harness],
) -> None:
    _, harness = cluster
    store = harness.store
    assert isinstance(store, SQLiteStore)
    store.delete(Node, "goes")
    wait_until(lambda: not exists(store, "goes"), "the departed node's NodeInfo deleted")
    assert exists(store, "stays")


def test_a_nodeinfo_whose_node_was_deleted_before_the_leader_started(
    cluster: tuple[str, Harness],
) -> None:
    """Where Nodes are registered (Kubernetes), the leader deletes it at start. On the embedded
    store, where daemons need no Node, it is kept: the start marks orphans before any later
    change, and marks are synced oldest first, so once the NodeInfo of a Node deleted after
    the start is gone, a swept orphan would be gone too."""
    mode, harness = cluster
    store = harness.store
    assert isinstance(store, SQLiteStore)
    store.delete(Node, "goes")
    wait_until(lambda: not exists(store, "goes"), "the departed node's NodeInfo deleted")
    if mode == "registered":
        wait_until(lambda: not exists(store, "orphan"), "the orphan NodeInfo deleted")
    else:
        assert exists(store, "orphan")
    assert exists(store, "stays")


@pytest.mark.parametrize("cluster", ["registered"], indirect=True)
def test_a_nodeinfo_written_again_after_its_node_was_deleted_is_deleted_again(
    cluster: tuple[str, Harness],
) -> None:
    """A daemon that saw its NodeInfo go before its Node (two watches, no order between them)
    writes it again; where Nodes are registered, that write's event brings the deletion."""
    _, harness = cluster
    store = harness.store
    assert isinstance(store, SQLiteStore)
    store.delete(Node, "goes")
    wait_until(lambda: not exists(store, "goes"), "the departed node's NodeInfo deleted")
    store.create(node_info("goes", "198.18.0.11"))
    wait_until(lambda: not exists(store, "goes"), "the NodeInfo written again deleted again")
    assert exists(store, "stays")
