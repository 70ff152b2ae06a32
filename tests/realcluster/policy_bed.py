"""The NetworkPolicy bed of the real-kubelet cluster: tests/netns/policy_cases.py's namespaces
and pods as real Pods, and the wait for every node's daemon to enforce what the API holds.

Pods: namespaces x, y, z (labelled ``ns=<name>``) with plain Pods a, b, c each (a Deployment's
pods could not be relabelled: their ReplicaSet would replace them), pinned by a nodeSelector on
``kubernetes.io/hostname`` through the scheduler, underlay where
:data:`~tests.netns.policy_cases.KINDS` says (the network-type annotation the webhook reads).
Each runs the nodes' busybox image: its container serves ``httpd`` on :data:`HEALTH_PORT`,
which kubelet's readiness and liveness probes ask every second, and declares the named ports
the cases select (``serve-80-tcp`` ... and ``health``), so the daemon resolves named ports from
the real Pods' containerPorts.

The probe servers and clients (tests/netns/policy_agent.py) are the stand-in: a process of the
host's Python entered into the pod's network namespace (``nsenter --net=/proc/PID/ns/net``,
the PID of the container's task from the node's containerd), not a process of the container.
For the policy it is the pod's traffic all the same: it leaves by the pod's interface with the
pod's address, and is filtered where hybridnet filters the pod's packets.

Enforcement: every node's daemon (the chart's DaemonSet pod) logs ``network policy applied``
with the digest of the inputs it enforces (:meth:`hybridnet.daemon.datapath.view.PolicyView.
digest`: kinds, names and resource versions of every Pod, Namespace, NetworkPolicy and the
IPAM namespace's IPInstances). :func:`enforced` lists the same objects from the API server and
waits until each daemon's container log, past where it stood before the change, has that
digest. Listing again on each poll follows any later change (a pod's status written by its
kubelet) to the digest the daemons then log.
"""

from __future__ import annotations

import contextlib
import dataclasses
import ipaddress
import json
import re
import subprocess
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from kubernetes import client

from hack.realcluster.cluster import RealCluster
from hack.realcluster.hybridnet import NAMESPACE as IPAM_NAMESPACE
from hack.realcluster.hybridnet import OVERLAY_CIDR, UNDERLAY_CIDR
from hack.realcluster.workloads import (
    container,
    create,
    wait_default_service_account,
    wait_for,
    wait_running,
)
from hybridnet.api import constants as c
from hybridnet.api.builtin import Namespace as NamespaceObject
from hybridnet.api.builtin import NetworkPolicy, Pod
from hybridnet.api.meta import ObjectMeta
from hybridnet.lab.cluster_model import OUTSIDE_V4
from hybridnet.lab.processes import Process, run
from hybridnet.store.errors import Conflict
from hybridnet.store.kube import KubeStore
from tests.netns.policy_cases import (
    KINDS,
    NAMESPACES,
    POD_NAMES,
    PORTS,
    Policy,
    namespace_labels,
    pod_labels,
    port_names,
)
from tests.netns.policy_cluster import inputs_digest, policy
from tests.netns.policy_matrix import Peer, agent_argv
from tests.realcluster.pod_network import pod_net

HEALTH_PORT = 8080
UNDERLAY_ANNOTATION = "networking.alibaba.com/network-type"
OUTSIDE_EXTRA_V4 = "198.18.100.11"
"""The outside host's second address (the ipBlock ``except`` case), in OUTSIDE_V4's /24."""
APPLIED = "network policy applied"
ENFORCE_TIMEOUT = 60.0
"""Bound on every daemon logging the inputs' digest: a daemon reconciles within a second of a
change here; the rest is slack for a loaded 2-core machine. Reached only when broken."""
PROBES_TIMEOUT = 60.0
"""Bound on kubelet's probes (one a second) reaching a pod: reached only when broken."""
PODS_TIMEOUT = 300.0
"""Bound on the pods' first start (sandbox, hybridnet's ADD, the container) on three nodes."""
HTTPD_CLIENT = re.compile(r"^\[(?:::ffff:)?([^\]]+)\]:\d+: ")
HEALTH_SCRIPT = (
    f"mkdir -p /tmp/www && echo ok > /tmp/www/index.html && echo started; "
    f"httpd -f -v -p {HEALTH_PORT} -h /tmp/www & trap 'kill $!; exit 0' TERM; wait"
)
"""busybox httpd in the foreground of a background job (``-v``: one line per request, with the
client's address, in the container's log); SIGTERM ends both at once."""


