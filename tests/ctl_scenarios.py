"""hybridnet-ctl end to end, as scenarios any store backend must support.

Subclasses provide ``store`` (the test's own handle on the same store) and ``where`` (the
global options that point the CLI at it: ``--store FILE`` or ``--kubeconfig FILE``). The CLI
runs in this process through :func:`hybridnet.ctl.main.run`, exactly as the console script
runs it; the real manager (tests.manager_scenarios.Manager) allocates, the lab's Harness plays
scheduler and kubelet. Names carry the run's id and addresses come from 198.19.2xx.0/24 and
2001:db8:2xx::/64, so the scenarios can share one API server with the other tests (and
findings of ``ipam check`` are filtered to this run's objects).
"""

from __future__ import annotations

import copy
import dataclasses
import io
import ipaddress
import json
import re
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import yaml

from hybridnet.api.meta import ObjectMeta, OwnerReference
from hybridnet.api.resources import (
    Address,
    Binding,
    IPInstance,
    IPInstanceSpec,
    IPInstanceStatus,
    Network,
    ReferredObject,
    Subnet,
)
from hybridnet.ctl.main import run as ctl_run
from hybridnet.lab.manager import IPAM_NAMESPACE, Harness
from hybridnet.store.interface import Store
from tests.manager_scenarios import Manager
from tests.store_contract import wait_until


@dataclasses.dataclass(frozen=True)
class Result:
    code: int
    out: str
    err: str

    def json(self) -> Any:
        return json.loads(self.out)

    def yaml(self) -> Any:
        return yaml.safe_load(self.out)


