"""hybridnet as the pod network of a real cluster, installed the way users install it: its image
imported into every node's containerd and ``helm install`` of deploy/helm/hybridnet.

:class:`HybridnetChart` is a :class:`~hack.realcluster.cni.CniSetup`. Per node (before kubelet
starts) it imports the image archive (``ctr -n k8s.io images import``: there is no registry, so
the chart runs with ``image.pullPolicy: Never``). Once every Node registered it labels them,
installs the chart into ``hybridnet-system`` with ``--wait`` (the daemon DaemonSet, whose init
container writes the plugin and 00-hybridnet.conflist into each node's /opt/cni/bin and
/etc/cni/net.d, so kubelet reports the node Ready; the manager Deployment, which serves the
webhook; the chart's first overlay network ``init``) and creates the underlay network on the
fabric segment.

The values are this bed's, each for a reason of the bed, not of the chart:

* ``apiServer`` 198.18.0.1:6443: there is no kube-proxy (a stand-in named in
  :mod:`hack.realcluster.cluster`), so the ``kubernetes`` Service's ClusterIP answers nowhere;
  that address is the API server's relay into the gateway namespace.
* ``daemon.netnsDir``: the nodes' containerd pins pods' network namespaces under its state
  directory (``netns_mounts_under_state_dir``, :mod:`hybridnet.lab.realnode_config`).
* ``daemon.nodeSelector`` adds :data:`DAEMON_LABEL`: a test stops one node's daemon by taking
  the label off that Node (the DaemonSet controller deletes the pod; no other node's daemon is
  touched) and starts it again by putting it back.
* the ranges are TEST-NET: the overlay ``init`` 198.19.0.0/24 (masqueraded towards the outside
  host, which has no route back to it), the underlay 198.18.0.100-199 on the nodes' own
  segment with the gateway 198.18.0.1.
* ``manager.replicas: 1``: one leader is all the tests need, and the machine has 2 cores.

Nothing else stands in: the daemon, the manager and the webhook are the chart's objects, run by
the real kubelet and containerd from the image the project builds.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hack.controlplane.errors import ControlPlaneError
from hybridnet.api import constants as c
from hybridnet.api.constants import INSTALL_NAMESPACE
from hybridnet.lab.cluster_model import FABRIC_LABELS, UNDERLAY
from hybridnet.lab.realnode import RealNode

if TYPE_CHECKING:
    from hack.image.build import Image
    from hack.realcluster.cluster import RealCluster

RELEASE = "hybridnet"
NAMESPACE = INSTALL_NAMESPACE
DAEMON_LABEL = ("hybridnet.lab/daemon", "on")
"""The label the daemon's nodeSelector asks for besides the chart's own (see the docstring)."""
NETNS_DIR = "/run/containerd/io.containerd.grpc.v1.cri/netns"
"""Where the nodes' containerd pins pods' network namespaces (its CRI state directory)."""
OVERLAY = "init"
OVERLAY_CIDR = "198.19.0.0/24"
UNDERLAY_CIDR = "198.18.0.0/24"
UNDERLAY_GATEWAY = "198.18.0.1"
UNDERLAY_RANGE = ("198.18.0.100", "198.18.0.199")
INSTALL_TIMEOUT = "600s"
"""helm's ``--wait`` bound: the image's first start on three nodes of a loaded 2-core machine."""
GROUP, VERSION = "networking.alibaba.com", "v1"


class HybridnetChart:
    """hybridnet from its Helm chart; see the module docstring."""

    name = "hybridnet (helm chart)"

    def __init__(self, image: Image | None = None) -> None:
        self._image = image
        self.helm_home: Path | None = None
        self._cluster: RealCluster | None = None

    @property
    def image(self) -> Image:
        """The image archive, built (or taken from the cache) at first use."""
        if self._image is None:
            from hack.image.build import build  # noqa: PLC0415 (mmdebstrap only when needed)

            self._image = build()
        return self._image

    def values(self, api_url: str) -> dict[str, Any]:
        """The chart's values for this bed (each explained in the module docstring)."""
        repository, _, tag = self.image.name.rpartition(":")
        host, _, port = api_url.removeprefix("https://").rpartition(":")
        return {
            "image": {"repository": repository, "tag": tag, "pullPolicy": "Never"},
            "apiServer": {"host": host, "port": int(port)},
            "config": {"interfaces": {"vxlan": "eth0", "underlay": "eth0"}},
            "manager": {"replicas": 1},
            "daemon": {
                "netnsDir": NETNS_DIR,
                "nodeSelector": {"kubernetes.io/os": "linux", DAEMON_LABEL[0]: DAEMON_LABEL[1]},
            },
            "init": {"enabled": True, "name": OVERLAY, "cidr": OVERLAY_CIDR, "ipVersion": "4"},
        }

    # ----------------------------------------------------------------- CniSetup

    def install(self, node: RealNode, index: int) -> None:
        """Import the image into the node's containerd (the chart's pods never pull)."""
        node.import_image(self.image.archive)

    def after_nodes(self, cluster: RealCluster) -> None:
        """Label the nodes, ``helm install --wait``, then the underlay network."""
        self._cluster = cluster
        label_nodes(cluster, {**FABRIC_LABELS, DAEMON_LABEL[0]: DAEMON_LABEL[1]})
        self.helm_home = cluster.directory / "helm"
        values_file = cluster.directory / "hybridnet-values.json"
        values_file.write_text(json.dumps(self.values(cluster.api_url_for_nodes), indent=2))
        self.helm(
            cluster,
            "install",
            RELEASE,
            str(chart_dir()),
            "--namespace",
            NAMESPACE,
            "--create-namespace",
            "--values",
            str(values_file),
            "--wait",
            "--timeout",
            INSTALL_TIMEOUT,
        )
        create_underlay(cluster)

    def held_addresses(self, node: RealNode) -> dict[str, str]:
        """hybridnet's allocations on ``node``: address -> the pod that holds it.

        Read from the API server (the IPInstances carry the node's label): an address is
        released when the manager deleted its IPInstance after the pod's deletion.
        """
        if self._cluster is None:
            return {}
        return held_addresses_in(self._cluster, node.spec.name)

    # ----------------------------------------------------------------- helm

    def helm(self, cluster: RealCluster, *args: str, timeout: float = 900.0) -> str:
        """Run helm against the cluster with its own cache and configuration; its stdout."""
        from hack.helm import build_helm  # noqa: PLC0415

        if self.helm_home is None:
            raise ControlPlaneError("hybridnet's chart is not installed on this cluster")
        env = {
            **os.environ,
            **{
                f"HELM_{part}_HOME": str(self.helm_home / part.lower())
                for part in ("CACHE", "CONFIG", "DATA")
            },
        }
        argv = [str(build_helm().helm), "--kubeconfig", str(cluster.plane.kubeconfig_path), *args]
        done = subprocess.run(
            argv, capture_output=True, text=True, timeout=timeout, check=False, env=env
        )
        if done.returncode != 0:
            raise ControlPlaneError(
                f"helm {' '.join(args[:2])} failed ({done.returncode}): {done.stderr.strip()}\n"
                + diagnose(cluster)
            )
        return done.stdout