class PodNetns:
    """A running pod's network namespace entered from the host (see the module docstring)."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.processes: list[Process] = []

    def argv(self, args: Sequence[str]) -> list[str]:
        return ["nsenter", f"--net=/proc/{self.pid}/ns/net", "--", *args]

    def spawn(self, args: Sequence[str]) -> Process:
        process = Process(self.argv(args))
        self.processes.append(process)
        return process

    def exec(self, args: Sequence[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
        return run(self.argv(args), **kwargs)

    def stop(self) -> None:
        for process in self.processes:
            process.stop()
        self.processes.clear()


def pod_manifest(namespace: str, name: str, node: str, network_type: str) -> dict[str, Any]:
    probe = {"httpGet": {"path": "/", "port": "health"}, "periodSeconds": 1, "timeoutSeconds": 1}
    main = container(script=HEALTH_SCRIPT)
    main["ports"] = [*port_names(), {"name": "health", "containerPort": HEALTH_PORT}]
    main["readinessProbe"] = dict(probe)
    main["livenessProbe"] = {**probe, "failureThreshold": 3}
    annotations = {UNDERLAY_ANNOTATION: "Underlay"} if network_type == c.TYPE_UNDERLAY else {}
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": pod_labels(name),
            "annotations": annotations,
        },
        "spec": {
            "containers": [main],
            "nodeSelector": {"kubernetes.io/hostname": node},
            "terminationGracePeriodSeconds": 5,
            "automountServiceAccountToken": False,
        },
    }


@dataclasses.dataclass
class RealBed:
    """The cluster as tests/netns/policy_cases.py drives it (a :class:`PolicyBed`)."""

    cluster: RealCluster
    store: KubeStore
    api: client.ApiClient
    pods: dict[str, Peer]
    nodes: dict[str, Peer]
    outside: Peer
    outside_extra: Peer
    objects: dict[str, Any]
    """``ns/name`` -> the Pod as the API returned it once Running (uid, node, container)."""
    ipv6: bool = False
    """The chart's overlay and the underlay network are IPv4 only here."""

    @contextlib.contextmanager
    def enforced(self) -> Iterator[None]:
        with enforced(self.cluster, self.store):
            yield

    @contextlib.contextmanager
    def policies(self, *items: Policy) -> Iterator[None]:
        written = [policy(p.namespace, p.name, p.spec) for p in items]
        with self.enforced():
            for item in written:
                self.store.create(item)
        try:
            yield
        finally:
            with self.enforced():
                for item in written:
                    self.store.delete(NetworkPolicy, item.name, item.metadata.namespace)

    def relabel_pod(self, name: str, labels: Mapping[str, str]) -> None:
        namespace, _, pod_name = name.partition("/")
        with self.enforced():
            while True:  # the Pod's kubelet writes its status meanwhile
                current = self.store.get(Pod, pod_name, namespace)
                current.metadata.labels = dict(labels)
                try:
                    self.store.update(current)
                except Conflict:
                    continue
                break

    def relabel_namespace(self, name: str, labels: Mapping[str, str]) -> None:
        with self.enforced():
            current = self.store.get(NamespaceObject, name)
            # The API server keeps its own name label on every namespace whatever we write.
            kept = {
                k: v for k, v in current.metadata.labels.items() if k.startswith("kubernetes.io/")
            }
            current.metadata.labels = {**kept, **labels}
            self.store.update(current)

    @contextlib.contextmanager
    def hold(self, source: Peer, target: Peer, port: int) -> Iterator[Process]:
        argv = agent_argv("hold", target.addresses[4], str(port), "held-connection")
        held = source.netns.spawn(argv)
        try:
            yield held
        finally:
            held.stop()

    def container_log(self, name: str) -> Path:
        """The pod's container log as its node's kubelet writes it."""
        pod = self.objects[name]
        node = self.cluster.node(pod.spec.node_name)
        folder = f"{pod.metadata.namespace}_{pod.metadata.name}_{pod.metadata.uid}"
        return node.host_path("/var/log") / "pods" / folder / "main" / "0.log"

    def stop(self) -> None:
        for peer in [*self.pods.values(), self.outside]:
            if peer.server is not None:
                peer.server.stop()
        for peer in self.pods.values():
            if isinstance(peer.netns, PodNetns):
                peer.netns.stop()