class CtlScenarios:
    @pytest.fixture
    def run(self) -> str:
        return uuid.uuid4().hex[:6]

    @pytest.fixture
    def harness(self, store: Store, run: str) -> Harness:
        harness = Harness(store, run)
        harness.namespace(IPAM_NAMESPACE)
        harness.namespace(f"ns-{run}")
        harness.node(f"node-{run}")
        return harness

    @pytest.fixture
    def manager(self, store: Store, harness: Harness) -> Iterator[Manager]:
        manager = Manager(store).start()
        yield manager
        manager.stop()

    @pytest.fixture
    def ctl(self, where: list[str]) -> Any:
        def call(*argv: str) -> Result:
            out, err = io.StringIO(), io.StringIO()
            code = ctl_run([*where, *argv], out, err)
            return Result(code, out.getvalue(), err.getvalue())

        return call

    # ----------------------------------------------------------------- networks and subnets

    def test_create_list_get_delete(self, ctl: Any, harness: Harness, run: str) -> None:
        net, v4, v6 = f"u-{run}", f"v4-{run}", f"v6-{run}"
        rack = f"hybridnet.test/rack={run}"
        created = ctl("network", "create", net, "--type", "Underlay", "--mode", "VLAN",
                      "--net-id", "210", "--node-selector", rack)  # fmt: skip
        assert (created.code, created.out, created.err) == (0, f"network/{net} created\n", "")
        assert ctl("subnet", "create", v4, "--network", net, "--cidr", "198.19.210.0/24",
                   "--gateway", "198.19.210.1", "--start", "198.19.210.10", "--end",
                   "198.19.210.19", "--reserved", "198.19.210.11,198.19.210.12", "--exclude",
                   "198.19.210.13").code == 0  # fmt: skip
        assert ctl("subnet", "create", v6, "--network", net, "--cidr", "2001:db8:210::/64",
                   "--private").code == 0  # fmt: skip
        listed = ctl("subnet", "list", "--network", net, "-o", "json").json()
        assert [s["name"] for s in listed] == [v4, v6]
        assert listed[0]["usage"] == {"used": 0, "available": 7, "total": 9, "percent": 0.0}
        assert listed[0]["reservedIPs"] == ["198.19.210.11", "198.19.210.12"]
        assert listed[1]["private"] is True and listed[1]["version"] == "6"
        got = ctl("network", "get", net, "-o", "yaml").yaml()
        assert got["type"] == "Underlay" and got["netID"] == 210 and got["nodes"] == 1
        assert got["nodeNames"] == [f"node-{run}"]
        assert got["subnets"] == [v4, v6]
        assert got["usage"]["ipv4"]["total"] == 9
        table = ctl("network", "list").out.splitlines()
        assert table[0].split()[:6] == ["NAME", "TYPE", "MODE", "NET-ID", "NODES", "SUBNETS"]
        (row,) = [line.split() for line in table if line.startswith(net + " ")]
        assert row[:10] == [net, "Underlay", "VLAN", "210", "1", "2", "0", "7", "9", "0.0"]
        refused = ctl("network", "delete", net)
        assert refused.code == 1 and "still has 2 subnet(s)" in refused.err
        for name in (v4, v6):
            assert ctl("subnet", "delete", name).out == f"subnet/{name} deleted\n"
        assert ctl("network", "delete", net).code == 0
        gone = ctl("network", "get", net)
        assert gone.code == 1 and gone.err.count("\n") == 1 and "does not exist" in gone.err

    def test_bad_input_is_one_line_and_writes_nothing(
        self, ctl: Any, harness: Harness, store: Store, run: str
    ) -> None:
        net = f"u-{run}"
        harness.underlay(net)
        harness.subnet(f"a-{run}", net, "198.19.211.0/24")
        before = (store.list(Network).items, store.list(Subnet).items)
        cases = {
            "is not canonical; did you mean 198.19.212.0/24?": (
                "subnet", "create", f"b-{run}", "--network", net, "--cidr", "198.19.212.7/24"),
            "is not a CIDR": ("subnet", "create", f"b-{run}", "--network", net, "--cidr", "x/99"),
            f'overlaps subnet "a-{run}"': (
                "subnet", "create", f"b-{run}", "--network", net, "--cidr", "198.19.211.128/25"),
            f'network "nope-{run}" does not exist': (
                "subnet", "create", f"b-{run}", "--network", f"nope-{run}", "--cidr",
                "198.19.213.0/24"),
            "needs a node selector": ("network", "create", f"n-{run}", "--net-id", "5"),
        }  # fmt: skip
        for words, argv in cases.items():
            result = ctl(*argv)
            assert result.code == 1, (argv, result)
            assert result.out == ""
            assert result.err.count("\n") == 1 and words in result.err, result.err
            assert "nothing was created" in result.err
        assert (store.list(Network).items, store.list(Subnet).items) == before

    # ----------------------------------------------------------------- addresses

    def test_ip_list_and_get(self, ctl: Any, harness: Harness, manager: Manager, run: str) -> None:
        net, subnet, ns = f"u-{run}", f"s-{run}", f"ns-{run}"
        harness.underlay(net)
        harness.subnet(subnet, net, "198.19.214.0/24", gateway="198.19.214.1",
                       reserved=["198.19.214.200"])  # fmt: skip
        harness.pod(ns, "web", node=f"node-{run}")
        harness.wait_instances(ns, "web", 1)
        listed = ctl("ip", "list", "--subnet", subnet, "-o", "json").json()
        assert [(r["address"], r["pod"], r["namespace"], r["node"]) for r in listed] == [
            ("198.19.214.2", "web", ns, f"node-{run}")
        ]
        assert ctl("ip", "list", "--namespace", ns, "-o", "yaml").yaml() == listed
        assert ctl("ip", "list", "--node", f"node-{run}", "--network", net).out.split()[6:12] == [
            "198.19.214.2",
            net,
            subnet,
            ns,
            "web",
            f"node-{run}",
        ]
        held = ctl("ip", "get", "198.19.214.2", "-o", "json").json()
        assert (held["state"], held["subnet"], held["network"]) == ("allocated", subnet, net)
        assert [(h["pod"], h["node"]) for h in held["holders"]] == [("web", f"node-{run}")]
        states = {
            address: ctl("ip", "get", address, "-o", "json").json()["state"]
            for address in ("198.19.214.3", "198.19.214.200", "198.19.214.1", "198.19.214.0",
                            "198.51.100.7")
        }  # fmt: skip
        assert states == {
            "198.19.214.3": "free",
            "198.19.214.200": "reserved",
            "198.19.214.1": "gateway",
            "198.19.214.0": "unallocatable",
            "198.51.100.7": "outside",
        }
        wait_until(
            lambda: ctl("subnet", "get", subnet, "-o", "json").json()["status"]["used"] == 1,
            "the manager's status counters",
        )
        usage = ctl("subnet", "get", subnet, "-o", "json").json()["usage"]
        assert usage == {"used": 1, "available": 251, "total": 253, "percent": 0.4}

    # ----------------------------------------------------------------- audit

    def test_check_finds_planted_problems_and_gc_frees_leaks(
        self, ctl: Any, harness: Harness, manager: Manager, store: Store, run: str
    ) -> None:
        net, subnet, ns = f"u-{run}", f"s-{run}", f"ns-{run}"
        harness.underlay(net)
        harness.subnet(subnet, net, "198.19.215.0/24")
        for name in ("keep", "gone", "twin"):
            harness.pod(ns, name, node=f"node-{run}")
        (kept,) = harness.wait_instances(ns, "keep", 1)
        (leaked,) = harness.wait_instances(ns, "gone", 1)
        (twin,) = harness.wait_instances(ns, "twin", 1)
        wait_until(lambda: store.get(Subnet, subnet).status.used == 3, "status counters")
        manager.stop()  # from here on, behind the manager's back
        harness.delete_pod(ns, "gone")
        orphan = copy.deepcopy(kept)
        orphan.metadata = dataclasses.replace(
            orphan.metadata, name=f"orphan-{run}", resource_version=None, uid=None
        )
        orphan.spec.subnet, orphan.spec.address.ip = f"nosuch-{run}", "198.19.216.5/24"
        orphan.metadata.labels = {**orphan.metadata.labels, "networking.alibaba.com/pod": "stray"}
        assert orphan.spec.binding is not None
        orphan.spec.binding.pod_name = "stray"
        harness.pod(ns, "stray", node=f"node-{run}")
        store.create(orphan)
        double = copy.deepcopy(twin)
        double.metadata = dataclasses.replace(
            double.metadata, name=f"double-{run}", resource_version=None, uid=None
        )
        double.metadata.labels = {**double.metadata.labels, "networking.alibaba.com/pod": "other"}
        assert double.spec.binding is not None
        double.spec.binding.pod_name = "other"
        harness.pod(ns, "other", node=f"node-{run}")
        store.create(double)
        elsewhere = copy.deepcopy(kept)
        elsewhere.metadata = dataclasses.replace(
            elsewhere.metadata, name="198-19-215-99", resource_version=None, uid=None
        )
        elsewhere.spec.address.ip = "198.19.215.99/24"
        elsewhere.metadata.labels = {
            **elsewhere.metadata.labels,
            "networking.alibaba.com/pod": "far",
        }
        assert elsewhere.spec.binding is not None
        elsewhere.spec.binding.pod_name, elsewhere.spec.binding.node_name = "far", f"ghost-{run}"
        harness.pod(ns, "far", node=f"node-{run}")
        store.create(elsewhere)
        counted = store.get(Subnet, subnet)
        counted.status.used = 7
        store.update_status(counted)

        checked = ctl("ipam", "check", "--settle", "0.1", "-o", "json")
        assert checked.code == 3
        mine = {
            (f["kind"], f["subject"])
            for f in checked.json()["findings"]
            if run in f["subject"] or (f["address"] or "").startswith("198.19.21")
        }
        assert mine == {
            ("leak", f"{IPAM_NAMESPACE}/{leaked.name}"),
            ("orphan", f"{IPAM_NAMESPACE}/orphan-{run}"),
            ("duplicate", f"{IPAM_NAMESPACE}/{twin.name}"),
            ("duplicate", f"{IPAM_NAMESPACE}/double-{run}"),
            ("not-on-node", f"{IPAM_NAMESPACE}/198-19-215-99"),
            ("counter", f"subnet/{subnet}"),
            ("counter", f"network/{net}"),
        }
        summary = ctl("ipam", "check", "--settle", "0.1")
        assert summary.code == 3
        assert re.match(r"\d+ problem\(s\): \d+ leak, \d+ orphan, \d+ duplicate, \d+ not-on-node",
                        summary.err.splitlines()[-1]), summary.err  # fmt: skip
        assert leaked.spec.address.ip.split("/")[0] in summary.out
        dry = ctl("ipam", "gc", "--dry-run", "-o", "json")
        assert dry.code == 0
        assert [(r["address"], r["result"]) for r in dry.json() if r["pod"] == f"{ns}/gone"] == [
            (leaked.spec.address.ip.split("/")[0], "would free")
        ]
        assert store.get(IPInstance, leaked.name, IPAM_NAMESPACE).name == leaked.name
        freed = ctl("ipam", "gc", "-o", "json")
        assert [r["result"] for r in freed.json() if r["pod"] == f"{ns}/gone"] == ["freed"]
        assert leaked.name not in {i.name for i in store.list(IPInstance, IPAM_NAMESPACE).items}
        again = ctl("ipam", "check", "--settle", "0.1", "-o", "json").json()["findings"]
        assert not [f for f in again if f["kind"] == "leak" and f["pod"] == f"{ns}/gone"]

    def test_check_reports_only_what_a_second_reading_confirms(
        self, ctl: Any, harness: Harness, manager: Manager, store: Store, run: str
    ) -> None:
        """A counter the manager is about to write is wrong for a moment: the check reads
        again ``--settle`` seconds later and reports only what both readings found."""
        net, subnet, ns = f"u-{run}", f"s-{run}", f"ns-{run}"
        harness.underlay(net)
        harness.subnet(subnet, net, "198.19.214.0/24")
        harness.pod(ns, "web", node=f"node-{run}")
        harness.wait_instances(ns, "web", 1)
        wait_until(lambda: store.get(Network, net).status.statistics is not None, "counters")
        wait_until(lambda: store.get(Subnet, subnet).status.used == 1, "status counters")
        manager.stop()
        wrong_subnet = store.get(Subnet, subnet)
        wrong_subnet.status.used = 9
        store.update_status(wrong_subnet)
        wrong_network = store.get(Network, net)
        assert wrong_network.status.statistics is not None
        wrong_network.status.statistics.used = 9
        store.update_status(wrong_network)
        slept: list[float] = []

        def network_counter_written_meanwhile(seconds: float) -> None:
            slept.append(seconds)
            fixed = store.get(Network, net)
            assert fixed.status.statistics is not None
            fixed.status.statistics.used = 1
            store.update_status(fixed)

        with pytest.MonkeyPatch.context() as patch:
            patch.setattr("hybridnet.ctl.ipam.time.sleep", network_counter_written_meanwhile)
            checked = ctl("ipam", "check", "--settle", "2.5", "-o", "json")
        assert checked.code == 3 and slept == [2.5]
        mine = [f for f in checked.json()["findings"] if run in f["subject"]]
        assert [(f["kind"], f["subject"]) for f in mine] == [("counter", f"subnet/{subnet}")]
        assert "status says used 9" in mine[0]["detail"]
        assert any("were gone 2.5 s later" in note for note in checked.json()["notes"])
        assert "reading again in 2.5 s" in checked.err

    # ----------------------------------------------------------------- migration

    def test_migrate_from_reference(
        self, ctl: Any, harness: Harness, store: Store, run: str
    ) -> None:
        net, ns, system = f"u-{run}", f"ns-{run}", f"sys-{run}"
        harness.underlay(net)
        harness.subnet(f"v4-{run}", net, "198.19.217.0/24", gateway="198.19.217.1")
        harness.subnet(f"v6-{run}", net, "2001:db8:217::/64", version="6")
        web = harness.pod(ns, "web", node=f"node-{run}")
        harness.pod(IPAM_NAMESPACE, system, node=f"node-{run}")
        node, uid = f"node-{run}", web.metadata.uid or ""
        written = [
            reference_instance(pod_uid=uid, namespace=ns, pod="web", node=node, network=net,
                               subnet=f"v4-{run}", cidr="198.19.217.5/24", gateway="198.19.217.1"),
            reference_instance(pod_uid=uid, namespace=ns, pod="web", node=node, network=net,
                               subnet=f"v6-{run}", cidr="2001:db8:217::5/64", gateway=None),
            reference_instance(pod_uid="uid-sys", namespace=IPAM_NAMESPACE, pod=system,
                               node=node, network=net, subnet=f"v4-{run}",
                               cidr="198.19.217.9/24", gateway="198.19.217.1"),
        ]  # fmt: skip
        for instance in written:
            created = store.create(instance)
            created.status = instance.status
            store.update_status(created)

        def mine(result: Result) -> dict[str, str]:
            return {r["to"]: r["result"] for r in result.json() if run in (r["pod"] or "")}

        targets = {f"{IPAM_NAMESPACE}/198-19-217-5", f"{IPAM_NAMESPACE}/2001-db8-217--5",
                   f"{IPAM_NAMESPACE}/198-19-217-9"}  # fmt: skip
        dry = ctl("migrate", "from-reference", "--dry-run", "-o", "json")
        assert dry.code == 0 and mine(dry) == dict.fromkeys(targets, "would create")
        assert not harness.instances(ns, "web")
        done = ctl("migrate", "from-reference", "-o", "json")
        assert done.code == 0
        assert mine(done) == {
            f"{IPAM_NAMESPACE}/198-19-217-5": "created",
            f"{IPAM_NAMESPACE}/2001-db8-217--5": "created",
            f"{IPAM_NAMESPACE}/198-19-217-9": "rewritten",
        }
        v4, v6 = sorted(harness.instances(ns, "web"), key=lambda i: i.spec.address.version)
        assert (
            v4.spec.address.ip == "198.19.217.5/24" and v6.spec.address.ip == "2001:db8:217::5/64"
        )
        for instance in (v4, v6):
            assert instance.metadata.annotations["networking.alibaba.com/pod-ip-families"] == "4,6"
            assert instance.metadata.labels["networking.alibaba.com/node"] == f"node-{run}"
            assert instance.spec.binding is not None
            assert instance.spec.binding.pod_uid == web.metadata.uid
            assert (instance.status.sandbox_id, instance.status.phase) == ("sandbox-web", "Using")
            assert instance.spec.address.mac == "0a:11:22:33:44:55"
        (rewritten,) = harness.instances(IPAM_NAMESPACE, system)
        assert rewritten.metadata.finalizers == []
        left = store.get(IPInstance, "198-19-217-5", ns)
        assert left.metadata.finalizers == ["networking.alibaba.com/ip-allocated"]
        again = ctl("migrate", "from-reference", "-o", "json")
        moved = {f"{IPAM_NAMESPACE}/198-19-217-5", f"{IPAM_NAMESPACE}/2001-db8-217--5"}
        assert again.code == 0 and mine(again) == dict.fromkeys(moved, "exists")
        held = ctl("ip", "get", "198.19.217.5", "-o", "json").json()
        assert [(h["namespace"], h["pod"]) for h in held["holders"]] == [(ns, "web")]


