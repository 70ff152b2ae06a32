"""The real plugin, executed the way a runtime executes it, into the real daemon: ADD, CHECK,
DEL, and chained with the reference portmap and bandwidth plugins."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from hybridnet import lab as testbed
from hybridnet.cni import versions
from hybridnet.daemon.attachment import host_ifname
from hybridnet.lab import daemon as daemon_harness
from hybridnet.lab.cni_runtime import Attachment, CniPluginError, CniRuntime
from hybridnet.rpc import daemon_pb2_grpc as pb_grpc

REFERENCE_PLUGINS = "/usr/lib/cni"


@pytest.fixture
def plugin_dir(tmp_path: Path) -> Path:
    """A CNI_PATH directory holding ``hybridnet`` as a runtime would find it."""
    return daemon_harness.plugin_dir(tmp_path / "cni-bin")


def conflist(socket: Path, version: str, chained: bool) -> dict[str, Any]:
    plugins: list[dict[str, Any]] = [{"type": "hybridnet", "socket": str(socket)}]
    if chained:
        plugins += [
            {"type": "portmap", "capabilities": {"portMappings": True}, "snat": False},
            {"type": "bandwidth", "capabilities": {"bandwidth": True}},
        ]
    return {"cniVersion": version, "name": "hybridnet", "plugins": plugins}


def runtime(
    daemon: tuple[testbed.Node, pb_grpc.DaemonStub, Path],
    plugin_dir: Path,
    tmp_path: Path,
    version: str = "1.0.0",
    chained: bool = False,
) -> CniRuntime:
    node, _, socket = daemon
    return CniRuntime(
        conflist(socket, version, chained),
        [str(plugin_dir), REFERENCE_PLUGINS],
        tmp_path / "cache",
        exec_netns=node.name,
    )


def pod_attachment(pod: testbed.Namespace, **capabilities: Any) -> Attachment:
    return Attachment(
        container_id=pod.name,
        netns=pod.path,
        ifname="eth0",
        args={"K8S_POD_NAMESPACE": "default", "K8S_POD_NAME": pod.name, "IgnoreUnknown": "1"},
        capability_args=capabilities,
    )


@pytest.mark.parametrize("version", ["0.3.1", "0.4.0", "1.0.0", "1.1.0"])
def test_add_check_del_through_the_real_plugin(
    fabric: testbed.Fabric,
    daemon: tuple[testbed.Node, pb_grpc.DaemonStub, Path],
    plugin_dir: Path,
    tmp_path: Path,
    version: str,
) -> None:
    node = daemon[0]
    cni = runtime(daemon, plugin_dir, tmp_path, version)
    pod = fabric.add_pod()
    attachment = pod_attachment(pod)
    result = cni.add(attachment)
    assert result["cniVersion"] == version
    (ip,) = result["ips"]
    assert ip["address"].startswith("198.19.50.") and pod.addresses("eth0") == [ip["address"]]
    assert {i["name"] for i in result["interfaces"]} == {"eth0", host_ifname(pod.name, "eth0")}
    if versions.allows(version, "CHECK"):
        cni.check(attachment)
    else:  # 0.3.1 has no CHECK: the plugin refuses it as an incompatible version
        with pytest.raises(CniPluginError) as refused:
            cni.check(attachment)
        assert refused.value.code == 1
    cni.delete(attachment)
    cni.delete(attachment)  # DEL again: still success
    assert host_ifname(pod.name, "eth0") not in node.links()


def test_chained_with_portmap_and_bandwidth(
    fabric: testbed.Fabric,
    daemon: tuple[testbed.Node, pb_grpc.DaemonStub, Path],
    plugin_dir: Path,
    tmp_path: Path,
) -> None:
    """ADD, CHECK and DEL run the whole chain. The reference portmap 1.1.1 cannot CHECK on this
    Debian (iptables-nft): it believes its IPv6 chain exists and reports it missing, after the
    reference bridge plugin just the same. CHECK through the whole chain therefore passes
    hybridnet (called first) and either passes or fails in portmap with exactly that defect;
    the same cached result then passes CHECK through hybridnet and bandwidth."""
    node = daemon[0]
    cni = runtime(daemon, plugin_dir, tmp_path, chained=True)
    pod = fabric.add_pod()
    attachment = pod_attachment(
        pod,
        portMappings=[{"hostPort": 18080, "containerPort": 80, "protocol": "tcp"}],
        bandwidth={
            "ingressRate": 1_000_000,
            "ingressBurst": 100_000,
            "egressRate": 1_000_000,
            "egressBurst": 100_000,
        },
    )
    result = cni.add(attachment)
    host = host_ifname(pod.name, "eth0")
    nat = node.exec(["iptables", "-t", "nat", "-S"]).stdout
    assert "18080" in nat, nat
    assert "tbf" in node.exec(["tc", "qdisc", "show", "dev", host]).stdout
    try:
        cni.check(attachment)
    except CniPluginError as exc:
        assert (exc.plugin, exc.code) == ("portmap", 999), exc
        assert "could not check ipv6 dnat" in exc.msg, exc
    without_portmap = runtime(daemon, plugin_dir, tmp_path, chained=True)
    without_portmap.conflist["plugins"] = [
        p for p in without_portmap.conflist["plugins"] if p["type"] != "portmap"
    ]
    without_portmap.check(attachment)  # the same cached result, as the runtime keeps it
    assert json.dumps(result).count(host) >= 1
    cni.delete(attachment)
    assert "18080" not in node.exec(["iptables", "-t", "nat", "-S"]).stdout
    assert host not in node.links()


def test_a_daemon_that_is_down_means_try_again_later(
    fabric: testbed.Fabric, plugin_dir: Path, tmp_path: Path
) -> None:
    node = fabric.nodes[0]
    cni = CniRuntime(
        conflist(tmp_path / "nobody.sock", "1.1.0", False),
        [str(plugin_dir)],
        tmp_path / "cache",
        exec_netns=node.name,
    )
    pod = fabric.add_pod()
    with pytest.raises(CniPluginError) as failed:
        cni.add(pod_attachment(pod))
    assert failed.value.code == 11
    with pytest.raises(CniPluginError) as status:
        cni.status()
    assert status.value.code == 50
    assert pod.links() == ["lo"]


def test_an_exhausted_subnet_is_try_again_later_and_recovers(
    fabric: testbed.Fabric, plugin_dir: Path, tmp_path: Path
) -> None:
    """Embedded store, a /29: ADD until no address is left. The next ADD answers 11 with the
    reason and leaves nothing behind; once a pod is deleted, the same ADD succeeds."""
    node = fabric.nodes[0]
    _, socket = daemon_harness.start_embedded_daemon(node, tmp_path, "198.19.91.0/29")
    cni = CniRuntime(
        conflist(socket, "1.1.0", False), [str(plugin_dir)], tmp_path / "cache", node.name
    )
    attached: list[Attachment] = []
    refused: CniPluginError | None = None
    for _ in range(9):  # a /29 has at most 6 host addresses
        pod = fabric.add_pod()
        attachment = pod_attachment(pod)
        try:
            cni.add(attachment)
        except CniPluginError as exc:
            refused = exc
            break
        attached.append(attachment)
    assert refused is not None and attached, "the /29 never ran out"
    assert refused.code == 11 and "no address" in refused.msg, refused
    assert pod.links() == ["lo"]
    links = node.links()
    assert host_ifname(attachment.container_id, "eth0") not in links
    assert len([name for name in links if name.startswith("hyb")]) == len(attached)
    cni.delete(attached[0])
    cni.add(attachment)  # the freed address goes to the pod that was refused
    assert host_ifname(attachment.container_id, "eth0") in node.links()


@pytest.mark.parametrize(
    ("daemon", "expected"),
    [("IPv4", {4}), ("IPv6", {6}), ("DualStack", {4, 6})],
    indirect=["daemon"],
)
def test_pods_of_each_family_reach_each_other_and_the_node(
    fabric: testbed.Fabric,
    daemon: tuple[testbed.Node, pb_grpc.DaemonStub, Path],
    plugin_dir: Path,
    tmp_path: Path,
    expected: set[int],
) -> None:
    """Through the real plugin: the daemon hands out the family it is set to (embedded store),
    and the pods reach each other and the node over every family they have."""
    node = daemon[0]
    node.sysctl("net.ipv6.conf.all.forwarding", "1")
    cni = runtime(daemon, plugin_dir, tmp_path, "1.1.0")
    a, b = fabric.add_pod("fa"), fabric.add_pod("fb")
    addresses = {}
    for pod in (a, b):
        result = cni.add(pod_attachment(pod))
        addresses[pod.name] = [ip["address"].split("/")[0] for ip in result["ips"]]
    families = {6 if ":" in address else 4 for address in addresses[a.name]}
    assert families == expected and len(addresses[a.name]) == len(expected)
    for target in addresses[b.name]:
        assert testbed.ping(a, target), target
    node_address = {4: node.ipv4, 6: node.ipv6}
    for family in sorted(expected):
        assert testbed.ping(a, node_address[family]), node_address[family]
    for pod in (a, b):
        cni.delete(pod_attachment(pod))
        assert pod.links() == ["lo"]
