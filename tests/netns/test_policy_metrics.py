"""Issue 15 §5: the daemon's NetworkPolicy metrics as a scraper sees them, over HTTP.

A one-node virtual cluster (the real daemon on the embedded store, pods attached through the
real plugin) whose daemon serves ``--metrics-address`` on the loopback of its own node
namespace; the test scrapes ``/metrics`` from a thread inside that namespace (the root
namespace is never touched) and reads the exposition with prometheus_client's own parser.

Three pods of namespace ``x`` on the node: ``server`` (ingress isolated: from ``allowed``, and
UDP 81 from anyone), ``denied`` (egress isolated: only to ``server``) and ``allowed`` (not
isolated). Drops are sent as single UDP datagrams, each of which is one packet through the
forward hook, so the counters must rise by exactly the datagrams sent (a refused TCP connect
retransmits its SYN on a timer: its packet count depends on how long the client waited).
"""

from __future__ import annotations

import itertools
import json
import socket
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from hybridnet import lab as testbed
from hybridnet.api import constants as c
from hybridnet.api.builtin import Namespace as NamespaceObject
from hybridnet.api.meta import ObjectMeta
from hybridnet.lab import cluster_daemons
from hybridnet.lab.cluster import Cluster, ClusterConfig, ClusterNode, ClusterPod
from hybridnet.metrics import LATENCY_BUCKETS
from hybridnet.netlink import nftables, ns
from tests.netns import policy_cluster
from tests.netns.policy_cluster import enforced, policies, policy
from tests.netns.policy_matrix import Peer, agent_argv

pytestmark = pytest.mark.root

T = TypeVar("T")
METRICS_PORT = 9912
"""The daemon's /metrics on the loopback of its node namespace (the namespace is ours)."""
TABLE = "hybridnet-policy"
BASE_RULES = 3
"""The forward chain's rules (hybridnet.policy.render): all the table holds with no pod chain."""
PAYLOAD = b"hybridnet policy metrics probe"
IPV4_UDP_HEADERS = 20 + 8
"""nft counts bytes from the network header: IPv4 (no options) and UDP headers per datagram."""
TO_SERVER = 7
TO_ALLOWED = 5
"""Different numbers, so that a drop counted on the wrong pod or direction shows."""
COUNT_TIMEOUT = 30.0
"""Bound on a sent datagram reaching its counter (microseconds here): reached only when broken."""


@pytest.fixture(scope="module")
def launched() -> float:
    """When the cluster (so its daemon) began to start: no daemon of it compiled before."""
    return time.monotonic()


@pytest.fixture(scope="module")
def cluster(
    launched: float, testbed_run: testbed.TestbedRun, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Cluster]:
    """One node whose daemon also serves /metrics (the lab's argv with the flag added)."""

    def with_metrics(node: ClusterNode, store: Path, config: ClusterConfig) -> list[str]:
        return [*plain(node, store, config), "--metrics-address", f"127.0.0.1:{METRICS_PORT}"]

    plain = cluster_daemons.argv
    config = ClusterConfig(nodes=1, resync_period=600.0)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(cluster_daemons, "argv", with_metrics)
        built = Cluster(testbed_run, tmp_path_factory.mktemp("policy-metrics"), config).up()
    try:
        built.create_networks()
        built.wait_converged()
        yield built
    finally:
        built.down()


@pytest.fixture(scope="module")
def pods(cluster: Cluster) -> dict[str, ClusterPod]:
    node = cluster.nodes[0]
    with enforced(cluster):
        cluster.store.create(NamespaceObject(ObjectMeta(name="x", labels={"ns": "x"})))
        found = {
            name: policy_cluster.add_pod(cluster, node, "x", name, kind)
            for name, kind in (("server", c.TYPE_OVERLAY), ("denied", c.TYPE_OVERLAY),
                               ("allowed", c.TYPE_UNDERLAY))
        }  # fmt: skip
    return found


@pytest.fixture(scope="module")
def servers(pods: dict[str, ClusterPod]) -> dict[str, Peer]:
    found = {}
    for name, pod in pods.items():
        peer = Peer(f"x/{name}", pod.netns, {4: pod.ipv4, 6: pod.ipv6})
        peer.start_server([80, 81])
        found[name] = peer
    return found


# --------------------------------------------------------------------------- reading


def inside(path: str, work: Callable[[], T]) -> T:
    return ns.run_inside(path, work)


