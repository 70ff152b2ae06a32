"""The manager's behaviour, as scenarios any Store backend must support.

Subclasses provide a ``store`` fixture; the scenarios run the real PodController, IPAMService
and StatusWriter against it, with the Harness playing scheduler and kubelet.
"""

from __future__ import annotations

import ipaddress
import logging
import threading
import uuid
from collections.abc import Iterator

import pytest

from hybridnet.api import constants as c
from hybridnet.api.builtin import Event, Node
from hybridnet.api.resources import IPInstance, Network, Subnet
from hybridnet.ipamcore.allocator import Allocation, Allocator
from hybridnet.ipamstore import ipinstances
from hybridnet.ipamstore.service import IPAMService
from hybridnet.lab.manager import IPAM_NAMESPACE, Harness
from hybridnet.manager.caches import ClusterCache
from hybridnet.manager.nodes import NodeLabeler
from hybridnet.manager.pods import PodController
from hybridnet.manager.status import StatusWriter
from hybridnet.store.errors import Conflict
from hybridnet.store.interface import Store
from tests.store_contract import wait_until


class Manager:
    """One manager's parts, started and stopped together."""

    def __init__(self, store: Store, namespace: str = IPAM_NAMESPACE):
        self.service = IPAMService(store, Allocator(), namespace)
        self.cache = ClusterCache(store, namespace, watch_timeout=2)
        self.controller = PodController(store, self.service, self.cache, workers=4)
        self.status = StatusWriter(store, self.cache, self.service.usage, interval=0.2)
        self.nodes = NodeLabeler(store, self.cache, self.service.usage, interval=0.2)
        self._stopping = threading.Event()

    def start(self) -> Manager:
        self.service.rebuild()
        self.cache.start(self._stopping)
        self.controller.start()
        self.status.start()
        self.nodes.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        self.controller.stop()
        self.status.stop()
        self.nodes.stop()
        self.cache.stop()


def events_for(store: Store, namespace: str, pod: str) -> list[Event]:
    return [
        e
        for e in store.list(Event, namespace).items
        if e.body.get("involvedObject", {}).get("name") == pod
    ]


