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
from ipaddress import ip_interface
from pathlib import Path
from typing import Any

from hybridnet.api.builtin import Namespace as NamespaceObject
from hybridnet.api.builtin import NetworkPolicy, Pod
from hybridnet.api.meta import ObjectMeta
from hybridnet.api.resources import IPInstance
from hybridnet.daemon.attachment import MARK_PREFIX
from hybridnet.daemon.datapath.view import PolicyView
from hybridnet.lab.cluster import OUTSIDE_V4, OUTSIDE_V6, Cluster, ClusterNode, ClusterPod
from hybridnet.lab.netns import Namespace as NetworkNamespace
from hybridnet.policy.model import Direction
from hybridnet.policy.render import DEFAULT_TABLE, FAMILY, counter_name, drop_counts
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
        relabel(self.cluster.store, name, labels)


def relabel(store: Store, name: str, labels: Mapping[str, str]) -> None:
    """Replace the pod's (``ns/name``) labels in the store (retrying on a concurrent status
    write)."""
    namespace, _, pod_name = name.partition("/")
    while True:
        current = store.get(Pod, pod_name, namespace)
        current.metadata.labels = dict(labels)
        try:
            store.update(current)
        except Conflict:
            continue
        return


def describe_pod(store: Store, namespace: str, name: str, labels: Mapping[str, str]) -> None:
    """Give a stored Pod ``labels`` and the named ports (as it reaches a kubelet with them)."""
    stored = store.get(Pod, name, namespace)
    stored.metadata.labels = dict(labels)
    stored.body["spec"]["containers"][0]["ports"] = port_names()
    store.update(stored)


def create_namespaces(store: Store, names: Sequence[str]) -> None:
    for namespace in names:
        meta = ObjectMeta(name=namespace, labels=namespace_labels(namespace))
        store.create(NamespaceObject(meta))


def default_layout() -> dict[str, tuple[str, int]]:
    """``ns/name`` -> (network type, index of its node): KINDS, pod a on the first node."""
    return {
        f"{namespace}/{name}": (KINDS[namespace][index], index)
        for namespace in NAMESPACES
        for index, name in enumerate(POD_NAMES)
    }


def create(cluster: Cluster, layout: Mapping[str, tuple[str, int]] | None = None) -> PolicyPods:
    """The namespaces, the pods of ``layout`` (default: :func:`default_layout`; attached
    through the real plugin), their servers, and the outside host's second address and
    server."""
    chosen = default_layout() if layout is None else layout
    create_namespaces(cluster.store, list(dict.fromkeys(k.partition("/")[0] for k in chosen)))
    nodes = {
        node.name: Peer(node.name, node.host, {4: node.host.ipv4, 6: node.host.ipv6})
        for node in cluster.nodes
    }
    pods: dict[str, Peer] = {}
    members: dict[str, ClusterPod] = {}
    for key, (network_type, index) in chosen.items():
        namespace, _, name = key.partition("/")
        node = cluster.nodes[index]
        member = add_pod(cluster, node, namespace, name, network_type)
        members[key] = member
        addresses: dict[int, str] = {
            ip_interface(a).version: str(ip_interface(a).ip) for a in member.addresses
        }  # the families the pod has
        pods[key] = Peer(key, member.netns, addresses, node=nodes[node.name])
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
        chosen = labels if labels is not None else pod_labels(name)
        describe_pod(cluster.store, namespace, name, chosen)
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


@dataclasses.dataclass(frozen=True)
class Daemons:
    """Where policy is enforced: the store every daemon reads, each daemon's log by node, and
    the namespace of the IPInstances (the lab's cluster, or one on a real API server)."""

    store: Store
    logs: Mapping[str, Path]
    ipam_namespace: str = IPAM_NAMESPACE


def daemons_of(cluster: Cluster | Daemons) -> Daemons:
    if isinstance(cluster, Daemons):
        return cluster
    return Daemons(cluster.store, {node.name: node.log for node in cluster.nodes})


@contextlib.contextmanager
def enforced(cluster: Cluster | Daemons) -> Iterator[None]:
    """Make changes inside; on leaving, wait until every node's daemon has logged that it
    enforces exactly what the store holds (lines written after entering count). The digest
    is taken again while waiting: on a real API server the manager may still write (an
    IPInstance's status) after the change, and a daemon then logs only the later inputs."""
    daemons = daemons_of(cluster)
    offsets = {name: log.stat().st_size for name, log in daemons.logs.items()}
    yield
    deadline = time.monotonic() + ENFORCE_TIMEOUT
    waiting = list(daemons.logs)
    while waiting:
        digest = inputs_digest(daemons.store, daemons.ipam_namespace)
        waiting = [n for n in waiting if not _logged(daemons.logs[n], offsets[n], digest)]
        if waiting and time.monotonic() > deadline:
            names = ", ".join(waiting)
            raise AssertionError(f"{names} did not log {APPLIED!r} for inputs {digest}")
        time.sleep(0.02)


def _logged(path: Path, offset: int, digest: str) -> bool:
    with path.open("rb") as log:
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
def policies(cluster: Cluster | Daemons, *items: NetworkPolicy) -> Iterator[None]:
    """The policies, enforced on every node inside; deleted (and that enforced) after."""
    daemons = daemons_of(cluster)
    with enforced(daemons):
        for item in items:
            daemons.store.create(item)
    try:
        yield
    finally:
        with enforced(daemons):
            for item in items:
                daemons.store.delete(NetworkPolicy, item.name, item.metadata.namespace)


# --------------------------------------------------------------------------- the node's table


def host_interface(node: NetworkNamespace, sandbox: str) -> str:
    """The host end of a pod's veth on its node, by the mark its attachment gives it (the
    key of the pod's entries in the policy table's verdict maps)."""
    links = json.loads(node.ip("-j", "link", "show").stdout)
    wanted = f"{MARK_PREFIX}{sandbox}/"
    (name,) = [link["ifname"] for link in links if link.get("ifalias", "").startswith(wanted)]
    return str(name)


def drop_count(node: NetworkNamespace, direction: Direction, interface: str) -> int:
    """Packets the pod's chain of ``direction`` dropped so far (its named counter)."""
    listed = node.exec(["nft", "-j", "list", "counters", "table", FAMILY, DEFAULT_TABLE]).stdout
    counts = drop_counts(json.loads(listed)["nftables"])
    return counts[counter_name(direction, interface)][0]
