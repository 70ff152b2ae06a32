"""NetworkPolicy in the datapath's pure part: the view's Pods joined to their IPInstances and
host ends, the table desired from it, what cannot be enforced as a problem, and a view without
policy inputs (or one that fails to compile) leaving the kernel's table alone."""

from __future__ import annotations

import ipaddress
from typing import Any

import pytest

from hybridnet.api.builtin import Namespace, NetworkPolicy, Pod
from hybridnet.api.meta import ObjectMeta
from hybridnet.api.resources import IPInstance
from hybridnet.daemon.attachment import MARK_PREFIX
from hybridnet.daemon.datapath import policy_table
from hybridnet.daemon.datapath.desired import desired_state
from hybridnet.daemon.datapath.policy_endpoints import build
from hybridnet.daemon.datapath.policy_table import PolicyTable
from hybridnet.daemon.datapath.problems import ProblemCode
from hybridnet.daemon.datapath.view import HostFacts, HostLink, NodeView, PolicyView
from hybridnet.policy.model import Direction
from tests.unit.daemon.cache_helpers import instance
from tests.unit.daemon.datapath.builders import CONFIG, NODE

NODE_LINK = HostLink("eth0", 2, None, 1500, "52:54:00:00:00:0a", True, None,
                     ("198.18.0.10/24", "2001:db8::a/64"))  # fmt: skip


def pod(name: str, namespace: str = "x", **extra: Any) -> Pod:
    labels = extra.pop("labels", {"pod": name})
    spec = {"nodeName": NODE, "containers": [{"name": "main", "ports": extra.pop("ports", [])}]}
    spec.update(extra.pop("spec", {}))
    body: dict[str, Any] = {"spec": spec, **extra}
    return Pod(ObjectMeta(name=name, namespace=namespace, labels=labels), body=body)


def address(pod_name: str, ip: str, sandbox: str | None = None, namespace: str = "x") -> IPInstance:
    found = instance(pod_name, ip, namespace=namespace)
    found.status.sandbox_id = sandbox
    return found


def host_end(name: str, sandbox: str) -> HostLink:
    return HostLink(name, 10, "veth", 1500, None, True, f"{MARK_PREFIX}{sandbox}/eth0")


def facts(*links: HostLink) -> HostFacts:
    return HostFacts(links={link.name: link for link in (NODE_LINK, *links)})


def network_policy(name: str, spec: dict[str, Any], namespace: str = "x") -> NetworkPolicy:
    return NetworkPolicy(ObjectMeta(name=name, namespace=namespace), body={"spec": spec})


def test_pods_get_their_ipinstances_addresses_and_local_ones_their_host_end() -> None:
    view = PolicyView(
        pods=(pod("a"), pod("b"), pod("c", namespace="y")),
        namespaces=(Namespace(ObjectMeta(name="x", labels={"team": "blue"})),),
        addresses=(
            address("a", "198.19.0.5", sandbox="sandbox-a"),
            address("a", "2001:db8:1::5", sandbox="sandbox-a"),
            address("b", "198.19.0.6", sandbox="elsewhere"),
            address("c", "198.19.0.7", namespace="y"),
        ),
    )
    peers = build(view, facts(host_end("hyb0000000000a", "sandbox-a")).links)
    found = {p.key: p for p in peers.pods}
    assert [str(a) for a in found["x/a"].addresses] == ["198.19.0.5", "2001:db8:1::5"]
    assert found["x/a"].host_interface == "hyb0000000000a"
    assert found["x/b"].host_interface is None  # its sandbox's host end is another node's
    assert [str(a) for a in found["y/c"].addresses] == ["198.19.0.7"]
    assert [p.key for p in peers.local] == ["x/a"]
    assert peers.namespaces[0].labels == {"kubernetes.io/metadata.name": "x", "team": "blue"}
    assert [str(a) for a in peers.node_addresses] == ["198.18.0.10", "2001:db8::a"]


def test_host_network_pods_and_finished_pods_are_left_out() -> None:
    view = PolicyView(
        pods=(
            pod("host", spec={"hostNetwork": True}),
            pod("done", status={"phase": "Succeeded"}),
            pod("failed", status={"phase": "Failed"}),
            pod("running", status={"phase": "Running"}),
        ),
        addresses=(address("done", "198.19.0.9"), address("running", "198.19.0.9")),
    )
    assert [p.key for p in build(view, {}).pods] == ["x/running"]


def test_split_brain_gives_a_pod_the_lowest_named_address_of_each_family() -> None:
    view = PolicyView(
        pods=(pod("a"),),
        addresses=(address("a", "198.19.0.20"), address("a", "198.19.0.3")),
    )
    (found,) = build(view, {}).pods
    assert found.addresses == (ipaddress.ip_address("198.19.0.20"),)  # "198-19-0-20" < "…-3"


