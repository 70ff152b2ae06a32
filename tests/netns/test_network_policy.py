"""Issue 15 §3: Kubernetes NetworkPolicy with traffic, on the virtual cluster.

Three nodes with their real daemons on one embedded store, namespaces x, y, z with pods a, b,
c each (overlay and underlay pods on every node, see tests/netns/policy_cluster.py), TCP and
UDP servers on ports 80-82 in every pod and on the outside host. Each case writes policies,
waits until every node's daemon has applied exactly the store's current inputs (the
``network policy applied`` line its log prints with a digest of them: the positive signal), and
probes every pair at once against a truth table (tests/netns/policy_matrix.py says what proves
an allow and a deny). One cluster for the module; each case removes its policies.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from hybridnet import lab as testbed
from hybridnet.lab.cluster import Cluster
from tests.netns import policy_cluster
from tests.netns.policy_cluster import PolicyPods
from tests.netns.policy_matrix import Check, Flow, Reachability, assert_matrix

pytestmark = pytest.mark.root


@pytest.fixture(scope="module")
def cluster(
    testbed_run: testbed.TestbedRun, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Cluster]:
    with Cluster(testbed_run, tmp_path_factory.mktemp("policy-cluster")) as built:
        built.create_networks()
        built.wait_converged()
        yield built


@pytest.fixture(scope="module")
def pods(cluster: Cluster) -> PolicyPods:
    return policy_cluster.create(cluster)


def everything(pods: PolicyPods, flows: list[Flow]) -> list[Check]:
    return [Check(Reachability(pods.all_pods, pods.all_pods), flow) for flow in flows]


def test_without_policies_every_pod_reaches_every_pod(pods: PolicyPods) -> None:
    flows = [Flow(80, "tcp", 4), Flow(80, "udp", 4), Flow(81, "tcp", 6), Flow(81, "udp", 6)]
    assert_matrix(everything(pods, flows))