class ManagerScenarios:
    @pytest.fixture
    def run(self) -> str:
        return uuid.uuid4().hex[:6]

    @pytest.fixture
    def harness(self, store: Store, run: str) -> Harness:
        harness = Harness(store, run)
        harness.store.create  # noqa: B018 - the store fixture must exist
        harness.namespace(IPAM_NAMESPACE)
        harness.namespace(f"ns-{run}")
        harness.node(f"node-{run}")
        return harness

    @pytest.fixture
    def manager(self, store: Store, harness: Harness) -> Iterator[Manager]:
        manager = Manager(store).start()
        yield manager
        manager.stop()

    # ----------------------------------------------------------------- allocation

    def test_underlay_ipv4_pod_gets_one_address(
        self, harness: Harness, manager: Manager, run: str
    ) -> None:
        harness.underlay(f"u-{run}", net_id=100)
        harness.subnet(f"s-{run}", f"u-{run}", "198.19.10.0/24", gateway="198.19.10.1")
        harness.pod(f"ns-{run}", "web", node=f"node-{run}")
        (instance,) = harness.wait_instances(f"ns-{run}", "web", 1)
        assert instance.spec.address.ip == "198.19.10.2/24"
        assert instance.spec.address.gateway == "198.19.10.1"
        assert instance.spec.address.net_id == 100
        assert instance.spec.address.mac.startswith("02:")
        assert instance.spec.binding is not None
        assert (instance.spec.binding.pod_name, instance.spec.binding.node_name) == (
            "web",
            f"node-{run}",
        )
        assert instance.metadata.labels[c.LABEL_NODE] == f"node-{run}"
        assert instance.metadata.name == "198-19-10-2"

    def test_ipv6_and_dual_stack_pods(self, harness: Harness, manager: Manager, run: str) -> None:
        harness.underlay(f"u-{run}")
        harness.subnet(f"v4-{run}", f"u-{run}", "198.19.11.0/24")
        harness.subnet(f"v6-{run}", f"u-{run}", "2001:db8:11::/64", version="6")
        harness.pod(
            f"ns-{run}", "six", node=f"node-{run}", annotations={c.ANNOTATION_IP_FAMILY: "IPv6"}
        )
        harness.pod(
            f"ns-{run}",
            "dual",
            node=f"node-{run}",
            annotations={c.ANNOTATION_IP_FAMILY: "DualStack"},
        )
        (six,) = harness.wait_instances(f"ns-{run}", "six", 1)
        assert six.spec.address.version == "6" and six.spec.address.ip.startswith("2001:db8:11::")
        v4, v6 = harness.wait_instances(f"ns-{run}", "dual", 2)
        assert (v4.spec.address.version, v6.spec.address.version) == ("4", "6")
        assert v4.spec.address.mac == v6.spec.address.mac

    def test_specified_network_subnet_and_namespace_defaults(
        self, harness: Harness, manager: Manager, run: str
    ) -> None:
        harness.underlay(f"u-{run}")
        harness.subnet(f"pub-{run}", f"u-{run}", "198.19.12.0/24")
        harness.subnet(f"priv-{run}", f"u-{run}", "198.19.13.0/24", private=True)
        harness.overlay(f"o-{run}", vni=7)
        harness.subnet(f"ov-{run}", f"o-{run}", "198.19.14.0/24")
        pinned = {
            c.ANNOTATION_SPECIFIED_NETWORK: f"u-{run}",
            c.ANNOTATION_SPECIFIED_SUBNET: f"priv-{run}",
        }
        harness.pod(f"ns-{run}", "pinned", node=f"node-{run}", annotations=pinned)
        harness.namespace(
            f"ov-{run}",
            {c.ANNOTATION_NETWORK_TYPE: "Overlay", c.ANNOTATION_SPECIFIED_NETWORK: f"o-{run}"},
        )
        harness.pod(f"ov-{run}", "inherits", node=f"node-{run}")
        (pinned_ip,) = harness.wait_instances(f"ns-{run}", "pinned", 1)
        assert pinned_ip.spec.subnet == f"priv-{run}"
        (overlay_ip,) = harness.wait_instances(f"ov-{run}", "inherits", 1)
        assert overlay_ip.spec.network == f"o-{run}"
        assert overlay_ip.spec.address.net_id == 7, overlay_ip

    def test_statefulset_fixed_pool_and_retention(
        self, harness: Harness, manager: Manager, run: str, caplog: pytest.LogCaptureFixture
    ) -> None:
        harness.underlay(f"u-{run}")
        harness.subnet(
            f"s-{run}", f"u-{run}", "198.19.15.0/24", reserved=["198.19.15.50", "198.19.15.51"]
        )
        pool = {c.ANNOTATION_IP_POOL: "198.19.15.50,198.19.15.51"}
        harness.pod(f"ns-{run}", "db-1", node=f"node-{run}", annotations=pool, statefulset="db")
        (fixed,) = harness.wait_instances(f"ns-{run}", "db-1", 1)
        assert fixed.spec.address.ip == "198.19.15.51/24"
        harness.pod(f"ns-{run}", "app-0", node=f"node-{run}", statefulset="app")
        (kept,) = harness.wait_instances(f"ns-{run}", "app-0", 1)
        caplog.set_level(logging.INFO, logger="hybridnet.manager.pods")
        harness.delete_pod(f"ns-{run}", "app-0")
        wait_until(
            lambda: any(
                r.getMessage() == "pod deleted, address retained for its StatefulSet"
                and getattr(r, "hybridnet_fields", {}).get("pod") == f"ns-{run}/app-0"
                for r in caplog.records
            ),
            "the controller's pass over the deleted pod",
        )
        assert [i.spec.address.ip for i in harness.instances(f"ns-{run}", "app-0")] == [
            kept.spec.address.ip
        ]
        harness.pod(f"ns-{run}", "app-0", node=f"node-{run}-b", statefulset="app")
        wait_until(
            lambda: (
                (
                    harness.instances(f"ns-{run}", "app-0")[0].spec.binding or kept.spec.binding
                ).node_name  # type: ignore[union-attr]
                == f"node-{run}-b"
            ),
            "the retained address rebound to the new pod",
        )
        (again,) = harness.instances(f"ns-{run}", "app-0")
        assert again.spec.address.ip == kept.spec.address.ip

    def test_release_on_delete_and_on_completion(
        self, harness: Harness, manager: Manager, run: str
    ) -> None:
        harness.underlay(f"u-{run}")
        harness.subnet(f"s-{run}", f"u-{run}", "198.19.16.0/24")
        harness.pod(f"ns-{run}", "a", node=f"node-{run}")
        harness.pod(f"ns-{run}", "job", node=f"node-{run}")
        harness.pod(f"ns-{run}", "sts-0", node=f"node-{run}", statefulset="sts")
        for name in ("a", "job", "sts-0"):
            harness.wait_instances(f"ns-{run}", name, 1)
        harness.delete_pod(f"ns-{run}", "a")
        harness.set_phase(f"ns-{run}", "job", "Succeeded")
        harness.set_phase(f"ns-{run}", "sts-0", "Failed")  # evicted: released even if stateful
        for name in ("a", "job", "sts-0"):
            harness.wait_instances(f"ns-{run}", name, 0)

    def test_exhaustion_gives_an_event_and_recovers(
        self, harness: Harness, manager: Manager, run: str
    ) -> None:
        harness.underlay(f"u-{run}")
        harness.subnet(
            f"s-{run}", f"u-{run}", "198.19.17.0/30", gateway="198.19.17.1"
        )  # one address
        harness.pod(f"ns-{run}", "first", node=f"node-{run}")
        harness.wait_instances(f"ns-{run}", "first", 1)
        harness.pod(f"ns-{run}", "second", node=f"node-{run}")
        wait_until(
            lambda: any(
                e.body["reason"] == "SubnetExhausted"
                for e in events_for(harness.store, f"ns-{run}", "second")
            ),
            "a SubnetExhausted event",
        )
        assert harness.instances(f"ns-{run}", "second") == []
        harness.delete_pod(f"ns-{run}", "first")
        (served,) = harness.wait_instances(f"ns-{run}", "second", 1)
        assert served.spec.address.ip == "198.19.17.2/30"

    def test_bad_annotations_give_an_event_and_allocate_nothing(
        self, harness: Harness, manager: Manager, run: str
    ) -> None:
        harness.underlay(f"u-{run}")
        harness.subnet(f"s-{run}", f"u-{run}", "198.19.18.0/24")
        cases = {
            "nonet": (
                {c.ANNOTATION_SPECIFIED_NETWORK: f"ghost-{run}"},
                "NetworkNotFound",
                f"annotation {c.ANNOTATION_SPECIFIED_NETWORK}: network ghost-{run} does not exist",
            ),
            "badpool": (
                {c.ANNOTATION_IP_POOL: "198.19.18.x"},
                "InvalidAnnotation",
                c.ANNOTATION_IP_POOL,
            ),
            "outside": (
                {c.ANNOTATION_IP_POOL: "198.19.99.9"},
                "AddressUnavailable",
                "outside every subnet",
            ),
        }
        for pod, (pod_annotations, _, _) in cases.items():
            harness.pod(f"ns-{run}", pod, node=f"node-{run}", annotations=pod_annotations)
        for pod, (_, reason, text) in cases.items():
            wait_until(
                lambda pod=pod, reason=reason, text=text: any(  # type: ignore[misc]
                    e.body["reason"] == reason and text in e.body["message"]
                    for e in events_for(harness.store, f"ns-{run}", pod)
                ),
                f"{reason} event for {pod}",
            )
            assert harness.instances(f"ns-{run}", pod) == []

    def test_status_counters_are_exact(self, harness: Harness, manager: Manager, run: str) -> None:
        harness.underlay(f"u-{run}")
        harness.subnet(f"s-{run}", f"u-{run}", "198.19.19.0/28", gateway="198.19.19.1")  # 13 usable
        for index in range(5):
            harness.pod(f"ns-{run}", f"p{index}", node=f"node-{run}")
        for index in range(5):
            harness.wait_instances(f"ns-{run}", f"p{index}", 1)
        harness.delete_pod(f"ns-{run}", "p0")
        harness.wait_instances(f"ns-{run}", "p0", 0)

        def counts() -> tuple[int, int, int]:
            status = harness.store.get(Subnet, f"s-{run}").status
            return status.total, status.used, status.available

        wait_until(lambda: counts() == (13, 4, 9), "subnet counters 13/4/9")

        def network_used() -> int | None:
            statistics = harness.store.get(Network, f"u-{run}").status.statistics
            return statistics.used if statistics else None

        wait_until(lambda: network_used() == 4, "network statistics")

    def test_a_restarted_manager_rebuilds_and_never_duplicates(
        self, harness: Harness, manager: Manager, store: Store, run: str
    ) -> None:
        harness.underlay(f"u-{run}")
        harness.subnet(f"s-{run}", f"u-{run}", "198.19.20.0/24")
        for index in range(10):
            harness.pod(f"ns-{run}", f"p{index}", node=f"node-{run}")
        for index in range(10):
            harness.wait_instances(f"ns-{run}", f"p{index}", 1)
        manager.stop()
        successor = Manager(store).start()
        try:
            for index in range(10, 20):
                harness.pod(f"ns-{run}", f"p{index}", node=f"node-{run}")
            for index in range(20):
                harness.wait_instances(f"ns-{run}", f"p{index}", 1)
            addresses = [
                ipaddress.ip_interface(i.spec.address.ip).ip
                for i in store.list(IPInstance, IPAM_NAMESPACE).items
                if i.spec.subnet == f"s-{run}"
            ]
            assert len(addresses) == len(set(addresses)) == 20
        finally:
            successor.stop()

    def test_a_half_written_dual_stack_pair_is_completed(
        self, harness: Harness, store: Store, run: str
    ) -> None:
        """A manager that died between the IPv4 and the IPv6 write left one family: the next
        one completes the pair with the same MAC instead of treating the pod as served."""
        harness.underlay(f"u-{run}")
        harness.subnet(f"v4-{run}", f"u-{run}", "198.19.21.0/24")
        harness.subnet(f"v6-{run}", f"u-{run}", "2001:db8:21::/64", version="6")
        harness.pod(
            f"ns-{run}",
            "dual",
            node=f"node-{run}",
            annotations={c.ANNOTATION_IP_FAMILY: "DualStack"},
        )
        half = Allocation(
            network=f"u-{run}",
            subnet=f"v4-{run}",
            version=4,
            address="198.19.21.9",
            prefix_length=24,
            gateway=None,
            net_id=0,
            mac="02:00:00:00:21:09",
            owner=f"ns-{run}/dual",
        )
        store.create(
            ipinstances.build(
                half,
                ipam_namespace=IPAM_NAMESPACE,
                pod_namespace=f"ns-{run}",
                pod_name="dual",
                pod_uid=None,
                node_name=f"node-{run}",
                ordinal=None,
                families=[4, 6],
            )
        )
        manager = Manager(store).start()
        try:
            v4, v6 = harness.wait_instances(f"ns-{run}", "dual", 2)
            assert v4.spec.address.ip == "198.19.21.9/24"
            assert v6.spec.address.mac == v4.spec.address.mac == "02:00:00:00:21:09"
        finally:
            manager.stop()

    def test_node_labels_follow_attachment_and_quota(
        self, harness: Harness, manager: Manager, store: Store, run: str
    ) -> None:
        harness.node(f"elsewhere-{run}", labels={"hybridnet.test/rack": f"other-{run}"})
        harness.underlay(f"u-{run}")
        harness.subnet(
            f"s-{run}", f"u-{run}", "198.19.22.0/30", gateway="198.19.22.1"
        )  # one address

        def labels(node: str) -> dict[str, str]:
            return store.get(Node, node).metadata.labels

        attached, elsewhere = f"node-{run}", f"elsewhere-{run}"
        wait_until(
            lambda: labels(attached).get(c.LABEL_IPV4_QUOTA) == c.QUOTA_NONEMPTY, "quota label"
        )
        assert labels(attached)[c.LABEL_UNDERLAY_ATTACHMENT] == "true"
        assert labels(attached)[c.LABEL_IPV6_QUOTA] == c.QUOTA_EMPTY
        assert labels(attached)["hybridnet.test/rack"] == run, "other labels are kept"

        # A node the network starts selecting gets the label, and loses it when deselected.
        set_rack(store, elsewhere, run)
        wait_until(
            lambda: labels(elsewhere).get(c.LABEL_UNDERLAY_ATTACHMENT) == "true",
            "the newly selected node labelled",
        )
        set_rack(store, elsewhere, f"other-{run}")
        wait_until(
            lambda: c.LABEL_UNDERLAY_ATTACHMENT not in labels(elsewhere),
            "the deselected node's label removed",
        )
        assert c.LABEL_IPV4_QUOTA not in labels(elsewhere)

        harness.pod(f"ns-{run}", "only", node=attached)
        harness.wait_instances(f"ns-{run}", "only", 1)
        wait_until(
            lambda: labels(attached).get(c.LABEL_IPV4_QUOTA) == c.QUOTA_EMPTY,
            "quota empty when full",
        )


def set_rack(store: Store, node: str, rack: str) -> None:
    """Change a node's rack label as an admin would, retrying when the labeler wrote first."""
    while True:
        current = store.get(Node, node)
        current.metadata.labels["hybridnet.test/rack"] = rack
        try:
            store.update(current)
            return
        except Conflict:
            continue