def chart_dir() -> Path:
    from hack.helm import CHART_DIR  # noqa: PLC0415

    return Path(CHART_DIR)


def label_nodes(cluster: RealCluster, labels: Mapping[str, str | None]) -> None:
    """Merge ``labels`` into every Node (None removes one)."""
    for node in cluster.nodes:
        label_node(cluster, node.spec.name, labels)


def label_node(cluster: RealCluster, name: str, labels: Mapping[str, str | None]) -> None:
    from kubernetes import client  # noqa: PLC0415

    with cluster.api() as api_client:
        client.CoreV1Api(api_client).patch_node(name, {"metadata": {"labels": dict(labels)}})


def create_underlay(cluster: RealCluster) -> None:
    """The underlay network (untagged on eth0, the nodes labelled for it) and its subnet."""
    from kubernetes import client  # noqa: PLC0415

    network = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "Network",
        "metadata": {"name": UNDERLAY},
        "spec": {"type": "Underlay", "mode": "VLAN", "netID": 0, "nodeSelector": FABRIC_LABELS},
    }
    start, end = UNDERLAY_RANGE
    subnet = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "Subnet",
        "metadata": {"name": f"{UNDERLAY}-v4"},
        "spec": {
            "network": UNDERLAY,
            "range": {
                "version": "4",
                "cidr": UNDERLAY_CIDR,
                "gateway": UNDERLAY_GATEWAY,
                "start": start,
                "end": end,
            },
        },
    }
    with cluster.api() as api_client:
        custom = client.CustomObjectsApi(api_client)
        custom.create_cluster_custom_object(GROUP, VERSION, "networks", network)
        custom.create_cluster_custom_object(GROUP, VERSION, "subnets", subnet)
    wait_for_underlay_labels(cluster)