def scrape(node: ClusterNode) -> dict[str, list[Sample]]:
    """``/metrics`` read over HTTP from inside the node: family name -> its samples."""

    def get() -> tuple[str, str]:
        url = f"http://127.0.0.1:{METRICS_PORT}/metrics"
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.headers.get("Content-Type", ""), response.read().decode()

    content_type, text = inside(node.host.path, get)
    assert content_type.startswith("text/plain"), content_type
    return {family.name: family.samples for family in text_string_to_metric_families(text)}


def one(samples: list[Sample], name: str, **labels: str) -> float:
    """The value of the one sample called ``name`` with exactly ``labels``."""
    found = [s.value for s in samples if s.name == name and s.labels == labels]
    assert len(found) == 1, f"{name}{labels}: {len(found)} samples in {samples}"
    return found[0]


def drops(node: ClusterNode) -> dict[tuple[str, str, str], tuple[float, float]]:
    """(namespace, pod, direction) -> (packets, bytes), checking every sample's labels."""
    metrics = scrape(node)
    packets = metrics["hybridnet_policy_dropped_packets"]
    octets = metrics["hybridnet_policy_dropped_bytes"]
    found: dict[tuple[str, str, str], tuple[float, float]] = {}
    for sample in packets:
        assert sample.name == "hybridnet_policy_dropped_packets_total"
        assert set(sample.labels) == {"node", "namespace", "pod", "direction"}
        assert sample.labels["node"] == node.name
        labels = dict(sample.labels)
        key = (labels["namespace"], labels["pod"], labels["direction"])
        found[key] = (sample.value, one(octets, "hybridnet_policy_dropped_bytes_total", **labels))
    assert len(octets) == len(packets)
    return found


def kernel_counts(node: ClusterNode) -> tuple[int, int]:
    """Rules and set/map elements of the daemon's table as nft lists them."""
    listing = inside(node.host.path, lambda: nftables.list_table("inet", TABLE)) or []
    rules = sum(1 for item in listing if "rule" in item)
    elements = sum(
        len(item[kind].get("elem", []))
        for item in listing
        for kind in ("set", "map")
        if kind in item
    )
    return rules, elements


def wait_for_drops(
    node: ClusterNode, key: tuple[str, str, str], wanted: float
) -> dict[tuple[str, str, str], tuple[float, float]]:
    """Scrapes until ``key``'s packets reach ``wanted`` (the positive signal that every
    datagram sent has been through the forward hook); the last scrape."""
    deadline = time.monotonic() + COUNT_TIMEOUT
    while True:
        found = drops(node)
        if found.get(key, (0.0, 0.0))[0] >= wanted or time.monotonic() > deadline:
            return found
        time.sleep(0.05)


# --------------------------------------------------------------------------- traffic


def send_datagrams(source: ClusterPod, address: str, port: int, count: int) -> None:
    """``count`` UDP datagrams from inside the pod, one ``send`` each (one packet each)."""

    def send() -> None:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.connect((address, port))
            for _ in range(count):
                sock.send(PAYLOAD)

    inside(source.netns.path, send)


def answered(source: ClusterPod, target: ClusterPod, port: int, source_port: int) -> str:
    """One UDP probe of the agent (policy_agent.py): ``ok`` once the server answered."""
    request: list[dict[str, Any]] = [
        {"id": f"{source.name}-{target.name}-{port}", "address": target.ipv4, "port": port,
         "proto": "udp", "timeout": 10.0, "source_port": source_port}
    ]  # fmt: skip
    done = source.netns.exec(agent_argv("probe"), input_text=json.dumps(request), timeout=60)
    (result,) = json.loads(done.stdout).values()
    return str(result)


ISOLATING = (
    policy("x", "server-ingress", {
        "podSelector": {"matchLabels": {"pod": "server"}},
        "policyTypes": ["Ingress"],
        "ingress": [{"from": [{"podSelector": {"matchLabels": {"pod": "allowed"}}}]},
                    {"ports": [{"protocol": "UDP", "port": 81}]}],
    }),
    policy("x", "denied-egress", {
        "podSelector": {"matchLabels": {"pod": "denied"}},
        "policyTypes": ["Egress"],
        "egress": [{"to": [{"podSelector": {"matchLabels": {"pod": "server"}}}]}],
    }),
)  # fmt: skip


# --------------------------------------------------------------------------- tests


