"""Split brain: two managers that both serve at once still give every pod exactly one address
per family, and no address to two pods.

The condition is made in its plainest form: two managers run with no leader election at all,
which is what two replicas that both believe they hold the Lease do. The test knows both really
served because each manager's store counts the IPInstances it wrote: both must have written
some. Storage is the judge (an IPInstance is named after its address and created create-only),
so whichever manager loses a race learns the claim and moves on; a pod served by both can end
up with two addresses of a family for a moment, and the managers converge to one.

The checks (tests/cluster/ipam_invariants.py) look at what could really go wrong: an address
in two IPInstances (found by the address in the spec, not the name), a pod with two addresses
of a family or none, a manager whose allocator disagrees with storage. The tests at the end
show that each check fails on a fabricated bad list.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import kubernetes

from hack.controlplane import ControlPlane
from hybridnet.api import constants as c
from hybridnet.api.builtin import Pod
from hybridnet.api.meta import ObjectMeta
from hybridnet.api.resources import IPInstance
from hybridnet.ipamcore.allocator import Allocation
from hybridnet.ipamstore import ipinstances
from hybridnet.lab.manager import IPAM_NAMESPACE, Harness
from hybridnet.store.errors import AlreadyExists
from hybridnet.store.interface import R
from hybridnet.store.kube import KubeStore
from tests.cluster.ipam_invariants import allocator_problems, stored_problems
from tests.manager_scenarios import Manager

PODS = 500
SERVED_WITHIN = 180.0
"""Bound for the two managers to serve 500 pods on the shared API server: stops a hang only."""
CONVERGED_WITHIN = 60.0
"""Bound for the managers to settle pods that both served: stops a hang only."""


class CountingStore(KubeStore):
    """One manager's connection: counts the IPInstances it created and the creates storage
    refused because the address was taken (a race lost to the other manager)."""

    def __init__(self, configuration: kubernetes.client.Configuration) -> None:
        super().__init__(configuration)
        self._lock = threading.Lock()
        self.instances_created = 0
        self.claims_refused = 0

    def create(self, obj: R) -> R:
        try:
            created = super().create(obj)
        except AlreadyExists:
            if isinstance(obj, IPInstance):
                with self._lock:
                    self.claims_refused += 1
            raise
        if isinstance(created, IPInstance):
            with self._lock:
                self.instances_created += 1
        return created


def view_of(manager: Manager) -> Callable[[str], list[str]]:
    """Owner -> the addresses the manager's allocator gives it."""
    return lambda owner: [a.address for a in manager.service.held_by(owner)]


def expected_families(namespace: str) -> dict[str, set[int]]:
    """Odd pods are dual-stack, even ones IPv4 only."""
    return {f"{namespace}/p{i}": ({4, 6} if i % 2 else {4}) for i in range(PODS)}


def test_two_managers_serving_at_once_give_500_pods_one_address_per_family(
    control_plane: ControlPlane,
) -> None:
    run = uuid.uuid4().hex[:6]
    store = KubeStore.from_kubeconfig(control_plane.kubeconfig_path)
    writers = []
    for _ in range(2):
        writer = CountingStore.from_kubeconfig(control_plane.kubeconfig_path)
        assert isinstance(writer, CountingStore)
        writers.append(writer)
    harness = Harness(store, run)
    harness.namespace(IPAM_NAMESPACE)
    namespace = f"split-{run}"
    harness.namespace(namespace)
    harness.node(f"node-{run}")
    harness.underlay(f"u-{run}")
    subnets = {f"v4-{run}", f"v6-{run}"}
    harness.subnet(f"v4-{run}", f"u-{run}", "198.18.128.0/22")  # 1022 addresses for 500 pods
    harness.subnet(f"v6-{run}", f"u-{run}", "2001:db8:128::/64", version="6")
    expected = expected_families(namespace)
    managers = [Manager(writer).start() for writer in writers]
    try:

        def create(index: int) -> None:
            annotations = {c.ANNOTATION_IP_FAMILY: "DualStack"} if index % 2 else {}
            store.create(
                Pod(
                    ObjectMeta(name=f"p{index}", namespace=namespace, annotations=annotations),
                    body={
                        "spec": {
                            "nodeName": f"node-{run}",
                            "containers": [{"name": "c", "image": "busybox"}],
                        }
                    },
                )
            )

        with ThreadPoolExecutor(16) as pool:
            list(pool.map(create, range(PODS)))

        def ours() -> list[IPInstance]:
            listed = store.list(IPInstance, IPAM_NAMESPACE).items
            return [i for i in listed if i.spec.subnet in subnets]

        def problems(instances: list[IPInstance]) -> list[str]:
            found = stored_problems(instances, expected)
            for index, manager in enumerate(managers):
                found += allocator_problems(
                    f"manager {index}", view_of(manager), instances, expected
                )
            return found

        def served(instances: list[IPInstance]) -> set[str]:
            return {ipinstances.owner_of(i) or "" for i in instances}

        deadline = time.monotonic() + SERVED_WITHIN
        instances = ours()
        while len(served(instances)) < PODS and time.monotonic() < deadline:
            time.sleep(0.5)
            instances = ours()
        assert served(instances) == set(expected), f"{len(served(instances))} of {PODS} served"

        deadline = time.monotonic() + CONVERGED_WITHIN
        while problems(instances) and time.monotonic() < deadline:
            time.sleep(0.5)
            instances = ours()
        assert problems(instances) == []
        assert len(instances) == PODS + PODS // 2

        # It was split brain: both managers were allocating at once, each writing addresses
        # or losing the race for them to the other (claims_refused: the storage refused the
        # second claim and the manager learned from it). On a loaded machine one manager can
        # lose every race; that still proves it was serving beside the other.
        written = [w.instances_created for w in writers]
        refused = [w.claims_refused for w in writers]
        attempts = [w + r for w, r in zip(written, refused, strict=True)]
        assert all(count > 0 for count in attempts), f"written {written}, refused {refused}"
    finally:
        for manager in managers:
            manager.stop()
        for each in [store, *writers]:
            each.close()