UNDERLAY_LABELS = {c.LABEL_UNDERLAY_ATTACHMENT: "true", c.LABEL_IPV4_QUOTA: c.QUOTA_NONEMPTY}
"""What the manager's node labeler writes on a node the underlay network attaches, with free
IPv4 addresses: the node selector the webhook gives underlay pods."""
LABELS_BOUND = 60.0
"""The manager labels a node within a second of the subnet here; the rest is slack."""


def wait_for_underlay_labels(cluster: RealCluster) -> None:
    """Every node labelled for underlay pods: before that, the scheduler would place them only
    on the nodes already labelled (a spread Deployment then leaves a node out)."""
    from kubernetes import client  # noqa: PLC0415

    deadline = time.monotonic() + LABELS_BOUND
    while True:
        with cluster.api() as api_client:
            nodes = client.CoreV1Api(api_client).list_node().items
        labels = {n.metadata.name: n.metadata.labels or {} for n in nodes if n.metadata}
        missing = [
            name
            for name, have in labels.items()
            if any(have.get(k) != v for k, v in UNDERLAY_LABELS.items())
        ]
        if not missing:
            return
        if time.monotonic() > deadline:
            raise ControlPlaneError(f"nodes not labelled for the underlay network: {missing}")
        time.sleep(0.2)


def held_addresses_in(cluster: RealCluster, node: str) -> dict[str, str]:
    """Every IPInstance on ``node``: address -> its pod's name (IPInstances are the manager's
    allocations; it deletes one when its pod is gone, a StatefulSet pod's only with the set)."""
    from kubernetes import client  # noqa: PLC0415

    with cluster.api() as api_client:
        custom: Any = client.CustomObjectsApi(api_client)
        found: dict[str, Any] = custom.list_namespaced_custom_object(
            GROUP, VERSION, NAMESPACE, "ipinstances", label_selector=f"{GROUP}/node={node}"
        )
    held = {}
    for item in found.get("items", []):
        spec = item.get("spec", {})
        address = str(spec.get("address", {}).get("ip", "")).split("/")[0]
        held[address] = str((spec.get("binding") or {}).get("podName", ""))
    return held


def diagnose(cluster: RealCluster) -> str:
    """What hybridnet's pods say: their phases and the end of each container's log."""
    lines = []
    for node in cluster.nodes:
        pods = node.host_path("/var/log") / "pods"
        if not pods.is_dir():
            continue
        for log in sorted(pods.glob(f"{NAMESPACE}_*/*/*.log")):
            text = log.read_text(errors="replace").splitlines()[-15:]
            lines.append(f"--- {node.spec.name} {log.relative_to(pods)}")
            lines.extend(text)
    return "\n".join(lines)
