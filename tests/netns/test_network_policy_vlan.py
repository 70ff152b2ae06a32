"""Issue 15: NetworkPolicy on VLAN-tagged underlay pods, with traffic, on the virtual cluster.

The lab's cluster (hybridnet.lab.cluster: real daemons on one embedded store, pods attached
by the real plugin) with two nodes, but its underlay network is VLAN 101 (netID 101, subnet
198.19.101.0/24): each daemon makes ``eth0.101`` on its node and its VLAN pods' frames leave
tagged; the gateway routes the VLAN on its own ``eth0.101``. Beside three VLAN pods on the two
nodes sits an overlay pod (VXLAN), and the cases of tests/netns/policy_underlay.py run over
them with the probe matrix; then, where the kernel has SCTP sockets (our UML kernel), real SCTP
associations allowed and denied by port.

Where it runs: natively where the kernel has both 802.1Q and nftables' ``inet`` family. This
machine's kernel lacks 802.1Q, so the ``requires_8021q`` marker moves the test into
user-mode-linux (tests/netns/uml.py), whose kernel is our own build (hack/uml/build.sh, ``make
uml-kernel``) with nftables' inet, ip and ip6 families built in. Debian's user-mode-linux
kernel, the runner's fallback while that build is missing, has no such family (nf_tables is a
module without CONFIG_NF_TABLES_INET, _IPV4 and _IPV6: ``nft add table inet t`` fails there),
so the test probes first and skips saying which kernel it is in and what its configuration
says; it is one test item (one guest boot) for that reason.
"""

from __future__ import annotations

import gzip
import ipaddress
import itertools
import json
import os
import socket
import sys
import time
from pathlib import Path

import pytest

from hybridnet import lab as testbed
from hybridnet.api import constants as c
from hybridnet.api.meta import ObjectMeta
from hybridnet.api.resources import Network, NetworkSpec
from hybridnet.lab.cluster import (
    FABRIC_LABELS,
    OVERLAY,
    OVERLAY_VNI,
    UNDERLAY,
    Cluster,
    ClusterConfig,
    SubnetPlan,
)
from hybridnet.policy.model import Direction
from hybridnet.policy.render import FAMILY
from tests.netns import policy_cluster, policy_underlay, uml
from tests.netns.policy_cluster import daemons_of, enforced, policies, policy
from tests.netns.policy_matrix import Peer
from tests.netns.policy_underlay import World
from tests.netns.uml import in_guest

pytestmark = [pytest.mark.root, pytest.mark.requires_8021q]

VLAN_ID = 101
VLAN = SubnetPlan("vlan101-v4", UNDERLAY, "198.19.101.0/24", "198.19.101.1",
                  "198.19.101.100", "198.19.101.199")  # fmt: skip
OVERLAY_V4 = SubnetPlan("overlay-v4", OVERLAY, "198.19.0.0/24", nat=True)
SUB_INTERFACE = f"eth0.{VLAN_ID}"
NFT_FAMILY_OPTIONS = ("CONFIG_NF_TABLES_INET", "CONFIG_NF_TABLES_IPV4", "CONFIG_NF_TABLES_IPV6")


def policy_table_refused(run: testbed.TestbedRun) -> str:
    """Why this kernel cannot hold the policy table (empty when it can): an ``inet`` table
    made in a namespace of our own."""
    probe = testbed.create_namespace(run.name("nft-probe"))
    try:
        done = probe.exec(["nft", "add", "table", FAMILY, "probe"], check=False)
        return "" if done.returncode == 0 else done.stderr.strip().splitlines()[0]
    finally:
        probe.delete()


def guest_kernel_config() -> str:
    """Inside user-mode-linux: which kernel this is and what its configuration says of
    nftables' inet, ip and ip6 families."""
    config = Path(os.environ.get(uml.GUEST_CONFIG_ENV, ""))
    if not in_guest() or not config.is_file():
        return ""
    opener = gzip.open if config.suffix == ".gz" else open
    with opener(config, "rt") as lines:
        found = [
            line.strip() for line in lines if line.strip("# \n").startswith(NFT_FAMILY_OPTIONS)
        ]
    kernel = os.environ.get(uml.GUEST_KERNEL_ENV, "?")
    hint = "" if uml.in_our_kernel() else "; make uml-kernel builds a kernel with them"
    return f"; user-mode-linux kernel {kernel}, its config ({config}): {', '.join(found)}{hint}"


def create_networks(cluster: Cluster) -> None:
    """The underlay as VLAN 101 over every node's eth0, the overlay as the lab makes it, and
    the gateway's sub-interface holding the VLAN's gateway address."""
    underlay = NetworkSpec(
        type=c.TYPE_UNDERLAY, mode=c.MODE_VLAN, net_id=VLAN_ID, node_selector=dict(FABRIC_LABELS)
    )
    cluster.store.create(Network(ObjectMeta(name=UNDERLAY), underlay))
    overlay = NetworkSpec(type=c.TYPE_OVERLAY, mode=c.MODE_VXLAN, net_id=OVERLAY_VNI)
    cluster.store.create(Network(ObjectMeta(name=OVERLAY), overlay))
    for plan in (VLAN, OVERLAY_V4):
        cluster.create_subnet(plan)
    gateway = cluster.fabric.gateway
    gateway.ip("link", "add", "link", "eth0", "name", SUB_INTERFACE,
               "type", "vlan", "id", str(VLAN_ID))  # fmt: skip
    prefix = ipaddress.ip_network(VLAN.cidr).prefixlen
    gateway.ip("addr", "add", f"{VLAN.gateway}/{prefix}", "dev", SUB_INTERFACE)
    gateway.ip("link", "set", SUB_INTERFACE, "up")


