"""deploy/daemon/: least-privilege RBAC and a DaemonSet whose arguments the daemon accepts.

deploy/ is the chart's rendering with its default values (tests/cluster/test_chart.py checks
that). These read that YAML only; tests/cluster/test_daemon_rbac.py applies the chart's RBAC to a
real API server and runs the daemon under it.
"""

from __future__ import annotations

from hybridnet.daemon import main as daemon_main
from tests.unit import deploy_docs
from tests.unit.deploy_docs import (
    DEPLOY_DIR,
    Doc,
    assert_every_rule_commented,
    assert_no_wildcards,
    assert_one_service_account,
    expanded_args,
    flag,
    granted,
    load,
)

DAEMON_DIR = DEPLOY_DIR / "daemon"
GROUP = "networking.alibaba.com"


def documents() -> list[Doc]:
    return load(DAEMON_DIR)


def pod_spec() -> Doc:
    spec: Doc = deploy_docs.one(documents(), "DaemonSet")["spec"]["template"]["spec"]
    return spec


def container(section: str, name: str) -> Doc:
    (found,) = [c for c in pod_spec()[section] if c["name"] == name]
    assert isinstance(found, dict)
    return found


def test_the_files_exist_and_every_document_is_a_named_object() -> None:
    assert sorted(p.name for p in DAEMON_DIR.glob("*.yaml")) == ["daemonset.yaml", "rbac.yaml"]
    for doc in documents():
        assert doc.get("apiVersion") and doc.get("kind") and doc["metadata"].get("name"), doc


def test_rbac_is_explicit_commented_and_bound_to_one_account() -> None:
    assert_no_wildcards(documents())
    assert_every_rule_commented(DAEMON_DIR / "rbac.yaml")
    assert_one_service_account(documents(), "hybridnet-daemon", "hybridnet-system", "DaemonSet")


def test_rights_are_exactly_what_the_code_does_in_the_right_scope() -> None:
    """Informers and a few writes: list and watch Networks, Subnets, NodeInfos and Nodes
    cluster-wide, and Pods, Namespaces and NetworkPolicies for policy enforcement; write
    NodeInfos (this node's, with its status) and create Events (about the Node, a policy); in
    the IPAM namespace only, list and watch IPInstances and write their status. No get of
    anything (every read is an informer's cache), no pod or namespace writes, no delete; the
    manager owns everything else."""
    assert granted(documents()) == {
        ("ClusterRole", GROUP, "networks"): {"list", "watch"},
        ("ClusterRole", GROUP, "subnets"): {"list", "watch"},
        ("ClusterRole", GROUP, "nodeinfos"): {"list", "watch", "create", "update"},
        ("ClusterRole", GROUP, "nodeinfos/status"): {"update"},
        ("ClusterRole", "", "nodes"): {"list", "watch"},
        ("ClusterRole", "", "events"): {"create"},
        ("ClusterRole", "", "pods"): {"list", "watch"},
        ("ClusterRole", "", "namespaces"): {"list", "watch"},
        ("ClusterRole", "networking.k8s.io", "networkpolicies"): {"list", "watch"},
        ("Role", GROUP, "ipinstances"): {"list", "watch"},
        ("Role", GROUP, "ipinstances/status"): {"update"},
    }


def test_the_daemon_container_arguments_parse_and_match_the_role() -> None:
    daemon = container("containers", "daemon")
    assert daemon["command"] == ["hybridnet-daemon"]
    args = expanded_args(daemon, NODE_NAME="node-a")
    parsed = daemon_main.parse_args(args)
    assert parsed.command == "serve" and parsed.node_name == "node-a"
    assert parsed.kubeconfig is None and parsed.store is None  # in-cluster credentials
    role = deploy_docs.one(documents(), "Role")
    assert parsed.ipam_namespace == role["metadata"]["namespace"]
    port = int(flag(daemon["args"], "--metrics-address").rpartition(":")[2])
    assert [p["containerPort"] for p in daemon["ports"]] == [port]
    for probe, ready in (("livenessProbe", False), ("readinessProbe", True)):
        command = daemon[probe]["exec"]["command"]
        assert command[0] == "hybridnet-daemon"
        checked = daemon_main.parse_args(command[1:])
        assert (checked.command, checked.ready, checked.socket) == ("probe", ready, parsed.socket)
    assert set(daemon["resources"]["requests"]) == {"cpu", "memory"}


def test_the_install_step_writes_where_the_runtime_looks() -> None:
    installer = container("initContainers", "install-cni")
    parsed = daemon_main.parse_args(expanded_args(installer))
    assert parsed.command == "install" and parsed.python == "/usr/bin/python3"
    daemon = daemon_main.parse_args(expanded_args(container("containers", "daemon"), NODE_NAME="n"))
    assert parsed.mtu == daemon.mtu_default == 1500  # one MTU setting for the conflist and ADD
    assert parsed.socket == daemon.socket  # the conflist names the socket the daemon serves
    mounts = {m["mountPath"]: m["name"] for m in installer["volumeMounts"]}
    host_paths = {
        v["name"]: v["hostPath"]["path"] for v in pod_spec()["volumes"] if "hostPath" in v
    }
    assert host_paths[mounts[str(parsed.cni_bin_dir)]] == "/opt/cni/bin"
    assert host_paths[mounts[str(parsed.cni_conf_dir)]] == "/etc/cni/net.d"
    daemon_mounts = {
        m["name"]: m["mountPath"] for m in container("containers", "daemon")["volumeMounts"]
    }
    assert (
        host_paths["run-hybridnet"] == daemon_mounts["run-hybridnet"] == str(parsed.socket.parent)
    )


def test_only_the_daemon_is_privileged() -> None:
    spec = pod_spec()
    assert spec["hostNetwork"] is True and not spec.get("hostPID") and not spec.get("hostIPC")
    assert spec["nodeSelector"] == {"kubernetes.io/os": "linux"}
    assert container("containers", "daemon")["securityContext"]["privileged"] is True
    install_context = container("initContainers", "install-cni")["securityContext"]
    assert install_context.get("privileged", False) is False
    assert install_context["capabilities"]["drop"] == ["ALL"]
    assert install_context["allowPrivilegeEscalation"] is False
    netns = [m for m in container("containers", "daemon")["volumeMounts"] if m["name"] == "netns"]
    assert netns == [
        {"name": "netns", "mountPath": "/run/netns", "mountPropagation": "HostToContainer"}
    ]
