"""Issue 15: NetworkPolicy on BGP-mode underlay pods, with traffic, on the real control plane.

What is real: the cluster of tests/cluster/test_bgp_kube.py (its fixtures, reused): a
kube-apiserver + etcd, the leader-elected manager speaking BGP through ExaBGP from node 1,
BIRD 2 in the gateway namespace as the fabric's router installing the pods' /32 and /128
routes it learns into its kernel, two nodes running hybridnet-daemon as its ServiceAccount.
BGP pods' addresses (198.19.0.0/24, 2001:db8:19::/64) are on no segment: a packet between
pods of two nodes goes pod -> node -> gateway (by BIRD's route) -> node -> pod, with no layer
2 between the nodes. This module adds an overlay network (VXLAN, 198.19.60.0/24, NAT to the
outside) for one overlay pod beside three BGP pods (tests/netns/policy_underlay.py's layout),
and NetworkPolicies written to the API server, enforced by each daemon in its nftables table
(waited for by the inputs' digest each daemon logs), proven by the probe matrix.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from hybridnet.api import constants as c
from hybridnet.api.builtin import Pod
from hybridnet.api.meta import ObjectMeta
from hybridnet.api.resources import (
    AddressRange,
    Network,
    NetworkSpec,
    Subnet,
    SubnetConfig,
    SubnetSpec,
)
from hybridnet.ipamstore import ipinstances
from hybridnet.lab.manager import IPAM_NAMESPACE
from tests.cluster import test_bgp_kube as bgp
from tests.cluster.datapath_cluster import KubeNode
from tests.netns import policy_cases, policy_cluster, policy_underlay
from tests.netns.policy_cluster import Daemons, enforced
from tests.netns.policy_matrix import Peer
from tests.netns.policy_underlay import World

pytestmark = pytest.mark.root

plane = bgp.plane
cluster = bgp.cluster
"""The BGP module's fixtures: this module gets its own control plane and BGP cluster."""

OVERLAY, OVERLAY_V4, OVERLAY_VNI = "overlay", "198.19.60.0/24", 4
OUTSIDE_EXTRA_V4, OUTSIDE_EXTRA_V6 = "198.18.200.3", "2001:db8:200::3"


def add_overlay(world: bgp.Cluster) -> None:
    spec = NetworkSpec(type=c.TYPE_OVERLAY, mode=c.MODE_VXLAN, net_id=OVERLAY_VNI)
    world.store.create(Network(ObjectMeta(name=OVERLAY), spec))
    subnet = SubnetSpec(
        network=OVERLAY,
        range=AddressRange(version="4", cidr=OVERLAY_V4),
        config=SubnetConfig(auto_nat_outgoing=True),
    )
    world.store.create(Subnet(ObjectMeta(name="overlay-v4"), subnet))


def add_pod(world: bgp.Cluster, key: str, network_type: str, node: KubeNode) -> Peer:
    """The Pod (labels, named ports: a Pod's containers cannot change once created) bound to
    ``node``, ADDed through the plugin: a BGP pod's ADD returns once the manager announced
    its routes."""
    namespace, _, name = key.partition("/")
    family = "DualStack" if network_type == c.TYPE_UNDERLAY else "IPv4"
    annotations = {c.ANNOTATION_NETWORK_TYPE: network_type, c.ANNOTATION_IP_FAMILY: family}
    container = {"name": "c", "image": "busybox", "ports": policy_cases.port_names()}
    meta = ObjectMeta(name=name, namespace=namespace, annotations=annotations,
                      labels=policy_cases.pod_labels(name))  # fmt: skip
    world.store.create(Pod(meta, body={"spec": {"nodeName": node.name, "containers": [container]}}))
    netns = world.fabric.add_pod(f"{namespace}-{name}")
    node.add(netns, namespace, name)
    instances = world.harness.instances(namespace, name)
    addresses = {int(i.spec.address.version): ipinstances.address_of(i) for i in instances}
    here = Peer(node.name, node.netns, {4: node.netns.ipv4, 6: node.netns.ipv6})
    return Peer(key, netns, addresses, node=here)


@pytest.fixture(scope="module")
def world(cluster: bgp.Cluster) -> World:
    daemons = Daemons(
        cluster.store, {node.name: node.log_path for node in cluster.nodes}, IPAM_NAMESPACE
    )
    add_overlay(cluster)
    with enforced(daemons):  # every daemon has seen every pod before the first case
        policy_cluster.create_namespaces(cluster.store, policy_underlay.NAMESPACES)
        pods = {
            key: add_pod(cluster, key, kind, cluster.nodes[index])
            for key, (kind, index) in policy_underlay.LAYOUT.items()
        }
    outside = cluster.outside
    outside.ip("addr", "add", f"{OUTSIDE_EXTRA_V4}/24", "dev", "eth0")
    outside.ip("-6", "addr", "add", f"{OUTSIDE_EXTRA_V6}/64", "dev", "eth0", "nodad")
    far = Peer("outside", outside, {4: bgp.OUTSIDE_V4, 6: bgp.OUTSIDE_V6})
    far_extra = Peer("outside2", outside, {4: OUTSIDE_EXTRA_V4, 6: OUTSIDE_EXTRA_V6})
    binds = [bgp.OUTSIDE_V4, bgp.OUTSIDE_V6, OUTSIDE_EXTRA_V4, OUTSIDE_EXTRA_V6]
    far.start_server(policy_cases.PORTS, binds)
    far_extra.server = far.server
    for peer in pods.values():
        peer.start_server(policy_cases.PORTS)
    return World(daemons, pods, far, far_extra)


@pytest.mark.parametrize("case", policy_underlay.CASES, ids=lambda case: case.__name__)
def test_network_policy_on_bgp_pods(world: World, case: Callable[[World], None]) -> None:
    case(world)