def reference_instance(
    *,
    pod_uid: str,
    namespace: str,
    pod: str,
    node: str,
    network: str,
    subnet: str,
    cidr: str,
    gateway: str | None,
) -> IPInstance:
    """An IPInstance as alibaba/hybridnet writes it: in the pod's namespace, named after the
    address (IPv6 written out in full), its labels, finalizer and owner, binding, status."""
    address = ipaddress.ip_interface(cidr).ip
    name = (address.exploded.replace(":", "-") if address.version == 6
            else str(address).replace(".", "-"))  # fmt: skip
    labels = {
        "networking.alibaba.com/network": network,
        "networking.alibaba.com/subnet": subnet,
        "networking.alibaba.com/node": node,
        "networking.alibaba.com/pod": pod,
        "networking.alibaba.com/pod-uid": pod_uid,
    }
    meta = ObjectMeta(
        name=name, namespace=namespace, labels=labels,
        finalizers=["networking.alibaba.com/ip-allocated"],
        owner_references=[OwnerReference("v1", "Pod", pod, pod_uid, controller=True)],
    )  # fmt: skip
    spec = IPInstanceSpec(
        network=network, subnet=subnet,
        address=Address(version=str(address.version), ip=cidr, mac="0a:11:22:33:44:55",
                        gateway=gateway, net_id=0),
        binding=Binding(referred_object=ReferredObject("Pod", pod, pod_uid), node_name=node,
                        pod_uid=pod_uid, pod_name=pod),
    )  # fmt: skip
    status = IPInstanceStatus(node_name=node, phase="Using", pod_name=pod, pod_namespace=namespace,
                              sandbox_id=f"sandbox-{pod}")  # fmt: skip
    return IPInstance(meta, spec, status)
