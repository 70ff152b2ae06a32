"""hybridnet-ctl against real daemons: node diagnose on the virtual cluster (three node
namespaces, each with its daemon and node datapath on one embedded store) shows a route
deleted by hand, and ipam check compares the store with what each node has attached.

The daemons resync only every 10 minutes here, and nothing changes in the store between the
route's deletion and the diagnosis, so no reconcile runs that could heal it before it is seen
(a resync or an event would be needed).
"""

from __future__ import annotations

import copy
import dataclasses
import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from hybridnet import lab as testbed
from hybridnet.api.naming import pod_selector
from hybridnet.api.resources import IPInstance
from hybridnet.ctl.main import run as ctl_run
from hybridnet.lab.cluster import Cluster, ClusterConfig, ClusterNode
from hybridnet.lab.manager import IPAM_NAMESPACE

pytestmark = pytest.mark.root

OVERLAY_TABLE = 40000
ROUTE_PROTOCOL = "104"


@pytest.fixture(scope="module")
def cluster(
    testbed_run: testbed.TestbedRun, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Cluster]:
    config = ClusterConfig(resync_period=600.0)
    with Cluster(testbed_run, tmp_path_factory.mktemp("ctl-cluster"), config) as built:
        built.create_networks()
        built.wait_converged()
        built.add_pod(built.nodes[0], "web", "Overlay")
        yield built


def ctl(cluster: Cluster, *argv: str) -> tuple[int, Any, str]:
    out, err = io.StringIO(), io.StringIO()
    where = ["--store", str(cluster.store_path), "--ipam-namespace", IPAM_NAMESPACE]
    code = ctl_run([*where, *argv, "-o", "json"], out, err)
    return code, json.loads(out.getvalue()) if out.getvalue() else None, err.getvalue()


def socket_template(cluster: Cluster) -> str:
    return str(Path(cluster.directory) / "{node}" / "run" / "daemon.sock")


def overlay_route(node: ClusterNode) -> str:
    """The first route the node's datapath put in the overlay table."""
    shown = node.host.ip("-4", "route", "show", "table", str(OVERLAY_TABLE), "proto",
                         ROUTE_PROTOCOL).stdout  # fmt: skip
    return shown.splitlines()[0]


def test_diagnose_shows_a_route_deleted_by_hand(cluster: Cluster) -> None:
    node = cluster.nodes[1]
    code, found, err = ctl(cluster, "node", "diagnose", node.name, "--socket",
                           socket_template(cluster))  # fmt: skip
    assert code == 0, err
    assert found["differences"] == [] and found["node"] == node.name
    route = overlay_route(node)
    destination = route.split()[0]
    node.host.ip("route", "del", *route.split(), "table", str(OVERLAY_TABLE))
    code, found, err = ctl(cluster, "node", "diagnose", node.name, "--socket",
                           socket_template(cluster))  # fmt: skip
    assert code == 3, err
    missing = [d for d in found["differences"] if d["state"] == "missing"]
    assert [d["kind"] for d in missing] == ["route"], found
    assert missing[0]["object"].startswith(f"route {destination} ")
    assert f"table {OVERLAY_TABLE}" in missing[0]["object"]
    out, err_stream = io.StringIO(), io.StringIO()
    code = ctl_run(["node", "diagnose", node.name, "--socket", socket_template(cluster)],
                   out, err_stream)  # fmt: skip
    assert code == 3
    assert out.getvalue().splitlines()[1].split()[:3] == ["missing", "route", "route"]
    assert "1 difference(s)" in err_stream.getvalue()


def test_diagnose_of_the_wrong_node_says_so(cluster: Cluster) -> None:
    first, second = cluster.nodes[0], cluster.nodes[1]
    wrong = str(Path(cluster.directory) / second.name / "run" / "daemon.sock")
    code, _, err = ctl(cluster, "node", "diagnose", first.name, "--socket", wrong)
    assert code == 1 and f"serves node {second.name}, not {first.name}" in err


def test_check_compares_the_store_with_the_nodes(cluster: Cluster) -> None:
    (pod,) = [p for p in cluster.pods if p.name == "web"]
    code, found, err = ctl(cluster, "ipam", "check", "--socket", socket_template(cluster))
    assert code == 0, (found, err)
    assert found == {"findings": [], "notes": []}
    store = cluster.store
    held = store.list(IPInstance, "kube-system", pod_selector(pod.namespace, pod.name)).items
    ghost = copy.deepcopy(held[0])
    ghost.metadata = dataclasses.replace(ghost.metadata, name="198-19-0-250",
                                         resource_version=None, uid=None)  # fmt: skip
    ghost.spec.address.ip = "198.19.0.250/24"
    ghost.metadata.labels = {**ghost.metadata.labels, "networking.alibaba.com/pod": "ghost"}
    assert ghost.spec.binding is not None
    ghost.spec.binding.pod_name = "ghost"
    created = store.create(ghost)
    created.status.sandbox_id, created.status.node_name = "f" * 64, pod.node.name
    store.update_status(created)
    try:
        code, found, err = ctl(cluster, "ipam", "check", "--socket", socket_template(cluster))
        assert code == 3
        kinds = {(f["kind"], f["address"]) for f in found["findings"]}
        assert ("not-on-node", "198.19.0.250") in kinds
        assert ("leak", "198.19.0.250") in kinds  # no Pod object "ghost" either
        for instance in held:
            store.delete(IPInstance, instance.name, "kube-system")
        code, found, _ = ctl(cluster, "ipam", "check", "--socket", socket_template(cluster))
        unstored = {f["address"] for f in found["findings"] if f["kind"] == "not-in-store"}
        assert unstored == {i.spec.address.ip.split("/")[0] for i in held}
    finally:
        store.delete(IPInstance, created.name, "kube-system")
