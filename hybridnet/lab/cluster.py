"""A virtual hybridnet cluster on one machine: nodes in network namespaces, each running the real
``hybridnet-daemon`` with its node datapath on one shared embedded store, and pods attached by
the real plugin. No Kubernetes and no Go: the lab plays the API server (it writes the Node and
Pod objects a cluster would hold) and the container runtime (:mod:`hybridnet.lab.cni_runtime`).

``make demo`` and the tests of issue 10 build it here. Layout (addresses from the test ranges)::

    outside ns  eth0 198.18.100.10/24, 2001:db8:100::10/64: a host beyond the fabric
        |
    gateway ns  eth1 198.18.100.1, 2001:db8:100::1   eth0 198.18.0.1/24, 2001:db8::1/64
        |       (forwards between its two segments; no route to any overlay subnet, as a
        |       real fabric, and no reverse-path filter)
    fabric ns   br0: the switch
        |
    node i ns   eth0 198.18.0.(9+i), 2001:db8::(9+i); hybridnet-daemon --vtep-interface eth0
        |       --underlay-interface eth0; the VXLAN device eth0.vxlan4 once the overlay exists
    pod ns      eth0 with an address of the network the pod's annotations choose

The store (``DIR/store.db``) holds a Node object per node (labels; the underlay network selects
nodes by them) and, after :meth:`Cluster.create_networks`:

* ``underlay``: Underlay, VLAN mode, netID 0 (untagged on each node's eth0), nodeSelector
  ``hybridnet.lab/fabric=lab``; subnets ``underlay-v4`` 198.18.0.0/24 (pods .100-.199) and
  ``underlay-v6`` 2001:db8::/64 (pods ::100-::1ff), the gateway as their gateway;
* ``overlay``: Overlay, VXLAN, VNI 4; subnets ``overlay-v4`` 198.19.0.0/24 and ``overlay-v6``
  2001:db8:1::/64, ``autoNatOutgoing`` as :attr:`ClusterConfig.overlay_nat` says.

A pod is a Pod object carrying the reference's annotations (``network-type``, ``ip-family``, any
other the caller adds), written before the CNI ADD that the daemon of its node serves. Use::

    with testbed_run() as run, Cluster(run, directory) as cluster:
        cluster.create_networks()
        cluster.wait_converged()
        web = cluster.add_pod(cluster.nodes[0], "web", "Overlay")
        db = cluster.add_pod(cluster.nodes[1], "db", "Underlay")
        assert ping(web.netns, db.ipv4)

Everything lives in namespaces of the run (stale-run cleanup finds them by its prefix) and in
``directory`` (store, daemon sockets and logs, the plugin, the runtime's cache); the root
namespace is never changed. :mod:`hybridnet.lab.cluster_command` keeps one running between
commands.
"""

from __future__ import annotations

import contextlib
import subprocess
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType

from hybridnet.api import constants as c
from hybridnet.api.builtin import Namespace as NamespaceObject
from hybridnet.api.builtin import Node, Pod
from hybridnet.api.meta import ObjectMeta
from hybridnet.api.resources import (
    AddressRange,
    Network,
    NetworkSpec,
    Subnet,
    SubnetConfig,
    SubnetSpec,
)
from hybridnet.lab import cluster_daemons, convergence
from hybridnet.lab import daemon as lab_daemon
from hybridnet.lab.cluster_model import (
    FABRIC_LABELS,
    LABEL_FABRIC,
    OUTSIDE_GATEWAY,
    OUTSIDE_V4,
    OUTSIDE_V6,
    OVERLAY,
    OVERLAY_VNI,
    POD_NAMESPACE,
    UNDERLAY,
    VXLAN_DEVICE,
    ClusterConfig,
    ClusterLayout,
    ClusterNode,
    ClusterPod,
    SubnetPlan,
    default_subnets,
)
from hybridnet.lab.cni_runtime import CniRuntime
from hybridnet.lab.errors import TestbedError
from hybridnet.lab.fabric import Fabric
from hybridnet.lab.fabric import Node as NodeHost
from hybridnet.lab.netns import Namespace, TestbedRun, connect, create_namespace
from hybridnet.lab.processes import in_namespace
from hybridnet.lab.progress import Progress
from hybridnet.store.errors import NotFound
from hybridnet.store.sqlite import SQLiteStore

__all__ = [
    "FABRIC_LABELS",
    "LABEL_FABRIC",
    "OUTSIDE_V4",
    "OUTSIDE_V6",
    "OVERLAY",
    "OVERLAY_VNI",
    "POD_NAMESPACE",
    "UNDERLAY",
    "VXLAN_DEVICE",
    "Cluster",
    "ClusterConfig",
    "ClusterLayout",
    "ClusterNode",
    "ClusterPod",
    "SubnetPlan",
    "default_subnets",
]