def build(cluster: RealCluster, api: client.ApiClient) -> RealBed:
    """Namespaces, Pods Running, probe servers in every pod and on the outside host, and every
    daemon enforcing the result (it has seen every pod) before the first case."""
    store = KubeStore.from_kubeconfig(cluster.plane.kubeconfig_path)
    node_names = [n.spec.name for n in cluster.nodes]
    with enforced(cluster, store):
        for namespace in NAMESPACES:
            meta = ObjectMeta(name=namespace, labels=namespace_labels(namespace))
            store.create(NamespaceObject(meta))
        for namespace in NAMESPACES:
            wait_default_service_account(api, namespace, PODS_TIMEOUT)
            for index, name in enumerate(POD_NAMES):
                kind = KINDS[namespace][index]
                create(api, pod_manifest(namespace, name, node_names[index], kind), namespace)
        objects = {}
        for namespace in NAMESPACES:
            for pod in wait_running(api, namespace, "pod", len(POD_NAMES), PODS_TIMEOUT):
                objects[f"{namespace}/{pod.metadata.name}"] = pod
    nodes = {
        n.spec.name: Peer(n.spec.name, n.spec.host, {4: n.spec.host.ipv4}) for n in cluster.nodes
    }
    pods = {}
    for key, pod in objects.items():
        namespace, _, name = key.partition("/")
        kind = KINDS[namespace][POD_NAMES.index(name)]
        network = UNDERLAY_CIDR if kind == c.TYPE_UNDERLAY else OVERLAY_CIDR
        address = ipaddress.ip_address(pod.status.pod_ip)
        assert address in ipaddress.ip_network(network), f"{key} ({kind}): {address}"
        net = pod_net(cluster, pod)
        pods[key] = Peer(key, PodNetns(net.pid), {4: net.ip}, node=nodes[net.node])
    assert cluster.outside is not None
    cluster.outside.ip("addr", "add", f"{OUTSIDE_EXTRA_V4}/24", "dev", "eth0")
    outside = Peer("outside", cluster.outside, {4: OUTSIDE_V4})
    outside_extra = Peer("outside2", cluster.outside, {4: OUTSIDE_EXTRA_V4})
    bed = RealBed(cluster, store, api, pods, nodes, outside, outside_extra, objects)
    try:
        outside.start_server(PORTS, [OUTSIDE_V4, OUTSIDE_EXTRA_V4])
        outside_extra.server = outside.server  # one server on both addresses
        for peer in pods.values():
            peer.start_server(PORTS)
    except BaseException:
        bed.stop()
        raise
    return bed


# --------------------------------------------------------------------------- enforcement


