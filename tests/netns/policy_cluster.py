"""The pods of the NetworkPolicy tests on the virtual cluster: three namespaces x, y, z with a
pod a, b, c each (as the upstream e2e suite has), spread over the three nodes so that every
node holds overlay and underlay pods, with named container ports and TCP+UDP servers.

The lab writes a Pod object without labels or ports; the tests need both, so the Pod is
updated with them before its CNI ADD (as a Pod arrives at a kubelet with them)."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import time
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from hybridnet.api.builtin import Namespace as NamespaceObject
from hybridnet.api.builtin import NetworkPolicy, Pod
from hybridnet.api.meta import ObjectMeta
from hybridnet.api.resources import IPInstance
from hybridnet.daemon.datapath.view import PolicyView
from hybridnet.lab.cluster import OUTSIDE_V4, OUTSIDE_V6, Cluster, ClusterNode, ClusterPod
from hybridnet.store.errors import Conflict
from hybridnet.store.interface import Store
from tests.netns.policy_cases import (
    KINDS,
    NAMESPACES,
    POD_NAMES,
    PORTS,
    namespace_labels,
    pod_labels,
    port_names,
)
from tests.netns.policy_matrix import Peer

IPAM_NAMESPACE = "kube-system"
OUTSIDE_EXTRA_V4 = "198.18.100.11"
OUTSIDE_EXTRA_V6 = "2001:db8:100::11"


@dataclasses.dataclass
class PolicyPods:
    cluster: Cluster
    pods: dict[str, Peer]
    """``ns/name`` -> the pod as a probe peer."""
    nodes: dict[str, Peer]
    outside: Peer
    """The host behind the gateway, at OUTSIDE_V4/6 (and OUTSIDE_EXTRA_V4/6 as ``outside2``)."""
    outside_extra: Peer
    members: dict[str, ClusterPod]

    def pod(self, name: str) -> Peer:
        return self.pods[name]

    @property
    def all_pods(self) -> list[Peer]:
        return list(self.pods.values())

    def relabel(self, name: str, labels: Mapping[str, str]) -> None:
        """Replace the pod's labels in the store (retrying on a concurrent status write)."""
        namespace, _, pod_name = name.partition("/")
        while True:
            current = self.cluster.store.get(Pod, pod_name, namespace)
            current.metadata.labels = dict(labels)
            try:
                self.cluster.store.update(current)
            except Conflict:
                continue
            return


def create(cluster: Cluster) -> PolicyPods:
    """The namespaces, the pods (attached through the real plugin), their servers, and the
    outside host's second address and server."""
    for namespace in NAMESPACES:
        meta = ObjectMeta(name=namespace, labels=namespace_labels(namespace))
        cluster.store.create(NamespaceObject(meta))
    nodes = {
        node.name: Peer(node.name, node.host, {4: node.host.ipv4, 6: node.host.ipv6})
        for node in cluster.nodes
    }
    pods: dict[str, Peer] = {}
    members: dict[str, ClusterPod] = {}
    for namespace in NAMESPACES:
        for index, name in enumerate(POD_NAMES):
            node = cluster.nodes[index]
            member = add_pod(cluster, node, namespace, name, KINDS[namespace][index])
            key = f"{namespace}/{name}"
            members[key] = member
            pods[key] = Peer(
                key,
                member.netns,
                {4: member.ipv4, 6: member.ipv6},
                node=nodes[node.name],
            )
    outside = cluster.outside
    outside.ip("addr", "add", f"{OUTSIDE_EXTRA_V4}/24", "dev", "eth0")
    outside.ip("-6", "addr", "add", f"{OUTSIDE_EXTRA_V6}/64", "dev", "eth0", "nodad")
    far = Peer("outside", outside, {4: OUTSIDE_V4, 6: OUTSIDE_V6})
    far_extra = Peer("outside2", outside, {4: OUTSIDE_EXTRA_V4, 6: OUTSIDE_EXTRA_V6})
    far.start_server(PORTS, [OUTSIDE_V4, OUTSIDE_V6, OUTSIDE_EXTRA_V4, OUTSIDE_EXTRA_V6])
    far_extra.server = far.server  # one server on both pairs of addresses
    for peer in pods.values():
        peer.start_server(PORTS)
    return PolicyPods(cluster, pods, nodes, far, far_extra, members)


def add_pod(
    cluster: Cluster,
    node: ClusterNode,
    namespace: str,
    name: str,
    network_type: str,
    *,
    labels: Mapping[str, str] | None = None,
) -> ClusterPod:
    """A pod with ``labels`` (default ``pod=<name>``) and the named ports, attached."""
    member = cluster.create_pod(node, name, network_type, namespace=namespace)
    try:
        stored = cluster.store.get(Pod, name, namespace)
        stored.metadata.labels = dict(labels if labels is not None else pod_labels(name))
        stored.body["spec"]["containers"][0]["ports"] = port_names()
        cluster.store.update(stored)
        return cluster.attach(member)
    except BaseException:
        cluster.delete_pod(member)
        raise


# --------------------------------------------------------------------------- enforcement


APPLIED = "network policy applied"
ENFORCE_TIMEOUT = 60.0
"""Bound on waiting for every daemon to log the inputs' digest: reached only when broken."""


def inputs_digest(store: Store, ipam_namespace: str = IPAM_NAMESPACE) -> str:
    """The digest each daemon logs once it enforces what the store holds now."""
    view = PolicyView(
        pods=_by_key(store.list(Pod).items),
        namespaces=_by_key(store.list(NamespaceObject).items),
        policies=_by_key(store.list(NetworkPolicy).items),
        addresses=_by_key(store.list(IPInstance, ipam_namespace).items),
    )
    return view.digest()


def _by_key(items: Sequence[Any]) -> tuple[Any, ...]:
    return tuple(sorted(items, key=lambda o: (o.metadata.namespace or "", o.metadata.name)))


@contextlib.contextmanager
def enforced(cluster: Cluster) -> Iterator[None]:
    """Make changes inside; on leaving, wait until every node's daemon has logged that it
    enforces exactly what the store then holds (lines written after entering count)."""
    offsets = {node.name: node.log.stat().st_size for node in cluster.nodes}
    yield
    digest = inputs_digest(cluster.store)
    deadline = time.monotonic() + ENFORCE_TIMEOUT
    waiting = list(cluster.nodes)
    while waiting:
        waiting = [n for n in waiting if not _logged(n, offsets[n.name], digest)]
        if waiting and time.monotonic() > deadline:
            names = ", ".join(n.name for n in waiting)
            raise AssertionError(f"{names} did not log {APPLIED!r} for inputs {digest}")
        time.sleep(0.02)


def _logged(node: ClusterNode, offset: int, digest: str) -> bool:
    with node.log.open("rb") as log:
        log.seek(offset)
        for raw in log:
            if b"inputs" not in raw:
                continue
            line = json.loads(raw)
            if line.get("msg") == APPLIED and line.get("inputs") == digest:
                return True
    return False


def policy(namespace: str, name: str, spec: Mapping[str, Any]) -> NetworkPolicy:
    return NetworkPolicy(ObjectMeta(name=name, namespace=namespace), body={"spec": dict(spec)})


@contextlib.contextmanager
def policies(cluster: Cluster, *items: NetworkPolicy) -> Iterator[None]:
    """The policies, enforced on every node inside; deleted (and that enforced) after."""
    with enforced(cluster):
        for item in items:
            cluster.store.create(item)
    try:
        yield
    finally:
        with enforced(cluster):
            for item in items:
                cluster.store.delete(NetworkPolicy, item.name, item.metadata.namespace)