class Cluster:
    """The virtual cluster of one run, kept in ``directory``; :meth:`up` builds it,
    :meth:`down` removes it (also after a failed :meth:`up`)."""

    def __init__(
        self,
        run: TestbedRun,
        directory: Path,
        config: ClusterConfig | None = None,
        progress: Progress | None = None,
    ):
        self.run = run
        self.directory = directory
        self.config = config or ClusterConfig()
        self.progress = progress or Progress()
        self.store_path = directory / "store.db"
        self.nodes: list[ClusterNode] = []
        self.pods: list[ClusterPod] = []
        self._fabric: Fabric | None = None
        self._outside: Namespace | None = None
        self._hosts: list[Namespace] = []
        self._store: SQLiteStore | None = None
        self._plugins: Path | None = None

    def __enter__(self) -> Cluster:
        return self.up()

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.down()

    # ----------------------------------------------------------------- the parts

    @property
    def fabric(self) -> Fabric:
        if self._fabric is None:
            raise TestbedError("the cluster is not up")
        return self._fabric

    @property
    def outside(self) -> Namespace:
        """The host behind the gateway (``OUTSIDE_V4``, ``OUTSIDE_V6``)."""
        if self._outside is None:
            raise TestbedError("the cluster is not up")
        return self._outside

    @property
    def store(self) -> SQLiteStore:
        """The cluster's store, as the API server's clients see it."""
        if self._store is None:
            raise TestbedError("the cluster is not up")
        return self._store

    def node(self, name: str) -> ClusterNode:
        for node in self.nodes:
            if node.name == name:
                return node
        raise TestbedError(f"no node {name} in the cluster")

    # ----------------------------------------------------------------- building

    def up(self) -> Cluster:
        """The fabric with its gateway and outside host, the store, the nodes and their
        daemons (ready: their informers listed, their datapath reconciled once)."""
        try:
            with self.progress.step("fabric: switch, gateway, outside host"):
                self._fabric = Fabric(self.run)
                self._outside = self._build_outside(self._fabric)
            with self.progress.step(f"store and {self.config.nodes} node namespaces"):
                self.directory.mkdir(parents=True, exist_ok=True)
                self._store = SQLiteStore(self.store_path)
                self._store.create(NamespaceObject(ObjectMeta(name=POD_NAMESPACE)))
                self._plugins = lab_daemon.plugin_dir(self.directory / "cni-bin")
                added = [self._new_node(None) for _ in range(self.config.nodes)]
            with self.progress.step(f"hybridnet-daemon on {len(added)} nodes"):
                cluster_daemons.start(added, self.store_path, self.config, self.progress)
        except BaseException:
            self.down()
            raise
        return self

    def _build_outside(self, fabric: Fabric) -> Namespace:
        outside = create_namespace(self.run.name("outside"))
        self._hosts.append(outside)
        gateway = fabric.gateway
        connect(gateway, "eth1", outside, "eth0")
        v4, v6 = OUTSIDE_GATEWAY
        gateway.ip("addr", "add", v4, "dev", "eth1")
        gateway.ip("-6", "addr", "add", v6, "dev", "eth1", "nodad")
        # A router that drops what it has no route back for would hide an overlay pod's
        # un-NATed packet from the outside host, where the tests look for it.
        for device in ("all", "eth0", "eth1"):
            gateway.sysctl(f"net.ipv4.conf.{device}.rp_filter", "0")
        outside.ip("addr", "add", f"{OUTSIDE_V4}/24", "dev", "eth0")
        outside.ip("-6", "addr", "add", f"{OUTSIDE_V6}/64", "dev", "eth0", "nodad")
        outside.ip("route", "add", "default", "via", v4.split("/")[0])
        outside.ip("-6", "route", "add", "default", "via", v6.split("/")[0])
        return outside

    def add_node(self, labels: Mapping[str, str] | None = None) -> ClusterNode:
        """One more node, its daemon started: labels ``FABRIC_LABELS`` unless given (a node
        without them is one the underlay network does not attach)."""
        node = self._new_node(labels)
        with self.progress.step(f"hybridnet-daemon on {node.name}"):
            cluster_daemons.start([node], self.store_path, self.config, self.progress)
        return node

    def _new_node(self, labels: Mapping[str, str] | None) -> ClusterNode:
        name = f"node{len(self.fabric.nodes) + 1}"
        host = self.fabric.add_node()
        chosen = {"kubernetes.io/hostname": name, **(FABRIC_LABELS if labels is None else labels)}
        addresses = [{"type": "InternalIP", "address": a} for a in (host.ipv4, host.ipv6)]
        self.store.create(
            Node(ObjectMeta(name=name, labels=chosen), body={"status": {"addresses": addresses}})
        )
        directory = self.directory / name
        directory.mkdir(parents=True, exist_ok=True)
        node = ClusterNode(name, host, chosen, directory, self._runtime(host, directory))
        self.nodes.append(node)
        self.progress.item(f"{name}: {host.name}, eth0 {host.ipv4} {host.ipv6}")
        return node

    def _runtime(self, host: NodeHost, directory: Path) -> CniRuntime:
        socket = ClusterNode.socket_in(directory)
        conflist = {
            "cniVersion": "1.1.0",
            "name": "hybridnet",
            "plugins": [{"type": "hybridnet", "socket": str(socket)}],
        }
        plugins = [str(self._plugins)]
        return CniRuntime(conflist, plugins, directory / "cni-cache", exec_netns=host.name)

    # ----------------------------------------------------------------- networks

    def create_networks(self) -> None:
        """The underlay and overlay networks of the module docstring, with their subnets."""
        with self.progress.step("networks: underlay (untagged on eth0), overlay (VXLAN)"):
            underlay = NetworkSpec(
                type=c.TYPE_UNDERLAY, mode=c.MODE_VLAN, net_id=0, node_selector=dict(FABRIC_LABELS)
            )
            self.store.create(Network(ObjectMeta(name=UNDERLAY), underlay))
            overlay = NetworkSpec(type=c.TYPE_OVERLAY, mode=c.MODE_VXLAN, net_id=OVERLAY_VNI)
            self.store.create(Network(ObjectMeta(name=OVERLAY), overlay))
            for plan in default_subnets(self.config):
                self.create_subnet(plan)

    def create_subnet(self, plan: SubnetPlan) -> Subnet:
        address_range = AddressRange(
            version=plan.version, cidr=plan.cidr, gateway=plan.gateway,
            start=plan.start, end=plan.end,
        )  # fmt: skip
        config = None
        if plan.nat is not None or plan.private:
            config = SubnetConfig(auto_nat_outgoing=plan.nat, private=plan.private or None)
        spec = SubnetSpec(network=plan.network, range=address_range, config=config)
        subnet = self.store.create(Subnet(ObjectMeta(name=plan.name), spec))
        self.progress.item(f"subnet {plan.name} of {plan.network}: {plan.cidr}")
        return subnet

    def wait_converged(self, nodes: Sequence[ClusterNode] | None = None) -> None:
        """Until every node's datapath holds what the networks ask of it
        (:func:`hybridnet.lab.convergence.missing`): the positive signal; the bound is only
        for a broken node."""
        chosen = list(nodes or self.nodes)
        with self.progress.step(f"datapath converged on {len(chosen)} nodes"):
            for node in chosen:
                deadline = time.monotonic() + self.config.ready_timeout
                while lacking := convergence.missing(self.store, node, self.nodes):
                    if time.monotonic() > deadline:
                        raise TestbedError(
                            f"{node.name}'s datapath did not converge: {'; '.join(lacking)}"
                        )
                    time.sleep(0.1)
                underlay = ", underlay on eth0" if convergence.underlay_attaches(node) else ""
                self.progress.item(f"{node.name}: VXLAN to {len(self.nodes) - 1} nodes{underlay}")

    # ----------------------------------------------------------------- pods

    def create_pod(
        self,
        node: ClusterNode,
        name: str,
        network_type: str | None = None,
        *,
        namespace: str = POD_NAMESPACE,
        annotations: Mapping[str, str] | None = None,
    ) -> ClusterPod:
        """The Pod object (bound to ``node``, annotated with ``network-type`` when given, the
        cluster's ``ip-family`` unless ``annotations`` say otherwise, and ``annotations``) and
        an empty namespace for it; :meth:`attach` runs the CNI ADD."""
        wanted = {c.ANNOTATION_IP_FAMILY: self.config.ip_family}
        if network_type is not None:
            wanted[c.ANNOTATION_NETWORK_TYPE] = network_type
        wanted.update(annotations or {})
        netns = create_namespace(self.run.name(f"pod-{namespace}-{name}"))
        try:
            spec = {"nodeName": node.name, "containers": [{"name": "main", "image": "pause"}]}
            meta = ObjectMeta(name=name, namespace=namespace, annotations=wanted)
            stored = self.store.create(Pod(meta, body={"spec": spec}))
        except BaseException:
            netns.delete()
            raise
        pod = ClusterPod(name, namespace, node, netns, wanted, stored.metadata.uid or "")
        self.pods.append(pod)
        return pod

    def attach(self, pod: ClusterPod) -> ClusterPod:
        """CNI ADD through the real plugin, run in the pod's node; raises CniPluginError."""
        result = pod.node.runtime.add(pod.attachment)
        pod.addresses = tuple(ip["address"] for ip in result.get("ips", []))
        return pod

    def add_pod(
        self,
        node: ClusterNode,
        name: str,
        network_type: str | None = None,
        *,
        namespace: str = POD_NAMESPACE,
        annotations: Mapping[str, str] | None = None,
    ) -> ClusterPod:
        """:meth:`create_pod` and :meth:`attach`; a pod whose ADD failed is removed again."""
        pod = self.create_pod(
            node, name, network_type, namespace=namespace, annotations=annotations
        )
        try:
            return self.attach(pod)
        except BaseException:
            self.delete_pod(pod)
            raise

    def delete_pod(self, pod: ClusterPod) -> None:
        """CNI DEL (also after a failed ADD, as a runtime does), then the namespace and the
        Pod object."""
        try:
            pod.node.runtime.delete(pod.attachment)
        finally:
            pod.netns.delete()
            with contextlib.suppress(NotFound):
                self.store.delete(Pod, pod.name, pod.namespace, grace_period_seconds=0)
            self.pods.remove(pod)

    def add_pods_of_both_kinds(self) -> list[ClusterPod]:
        """An overlay pod ``overlay-N`` and an underlay pod ``underlay-N`` on every node N
        that the underlay attaches (only the overlay one elsewhere)."""
        pods = []
        with self.progress.step(f"pods of both kinds on {len(self.nodes)} nodes"):
            for node in self.nodes:
                kinds = [OVERLAY, UNDERLAY] if convergence.underlay_attaches(node) else [OVERLAY]
                for kind in kinds:
                    network_type = c.TYPE_OVERLAY if kind == OVERLAY else c.TYPE_UNDERLAY
                    name = f"{kind}-{node.name.removeprefix('node')}"
                    pod = self.add_pod(node, name, network_type)
                    pods.append(pod)
                    self.progress.item(f"{name} on {node.name}: {' '.join(pod.addresses)}")
        return pods

    def add_fabric_host(self, role: str, addresses: Sequence[str]) -> Namespace:
        """A plain host on the fabric segment holding ``addresses`` (CIDRs), e.g. one that
        already uses an address a pod is about to get; removed with the cluster."""
        host = create_namespace(self.run.unique(role))
        self._hosts.append(host)
        self.fabric.attach(host, "eth0")
        for address in addresses:
            host.ip("addr", "add", address, "dev", "eth0", *(["nodad"] if ":" in address else []))
        return host

    def remove_host(self, host: Namespace) -> None:
        host.delete()
        self._hosts.remove(host)

    # ----------------------------------------------------------------- reports and teardown

    def layout(self) -> ClusterLayout:
        return ClusterLayout(
            prefix=self.run.prefix,
            store=str(self.store_path),
            switch=self.fabric.switch.name,
            gateway=self.fabric.gateway.name,
            outside=self.outside.name,
            nodes={n.name: n.host.name for n in self.nodes},
            pods=[
                {"namespace": p.namespace, "name": p.name, "node": p.node.name,
                 "netns": p.netns.name}
                for p in self.pods
            ],
        )  # fmt: skip

    def leave_running(self) -> int:
        """Keep the cluster after this process exits: a keeper process inside the switch's
        namespace inherits the run's lock (so stale-run cleanup leaves the cluster alone while
        it lives, and removes it once it is gone), the daemons are let go (they log to files)
        and the store is closed; this object is done with. Returns the keeper's PID;
        :mod:`hybridnet.lab.cluster_command` ends it."""
        argv = in_namespace(["sleep", "infinity"], self.fabric.switch.name)
        keeper = subprocess.Popen(
            argv,
            pass_fds=(self.run.lock_fileno(),),
            start_new_session=True,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        # The keeper outlives us on purpose: keep Popen from warning that it still runs.
        keeper.returncode = 0
        for node in self.nodes:
            if node.daemon is not None:
                node.daemon.forget()
                node.daemon = None
        self.store.close()
        self._store = None
        return keeper.pid

    def down(self) -> None:
        """Stop the daemons, remove every namespace the cluster made and close the store;
        safe after a failed :meth:`up` and when called twice. ``directory`` is the caller's."""
        cluster_daemons.stop(self.nodes)
        for pod in self.pods:
            pod.netns.delete()
        self.pods.clear()
        while self._hosts:
            self._hosts.pop().delete()
        self._outside = None
        if self._fabric is not None:
            self._fabric.teardown()
            self._fabric = None
        self.nodes.clear()
        if self._store is not None:
            self._store.close()
            self._store = None