def daemon_logs(cluster: RealCluster) -> dict[Path, str]:
    """Every daemon container log on the nodes (the chart's DaemonSet pod, one per node; a
    restarted container, or a pod the DaemonSet replaced, writes a new file) -> its node."""
    found = {}
    for node in cluster.nodes:
        pods = node.host_path("/var/log") / "pods"
        for path in pods.glob(f"{IPAM_NAMESPACE}_hybridnet-daemon-*/daemon/*.log"):
            found[path] = node.spec.name
    return found


@contextlib.contextmanager
def enforced(cluster: RealCluster, store: KubeStore) -> Iterator[None]:
    """Make changes inside; on leaving, wait until every node's daemon has logged that it
    enforces what the API server then holds (lines written after entering count, and all of
    a log file that appeared since: a daemon started meanwhile)."""
    offsets = {path: path.stat().st_size for path in daemon_logs(cluster)}
    yield
    seen: dict[str, set[str]] = {node.spec.name: set() for node in cluster.nodes}

    def done() -> bool | None:
        digest = inputs_digest(store, IPAM_NAMESPACE)
        for path, node in daemon_logs(cluster).items():
            seen[node] |= _digests_logged(path, offsets.get(path, 0))
        return True if all(digest in found for found in seen.values()) else None

    def describe() -> str:
        lines = [f"API inputs {inputs_digest(store, IPAM_NAMESPACE)}; logged {seen}"]
        for path, node in sorted(daemon_logs(cluster).items()):
            lines.append(f"--- {node} {path}")
            lines.extend(_problems(path, offsets.get(path, 0)))
        return "\n".join(lines)

    wait_for(
        f"every daemon logging {APPLIED!r} for the API server's objects",
        done,
        ENFORCE_TIMEOUT,
        describe,
    )


def _problems(path: Path, offset: int) -> list[str]:
    """The daemon's log lines past ``offset`` above info (why it did not apply), and its
    last lines (what it did instead)."""
    lines = [raw.decode(errors="replace").split(" ", 3)[-1] for raw in _read_from(path, offset)]
    above = [ln.strip() for ln in lines if '"level": "info"' not in ln]
    return [*above[-10:], "...", *[ln.strip() for ln in lines[-5:]]]


def _read_from(path: Path, offset: int) -> list[bytes]:
    with path.open("rb") as log:
        log.seek(offset)
        return log.readlines()


def _digests_logged(path: Path, offset: int) -> set[str]:
    """The ``inputs`` of every APPLIED line past ``offset`` of a CRI container log
    (``TIME STREAM TAG MESSAGE`` per line)."""
    found = set()
    with path.open("rb") as log:
        log.seek(offset)
        for raw in log:
            if b"inputs" not in raw:
                continue
            message = raw.split(b" ", 3)[-1]
            try:
                line = json.loads(message)
            except ValueError:
                continue
            if line.get("msg") == APPLIED:
                found.add(str(line.get("inputs")))
    return found


def wait_probes_logged(path: Path, offset: int, count: int, sources: set[str]) -> list[str]:
    """Until the container log past ``offset`` holds ``count`` httpd lines of requests from
    one of ``sources`` answered 200; those lines."""

    def probe() -> list[str] | None:
        lines = _httpd_lines(path, offset)
        answered = [ln for ln in lines if ln.endswith("response:200") and _client(ln) in sources]
        return answered if len(answered) >= count else None

    return wait_for(
        f"{count} kubelet probes answered in {path.parent.parent.name}",
        probe,
        PROBES_TIMEOUT,
        lambda: str(_httpd_lines(path, offset)[-5:]),
    )


def _httpd_lines(path: Path, offset: int) -> list[str]:
    with path.open("rb") as log:
        log.seek(offset)
        return [raw.decode(errors="replace").split(" ", 3)[-1].strip() for raw in log]


def _client(line: str) -> str:
    """``[::ffff:ADDRESS]:PORT: response:200`` -> ADDRESS (busybox httpd listens on ``::``,
    so an IPv4 client is written as a mapped address)."""
    found = HTTPD_CLIENT.match(line)
    return found.group(1) if found else ""
