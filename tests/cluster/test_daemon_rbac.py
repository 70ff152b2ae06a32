"""hybridnet-daemon as the ServiceAccount the chart ships (templates/daemon/rbac.yaml, rendered by
the real helm): enough, and no more.

The daemon runs in a node namespace with a kubeconfig holding nothing but a bound token of that
ServiceAccount, reaching the API server through the test bed's gateway. The installed plugin,
driven the way kubelet drives it (hybridnet/lab/cni_runtime.py), runs ADD, CHECK, STATUS and
DEL for a pod the manager allocated, so the daemon's informers (this node's IPInstances, the
Networks, Subnets, NodeInfos, Nodes) and its writes go through the chart's rules alone: a missing
rule fails here, not for a user. Then the same identity is shown to be refused what the daemon has
no business doing, and a daemon given less than it needs fails the pod's ADD with the API
server's refusal naming the permission.

As in test_manager_rbac, the chart's RBAC is rendered into a namespace of the test's own
(``rbacd-<run>``, the release namespace to helm) instead of a shared one, which the shared API
server fills with other tests' IPInstances; that namespace is the IPAM namespace the manager
(in-process, admin credentials: a stand-in for its own Deployment, tested in test_manager_rbac)
writes to.
No kubelet or scheduler runs: the Harness creates the Node and binds the pod.
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from hack.controlplane import ControlPlane
from hybridnet import lab as testbed
from hybridnet.api.builtin import Node, Pod
from hybridnet.api.resources import IPInstance, Network, Subnet
from hybridnet.ipamstore import ipinstances
from hybridnet.lab import daemon as daemon_harness
from hybridnet.lab.cni_runtime import Attachment, CniPluginError, CniRuntime
from hybridnet.lab.manager import Harness
from hybridnet.store.errors import NotFound
from hybridnet.store.kube import KubeStore
from tests.cluster.manifests import apply, can_i, remove, render
from tests.manager_scenarios import Manager

ACCOUNT = "hybridnet-daemon"
IPINSTANCES = "ipinstances.networking.alibaba.com"


@dataclasses.dataclass
class Setup:
    run: str
    namespace: str
    """The IPAM namespace: the manager's IPInstances and the daemon's Role."""
    pods: str
    node: testbed.Node
    daemon: testbed.Process
    cni: CniRuntime
    harness: Harness
    sa_kubeconfig: Path
    """The daemon's identity, pointing at the API server from the root namespace."""


@pytest.fixture
def setup(control_plane: ControlPlane, fabric: testbed.Fabric, tmp_path: Path) -> Iterator[Setup]:
    run = uuid.uuid4().hex[:6]
    namespace, pods = f"rbacd-{run}", f"ns-{run}"
    admin = KubeStore.from_kubeconfig(control_plane.kubeconfig_path)
    harness = Harness(admin, run)
    harness.namespace(namespace)
    harness.namespace(pods)
    harness.node(f"node-{run}")
    harness.underlay(f"u-{run}")
    # An underlay the node really has: untagged on its eth0, the gateway on the fabric, so the
    # daemon's address check and datapath serve the pod and CHECK finds nothing missing.
    harness.subnet(f"s-{run}", f"u-{run}", "198.18.180.0/24", gateway="198.18.180.1")
    fabric.gateway.ip("addr", "add", "198.18.180.1/24", "dev", "eth0")
    rbac = render("daemon/rbac.yaml", namespace)
    manager = Manager(admin, namespace)
    node = fabric.nodes[0]
    socket = tmp_path / "daemon.sock"
    try:
        apply(control_plane, rbac)
        # The DaemonSet, rendered the same way, is accepted as it is (schema, strict field
        # validation), without being run.
        apply(control_plane, render("daemon/daemonset.yaml", namespace), "--dry-run=server")
        manager.start()
        with control_plane.exposed(fabric.gateway.name, fabric.gateway_ipv4) as url:
            node_kubeconfig = control_plane.service_account_kubeconfig(
                namespace, ACCOUNT, server_url=url, path=tmp_path / "node-sa.kubeconfig"
            )
            daemon = daemon_harness.start_daemon(
                node,
                socket,
                "--node-name",
                f"node-{run}",
                "--kubeconfig",
                str(node_kubeconfig),
                "--ipam-namespace",
                namespace,
                "--allocation-timeout",
                "20",
                "--underlay-interface",
                "eth0",
            )
            conflist = {"cniVersion": "1.1.0", "name": "hybridnet",
                        "plugins": [{"type": "hybridnet", "socket": str(socket)}]}  # fmt: skip
            plugins = daemon_harness.plugin_dir(tmp_path / "cni-bin")
            cni = CniRuntime(conflist, [str(plugins)], tmp_path / "cache", exec_netns=node.name)
            sa_kubeconfig = control_plane.service_account_kubeconfig(
                namespace, ACCOUNT, path=tmp_path / "sa.kubeconfig"
            )
            try:
                yield Setup(run, namespace, pods, node, daemon, cni, harness, sa_kubeconfig)
            finally:
                daemon.stop()
                node.processes.remove(daemon)
    finally:
        manager.stop()
        for pod in admin.list(Pod, pods).items:
            harness.delete_pod(pods, pod.name)
        for instance in admin.list(IPInstance, namespace).items:
            with contextlib.suppress(NotFound):
                admin.delete(IPInstance, instance.name, namespace)
        for kind, name in ((Subnet, f"s-{run}"), (Network, f"u-{run}"), (Node, f"node-{run}")):
            with contextlib.suppress(NotFound):
                admin.delete(kind, name)
        remove(control_plane, rbac)
        admin.close()


