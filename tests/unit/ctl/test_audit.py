"""The audit's rules on plain objects: what is a leak and what is kept on purpose, the daemon
comparison both ways, counters only where a manager writes them."""

from __future__ import annotations

from hybridnet.api.builtin import Node, Pod
from hybridnet.api.meta import ObjectMeta
from hybridnet.api.naming import LABEL_POD_NAMESPACE
from hybridnet.api.resources import (
    Address,
    AddressRange,
    Binding,
    IPInstance,
    IPInstanceSpec,
    IPInstanceStatus,
    StatefulInfo,
    Subnet,
    SubnetSpec,
    SubnetStatus,
)
from hybridnet.ctl import audit


def instance(pod: str, ip: str, *, node: str = "n1", stateful: bool = False,
             sandbox: str | None = None) -> IPInstance:  # fmt: skip
    labels = {LABEL_POD_NAMESPACE: "ns", "networking.alibaba.com/pod": pod}
    return IPInstance(
        ObjectMeta(name=ip.replace(".", "-"), namespace="kube-system", labels=labels),
        IPInstanceSpec(
            network="net", subnet="s", address=Address("4", f"{ip}/24", "02:00:00:00:00:01"),
            binding=Binding(pod_name=pod, node_name=node,
                            stateful=StatefulInfo(0) if stateful else None),
        ),
        IPInstanceStatus(sandbox_id=sandbox),
    )  # fmt: skip


def pod(name: str, phase: str | None = None) -> Pod:
    body = {"status": {"phase": phase}} if phase else {}
    return Pod(ObjectMeta(name=name, namespace="ns"), body=body)


def test_leaks_spare_retained_stateful_addresses() -> None:
    found = audit.leaks(
        [instance("gone", "198.19.0.2"), instance("web-0", "198.19.0.3", stateful=True),
         instance("done", "198.19.0.4"), instance("live", "198.19.0.5")],
        [pod("done", "Succeeded"), pod("live", "Running")],
    )  # fmt: skip
    assert [(f.address, f.detail) for f in found] == [
        ("198.19.0.2", "pod ns/gone no longer exists"),
        ("198.19.0.4", "pod ns/done has Succeeded"),
    ]


def test_placement_both_ways() -> None:
    attached = audit.NodeAttachments("n1", {"198.19.0.2": "c1/eth0", "198.19.0.9": "c9/eth0"})
    found = audit.placement(
        [instance("a", "198.19.0.2", sandbox="c1"), instance("b", "198.19.0.3", sandbox="c2"),
         instance("c", "198.19.0.4"), instance("d", "198.19.0.5", node="gone")],
        [Node(ObjectMeta(name="n1"))], {"n1": attached}, None,
    )  # fmt: skip
    assert [(f.kind, f.address) for f in found] == [
        ("not-on-node", "198.19.0.3"),
        ("not-on-node", "198.19.0.5"),
        ("not-in-store", "198.19.0.9"),
    ]


def test_counters_only_where_written() -> None:
    spec = SubnetSpec(network="net", range=AddressRange("4", "198.19.0.0/24"))
    never = Subnet(ObjectMeta(name="s"), spec)
    held = [instance("a", "198.19.0.2")]
    assert audit.counters([never], [], held) == []
    written = Subnet(ObjectMeta(name="s"), spec, SubnetStatus(total=254, used=1, available=253))
    assert audit.counters([written], [], held) == []
    wrong = Subnet(ObjectMeta(name="s"), spec, SubnetStatus(total=254, used=2, available=252))
    (finding,) = audit.counters([wrong], [], held)
    assert finding.subject == "subnet/s" and "the allocations make 1, 253, 254" in finding.detail


def test_summary() -> None:
    assert audit.summary([]) == "no problems found"
    findings = [audit.Finding("leak", "x", "d"), audit.Finding("counter", "y", "d"),
                audit.Finding("leak", "z", "d")]  # fmt: skip
    assert audit.summary(findings) == "3 problem(s): 2 leak, 1 counter"