def test_drops_per_pod_and_direction_rise_by_exactly_the_datagrams_denied(
    cluster: Cluster, pods: dict[str, ClusterPod], servers: dict[str, Peer]
) -> None:
    node = cluster.nodes[0]
    server, denied, allowed = pods["server"], pods["denied"], pods["allowed"]
    server_in = ("x", "server", "ingress")
    denied_out = ("x", "denied", "egress")
    assert drops(node) == {}, "no pod is isolated yet: no drop series"
    with policies(cluster, *ISOLATING):
        # Allowed flows, which also resolve each sender's gateway before the datagrams go.
        assert answered(denied, server, 81, 20001) == "ok"
        assert answered(allowed, server, 80, 20002) == "ok"
        before = drops(node)
        assert set(before) == {server_in, denied_out}, "one series per isolated pod chain"

        send_datagrams(denied, server.ipv4, 80, TO_SERVER)  # egress passes, ingress drops
        send_datagrams(denied, allowed.ipv4, 80, TO_ALLOWED)  # egress drops
        after = wait_for_drops(node, server_in, before[server_in][0] + TO_SERVER)
        after = wait_for_drops(node, denied_out, before[denied_out][0] + TO_ALLOWED)

        size = IPV4_UDP_HEADERS + len(PAYLOAD)
        rise = {key: (after[key][0] - before[key][0], after[key][1] - before[key][1])
                for key in before}  # fmt: skip
        assert rise == {
            server_in: (TO_SERVER, TO_SERVER * size),
            denied_out: (TO_ALLOWED, TO_ALLOWED * size),
        }
        assert answered(allowed, server, 80, 20003) == "ok"  # allowed flows count nothing
        assert drops(node)[server_in] == after[server_in]
        assert PAYLOAD.decode() not in servers["server"].tokens() | servers["allowed"].tokens()
    assert drops(node) == {}, "the policies are gone: so are the pods' chains and series"


def test_compile_time_and_table_size_describe_the_table_the_kernel_holds(
    launched: float, cluster: Cluster, pods: dict[str, ClusterPod]
) -> None:
    node = cluster.nodes[0]
    first = scrape(node)
    count = one(first["hybridnet_policy_compile_seconds"], "hybridnet_policy_compile_seconds_count",
                node=node.name)  # fmt: skip
    assert count >= 1, "the daemon compiled at least once to enforce no policy"
    assert one(first["hybridnet_policy_rules"], "hybridnet_policy_rules", node=node.name) == (
        BASE_RULES
    )
    with policies(cluster, *ISOLATING):
        metrics = scrape(node)
        rules, elements = kernel_counts(node)
        gauge = {name: one(metrics[name], name, node=node.name)
                 for name in ("hybridnet_policy_rules", "hybridnet_policy_set_elements",
                              "hybridnet_policy_isolated_pod_chains")}  # fmt: skip
        assert gauge == {
            "hybridnet_policy_rules": rules,
            "hybridnet_policy_set_elements": elements,
            "hybridnet_policy_isolated_pod_chains": 2,
        }
        assert rules > BASE_RULES
    _assert_sane_histogram(scrape(node), node.name, count, time.monotonic() - launched)
    assert one(scrape(node)["hybridnet_policy_rules"], "hybridnet_policy_rules",
               node=node.name) == BASE_RULES  # fmt: skip


def _assert_sane_histogram(
    metrics: dict[str, list[Sample]], node: str, count_before: float, lifetime: float
) -> None:
    """The latency buckets every component uses, cumulative up to ``+Inf`` == count; more
    compiles than before (writing the policies and deleting them each compiled); a positive
    sum no larger than the daemon has lived (its compiles run one after another on its one
    reconcile worker)."""
    samples = metrics["hybridnet_policy_compile_seconds"]
    assert {s.labels["node"] for s in samples} == {node}
    name = "hybridnet_policy_compile_seconds"
    buckets = sorted(
        ((float(s.labels["le"]), s.value) for s in samples if s.name == f"{name}_bucket"),
    )
    count = one(samples, f"{name}_count", node=node)
    total = one(samples, f"{name}_sum", node=node)
    assert [bound for bound, _ in buckets] == [*LATENCY_BUCKETS, float("inf")]
    assert buckets[-1][1] == count
    assert all(a[1] <= b[1] for a, b in itertools.pairwise(buckets))
    assert count >= count_before + 2
    assert 0 < total <= lifetime