def view_with(*policies: NetworkPolicy, ports: list[dict[str, Any]] | None = None) -> NodeView:
    return NodeView(
        node_name=NODE,
        policy=PolicyView(
            pods=(pod("a", ports=ports or []), pod("b")),
            policies=policies,
            addresses=(address("a", "198.19.0.5", "sandbox-a"), address("b", "198.19.0.6")),
        ),
    )


def policy_of(view: NodeView) -> PolicyTable:
    host = facts(host_end("hyb0000000000a", "sandbox-a"))
    (table,) = [o for o in desired_state(view, CONFIG, host).objects if isinstance(o, PolicyTable)]
    return table


def test_an_isolated_local_pod_gets_its_chain_and_map_entry() -> None:
    deny = network_policy("deny", {"podSelector": {}, "policyTypes": ["Ingress"]})
    table = policy_of(view_with(deny))
    assert [c.name for c in table.ruleset.chains] == ["ingress-hyb0000000000a"]
    assert table.ruleset.maps[Direction.INGRESS] == {("hyb0000000000a", "ingress-hyb0000000000a")}
    assert table.name == CONFIG.policy_table
    (counter,) = table.ruleset.counters
    assert (counter.namespace, counter.pod, counter.direction) == ("x", "a", Direction.INGRESS)


def test_without_policies_the_table_isolates_nobody() -> None:
    table = policy_of(view_with())
    assert table.ruleset.chains == ()
    assert not any(table.ruleset.maps.values())


def test_a_named_port_nobody_defines_is_a_problem_of_that_policy() -> None:
    spec = {"podSelector": {}, "ingress": [{"ports": [{"port": "nothing"}]}]}
    view = view_with(network_policy("named", spec), ports=[{"name": "web", "containerPort": 80}])
    state = desired_state(view, CONFIG, facts(host_end("hyb0000000000a", "sandbox-a")))
    assert state.policy is not None
    (problem,) = state.policy.problems
    assert (problem.namespace, problem.name, problem.code, problem.about) == (
        "x", "named", "NamedPortUnresolved", "NetworkPolicy")  # fmt: skip
    assert "'nothing'" in problem.message


def test_an_unreadable_pod_selector_isolates_nothing_and_the_rest_still_applies() -> None:
    broken = network_policy(
        "broken", {"podSelector": {"matchExpressions": [{"key": "a", "operator": "Maybe"}]}}
    )
    deny = network_policy("deny", {"podSelector": {}, "policyTypes": ["Ingress"]})
    view = view_with(broken, deny)
    state = desired_state(view, CONFIG, facts(host_end("hyb0000000000a", "sandbox-a")))
    assert state.policy is not None
    assert [(p.name, p.code) for p in state.policy.problems] == [("broken", "InvalidPolicy")]
    assert [c.name for c in state.policy.table.ruleset.chains] == ["ingress-hyb0000000000a"]


def test_no_policy_inputs_means_no_verdict_on_the_table() -> None:
    state = desired_state(NodeView(node_name=NODE), CONFIG, facts())
    assert state.policy is None
    assert not [o for o in state.objects if isinstance(o, PolicyTable)]


def test_without_nftables_policies_are_a_problem_and_not_enforced() -> None:
    view = view_with(network_policy("deny", {"podSelector": {}}))
    state = desired_state(view, CONFIG, HostFacts(packet_filter=False))
    assert state.policy is None
    assert [p.code for p in state.problems] == [ProblemCode.PACKET_FILTER_UNAVAILABLE]


def test_a_compile_that_crashes_is_a_problem_and_routing_is_still_built(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def broken(*args: object) -> object:
        raise RuntimeError("a bug")

    monkeypatch.setattr(policy_table, "desired", broken)
    state = desired_state(view_with(), CONFIG, facts())
    assert state.policy is None
    (problem,) = state.problems
    assert problem.code is ProblemCode.POLICY_NOT_COMPILED
    assert "RuntimeError: a bug" in problem.message
    assert state.objects  # the sysctls and rules of the node are still there


def test_the_inputs_digest_follows_every_object_version() -> None:
    view = view_with().policy
    assert view is not None
    same = PolicyView(view.pods, view.namespaces, view.policies, view.addresses)
    assert same.digest() == view.digest()
    changed = pod("a")
    changed.metadata.resource_version = "7"
    other = PolicyView((changed, *view.pods[1:]), view.namespaces, view.policies, view.addresses)
    assert other.digest() != view.digest()