def test_the_shipped_rules_carry_a_pod_through_the_plugin(
    setup: Setup, fabric: testbed.Fabric
) -> None:
    pod_ns = fabric.add_pod("rb")
    setup.harness.pod(setup.pods, "web", node=f"node-{setup.run}")
    attachment = Attachment(
        container_id=pod_ns.name,
        netns=pod_ns.path,
        ifname="eth0",
        args={"K8S_POD_NAMESPACE": setup.pods, "K8S_POD_NAME": "web", "IgnoreUnknown": "1"},
    )
    result = setup.cni.add(attachment)
    # This pod's only: the manager also serves pods other tests of the session left behind.
    selector = ipinstances.pod_selector(setup.pods, "web")
    (instance,) = setup.harness.store.list(IPInstance, setup.namespace, selector).items
    assert [ip["address"] for ip in result["ips"]] == [f"{instance.spec.address.ip}"]
    assert pod_ns.addresses("eth0") == [instance.spec.address.ip]
    # The status write went through ipinstances/status.
    assert instance.status.sandbox_id == pod_ns.name
    assert instance.status.node_name == f"node-{setup.run}"
    setup.cni.check(attachment)
    setup.cni.status()
    setup.cni.delete(attachment)
    assert pod_ns.links() == ["lo"]
    log = setup.daemon.read_remaining()  # what it printed so far (it logs every call)
    assert "pod attached" in log and "pod detached" in log, log
    assert "forbidden" not in log.lower(), log