# --------------------------------------------------------------------------- the checks can fail


def instance(owner: str, address: str, prefix: int, *, name: str | None = None) -> IPInstance:
    """An IPInstance as the manager writes it (``name`` overrides the address-derived one)."""
    pod_namespace, pod_name = owner.split("/")
    version = 6 if ":" in address else 4
    allocation = Allocation(
        network="u",
        subnet=f"v{version}",
        version=version,
        address=address,
        prefix_length=prefix,
        gateway=None,
        net_id=0,
        mac="02:00:00:00:00:01",
        owner=owner,
    )
    built = ipinstances.build(
        allocation,
        ipam_namespace=IPAM_NAMESPACE,
        pod_namespace=pod_namespace,
        pod_name=pod_name,
        pod_uid=None,
        node_name="n",
        ordinal=None,
        families=[version],
    )
    if name is not None:
        built.metadata.name = name
    return built


GOOD = [
    instance("ns/a", "198.18.0.2", 24),
    instance("ns/b", "198.18.0.3", 24),
    instance("ns/b", "2001:db8::3", 64),
]
WANTED = {"ns/a": {4}, "ns/b": {4, 6}}


def test_the_checks_pass_a_good_list() -> None:
    assert stored_problems(GOOD, WANTED) == []
    views = {"ns/a": ["198.18.0.2"], "ns/b": ["198.18.0.3", "2001:db8::3"]}
    assert allocator_problems("m", lambda owner: views.get(owner, []), GOOD, WANTED) == []


def test_one_address_under_two_names_is_found() -> None:
    """The store refuses a second IPInstance of one name; one address under another name
    would get past it, and the check still sees it."""
    twice = [*GOOD, instance("ns/c", "198.18.0.2", 24, name="198-18-0-99")]
    assert stored_problems(twice, {**WANTED, "ns/c": {4}}) == [
        "IPInstance 198-18-0-99 holds 198.18.0.2: not the name of it",
        "198.18.0.2 is held 2 times: by ns/a (198-18-0-2), ns/c (198-18-0-99)",
    ]


def test_two_addresses_of_one_family_and_a_missing_family_are_found() -> None:
    doubled = [GOOD[0], instance("ns/a", "198.18.0.7", 24), GOOD[1]]
    assert stored_problems(doubled, WANTED) == [
        "ns/a holds 2 IPv4 addresses: ['198.18.0.2', '198.18.0.7']",
        "ns/b holds no IPv6 address",
    ]


def test_unbound_unexpected_and_unasked_for_addresses_are_found() -> None:
    unbound = instance("ns/a", "198.18.0.9", 24)
    unbound.spec.binding = None
    stray = instance("other/x", "198.18.0.10", 24)
    asked_v4_only = {"ns/a": {4}, "ns/b": {4}}
    assert stored_problems([*GOOD, unbound, stray], asked_v4_only) == [
        "IPInstance 198-18-0-9 (198.18.0.9) is bound to no pod",
        "ns/b holds IPv6 ['2001:db8::3'] it did not ask for",
        "other/x is not a pod of the test but holds ['198.18.0.10']",
    ]


def test_a_label_that_names_another_pod_is_found() -> None:
    relabelled = instance("ns/a", "198.18.0.2", 24)
    relabelled.metadata.labels[c.LABEL_POD] = "b"
    assert stored_problems([relabelled, *GOOD[1:]], WANTED) == [
        "IPInstance 198-18-0-2 is bound to ns/a but labelled for pod b"
    ]


def test_a_manager_that_disagrees_with_storage_is_found() -> None:
    """Manager m still believes ns/a holds 198.18.0.3, which storage gave to ns/b."""
    views = {"ns/a": ["198.18.0.2", "198.18.0.3"], "ns/b": ["198.18.0.3"]}
    assert allocator_problems("m", lambda owner: views.get(owner, []), GOOD, WANTED) == [
        "m believes ns/a holds ['198.18.0.2', '198.18.0.3']; storage says ['198.18.0.2']",
        "m believes ns/b holds ['198.18.0.3']; storage says ['198.18.0.3', '2001:db8::3']",
    ]