def vlan_of(node: testbed.Namespace) -> tuple[str, int]:
    shown = json.loads(node.ip("-j", "-d", "link", "show", SUB_INTERFACE).stdout)[0]
    return shown["linkinfo"]["info_kind"], shown["linkinfo"]["info_data"]["id"]


def test_network_policy_on_vlan_tagged_pods(
    testbed_run: testbed.TestbedRun, tmp_path: Path
) -> None:
    refused = policy_table_refused(testbed_run)
    if refused:
        reason = f"nftables refuses an {FAMILY} table in this kernel ({refused})"
        if uml.in_our_kernel():  # built to have it: a lost config line, not a missing kernel
            pytest.fail(reason + guest_kernel_config() + " (see hack/uml/kernel.config)")
        pytest.skip(reason + guest_kernel_config())
    config = ClusterConfig(nodes=2, ip_family="IPv4", resync_period=600.0)
    with Cluster(testbed_run, tmp_path / "cluster", config) as cluster:
        create_networks(cluster)
        cluster.wait_converged()
        with enforced(cluster):
            pods = policy_cluster.create(cluster, policy_underlay.LAYOUT)
        for node in cluster.nodes:
            assert vlan_of(node.host) == ("vlan", VLAN_ID)
        for key, (kind, _) in policy_underlay.LAYOUT.items():
            on_vlan = ipaddress.ip_address(pods.pod(key).addresses[4]) in ipaddress.ip_network(
                VLAN.cidr
            )
            assert on_vlan == (kind == c.TYPE_UNDERLAY), key
        world = World(daemons_of(cluster), pods.pods, pods.outside, pods.outside_extra)
        for case in policy_underlay.CASES:
            case(world)
        if has_sctp_sockets():  # this host's kernel has none; our UML kernel has them
            sctp_associations_by_port(pods)


def has_sctp_sockets() -> bool:
    try:
        socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_SCTP).close()
    except OSError:  # EPROTONOSUPPORT: no SCTP in this kernel
        return False
    return True


SCTP_SERVER = """
import socket, sys, threading
def serve(listener, port):
    while True:
        conn, _ = listener.accept()
        token = conn.recv(64).decode()
        print(f"{port} {token}", flush=True)
        conn.sendall(b"ok " + token.encode())
        conn.close()
for port in sys.argv[1:]:
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_SCTP)
    listener.bind(("0.0.0.0", int(port)))
    listener.listen(16)
    threading.Thread(target=serve, args=(listener, port), daemon=True).start()
print("ready", flush=True)
threading.Event().wait()
"""
"""SCTP servers (one-to-one sockets) at each port of argv; prints ``PORT TOKEN`` for each
association that sends its token, and answers ``ok TOKEN``."""

SCTP_CLIENT = """
import socket, sys
address, port, token = sys.argv[1], int(sys.argv[2]), sys.argv[3]
client = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_SCTP)
client.settimeout(float(sys.argv[4]))
client.connect((address, port))
client.sendall(token.encode())
print(client.recv(64).decode(), flush=True)
"""
"""One SCTP association to ADDRESS PORT carrying TOKEN, within TIMEOUT seconds."""

SCTP_BOUND = 60.0
"""How long an allowed association may take, and a denied INIT to be counted: well under a
second in user-mode-linux; reached only when broken."""


def sctp_associations_by_port(pods: policy_cluster.PolicyPods) -> None:
    """Real SCTP associations (the kernel has SCTP sockets) beside test_network_policy's INIT
    stand-in: into the VLAN pod x/a, from the overlay pod y/b on its node and the VLAN pod x/b
    on the other, port 81 is reached before the policy; with a policy allowing SCTP 80 only,
    the association to 80 completes and one to 81 started before it never reaches the server
    while x/a's ingress drop counter counts its INIT."""
    server, clients = pods.pod("x/a"), (pods.pod("y/b"), pods.pod("x/b"))
    member = pods.members[server.name]
    host = member.node.host
    interface = policy_cluster.host_interface(host, member.netns.name)
    listener = server.netns.spawn([sys.executable, "-c", SCTP_SERVER, "80", "81"])
    listener.wait_for_line("^ready$", timeout=SCTP_BOUND)
    tokens = itertools.count(1)

    def associate(client: Peer, port: int) -> str:
        token = f"{client.name}-{port}-{next(tokens)}"
        argv = [sys.executable, "-c", SCTP_CLIENT, server.addresses[4], str(port), token]
        done = client.netns.exec([*argv, str(SCTP_BOUND)], timeout=SCTP_BOUND + 10)
        assert done.stdout.strip() == f"ok {token}", f"{client.name} -> sctp/{port}: {done}"
        return token

    for client in clients:
        listener.wait_for_line(f"^81 {associate(client, 81)}$", timeout=SCTP_BOUND)
    spec = {"podSelector": {}, "ingress": [{"ports": [{"protocol": "SCTP", "port": 80}]}]}
    with policies(pods.cluster, policy("x", "sctp-80", spec)):
        for client in clients:
            counted = policy_cluster.drop_count(host, Direction.INGRESS, interface)
            denied = f"{client.name}-81-{next(tokens)}"
            attempt = client.netns.spawn([sys.executable, "-c", SCTP_CLIENT, server.addresses[4],
                                          "81", denied, str(SCTP_BOUND)])  # fmt: skip
            listener.wait_for_line(f"^80 {associate(client, 80)}$", timeout=SCTP_BOUND)
            deadline = time.monotonic() + SCTP_BOUND
            while policy_cluster.drop_count(host, Direction.INGRESS, interface) <= counted:
                assert time.monotonic() < deadline, f"x/a's drop counter missed {denied}'s INIT"
                time.sleep(0.05)
            assert f"81 {denied}" not in list(listener.output_lines), f"{denied} got through"
            attempt.stop()