ALLOWED = [
    ("list", "networks.networking.alibaba.com"),
    ("watch", "networks.networking.alibaba.com"),
    ("list", IPINSTANCES, "-n", "{namespace}"),
    ("watch", IPINSTANCES, "-n", "{namespace}"),
    ("update", IPINSTANCES, "--subresource=status", "-n", "{namespace}"),
    ("list", "subnets.networking.alibaba.com"),
    ("watch", "subnets.networking.alibaba.com"),
    ("list", "nodeinfos.networking.alibaba.com"),
    ("watch", "nodeinfos.networking.alibaba.com"),
    ("create", "nodeinfos.networking.alibaba.com"),
    ("update", "nodeinfos.networking.alibaba.com"),
    ("update", "nodeinfos.networking.alibaba.com", "--subresource=status"),
    ("list", "nodes"),
    ("watch", "nodes"),
    ("create", "events", "-n", "default"),
    # NetworkPolicy enforcement: pods and namespaces by their labels, the policies themselves.
    ("list", "pods", "-n", "{pods}"),
    ("watch", "pods", "-n", "{pods}"),
    ("list", "namespaces"),
    ("watch", "namespaces"),
    ("list", "networkpolicies.networking.k8s.io", "-n", "{pods}"),
    ("watch", "networkpolicies.networking.k8s.io", "-n", "{pods}"),
]
REFUSED = [
    ("get", "pods", "-n", "{pods}"),  # each IPInstance says its families: no pod read
    ("get", "namespaces/{pods}"),
    ("get", IPINSTANCES, "-n", "{namespace}"),  # a write conflict waits on the watch
    ("get", "networks.networking.alibaba.com"),
    ("create", IPINSTANCES, "-n", "{namespace}"),
    ("update", IPINSTANCES, "-n", "{namespace}"),
    ("patch", IPINSTANCES, "-n", "{namespace}"),
    ("patch", IPINSTANCES, "--subresource=status", "-n", "{namespace}"),
    ("update", IPINSTANCES, "--subresource=status", "-n", "default"),
    ("create", "pods", "-n", "{namespace}"),  # the IPAM namespace is kube-system in production
    ("patch", "pods", "-n", "{pods}"),
    ("delete", IPINSTANCES, "-n", "{namespace}"),
    ("list", IPINSTANCES, "-n", "default"),
    ("watch", IPINSTANCES, "-n", "default"),
    ("update", "pods", "-n", "{pods}"),
    ("create", "pods", "-n", "{pods}"),
    ("get", "secrets", "-n", "{namespace}"),
    ("get", "nodes"),
    ("update", "nodes"),
    ("delete", "nodeinfos.networking.alibaba.com"),
    ("get", "nodeinfos.networking.alibaba.com"),
    ("update", "subnets.networking.alibaba.com"),
    ("list", "events", "-n", "default"),
    ("delete", "events", "-n", "default"),
    ("update", "networks.networking.alibaba.com"),
    ("update", "networks.networking.alibaba.com", "--subresource=status"),
]


def test_the_daemon_may_do_no_more(setup: Setup, control_plane: ControlPlane) -> None:
    def expand(args: tuple[str, ...]) -> list[str]:
        return [a.format(pods=setup.pods, namespace=setup.namespace) for a in args]

    wrong = [a for a in ALLOWED if not can_i(control_plane, setup.sa_kubeconfig, *expand(a))]
    wrong += [("MAY", *r) for r in REFUSED if can_i(control_plane, setup.sa_kubeconfig, *expand(r))]
    assert wrong == []


def test_a_refused_status_write_fails_add_and_leaves_nothing(
    setup: Setup, control_plane: ControlPlane, fabric: testbed.Fabric
) -> None:
    """An operator who trimmed the Role: ADD fails with the API server's refusal in the
    message, and the attachment it had already built is taken down again."""
    rbac = render("daemon/rbac.yaml", setup.namespace)
    (role,) = [d for d in rbac if d["kind"] == "Role"]
    role["rules"] = [r for r in role["rules"] if r["resources"] != ["ipinstances/status"]]
    apply(control_plane, [role])
    status_write = (IPINSTANCES, "--subresource=status", "-n", setup.namespace)
    # The authorizer follows RBAC objects through a watch: go on once it answers "no".
    deadline = time.monotonic() + 30
    while can_i(control_plane, setup.sa_kubeconfig, "update", *status_write):
        assert time.monotonic() < deadline, "the trimmed Role is not in force after 30 s"
        time.sleep(0.1)
    pod_ns = fabric.add_pod("rc")
    setup.harness.pod(setup.pods, "db", node=f"node-{setup.run}")
    before = setup.node.links()
    attachment = Attachment(
        container_id=pod_ns.name,
        netns=pod_ns.path,
        ifname="eth0",
        args={"K8S_POD_NAMESPACE": setup.pods, "K8S_POD_NAME": "db", "IgnoreUnknown": "1"},
    )
    with pytest.raises(CniPluginError) as refused:
        setup.cni.add(attachment)
    assert refused.value.code == 999 and "forbidden" in refused.value.msg
    # The message names what the daemon lacks: the verb, the resource and where.
    assert 'cannot update resource "ipinstances/status"' in refused.value.msg, refused.value.msg
    assert f'in the namespace "{setup.namespace}"' in refused.value.msg, refused.value.msg
    assert setup.node.links() == before
    assert pod_ns.links() == ["lo"]
