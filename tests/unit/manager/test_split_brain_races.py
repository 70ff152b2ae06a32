"""Two managers serving the same pods at once (split brain), each race played out step by step.

Each test makes one interleaving that the cluster test (tests/cluster/test_split_brain.py) hits
only now and then under load, and checks what must hold: storage never leaves a running pod
without an address of a family it asked for, not even for a moment, and never takes a pod's
address away for another; and once every manager has heard every event, each manager's
allocator gives every pod exactly what storage does.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from hybridnet.api import constants as c
from hybridnet.api.builtin import Pod
from hybridnet.api.resources import IPInstance
from hybridnet.ipamstore import ipinstances
from hybridnet.lab.manager import IPAM_NAMESPACE, Harness
from hybridnet.store.sqlite import SQLiteStore
from tests.cluster.ipam_invariants import allocator_problems, stored_problems
from tests.unit.manager.replicas import Journal, Replica, stored, stored_addresses

DUAL = {c.ANNOTATION_IP_FAMILY: "DualStack"}


@pytest.fixture
def journal(tmp_path: Path) -> Iterator[Journal]:
    store = Journal(SQLiteStore(tmp_path / "store.db"))
    harness = Harness(store, "t")
    harness.namespace(IPAM_NAMESPACE)
    harness.namespace("apps")
    harness.node("n1")
    harness.underlay("u")
    harness.subnet("v4", "u", "198.19.0.0/24")
    harness.subnet("v6", "u", "2001:db8::/64", version="6")
    yield store
    store.close()


@pytest.fixture
def harness(journal: Journal) -> Harness:
    return Harness(journal, "t")


@pytest.fixture
def replicas(journal: Journal) -> Iterator[tuple[Replica, Replica]]:
    """Managers A and B, both having heard the networks, subnets, node and namespaces."""
    a, b = Replica(journal), Replica(journal)
    for replica in (a, b):
        replica.hear()
    yield a, b
    for replica in (a, b):
        replica.close()


def converged(
    journal: Journal, replicas: tuple[Replica, ...], expected: dict[str, set[int]]
) -> None:
    """Let every replica hear everything and run what it queued until nothing is left, then
    check storage and every allocator against each other."""
    for _ in range(10):  # each round is one pass per queued pod; a handful always suffices
        before = len(journal.events)
        for replica in replicas:
            replica.serve()
        if len(journal.events) == before and not any(r.queued() for r in replicas):
            break
    else:
        raise AssertionError("the replicas kept writing")
    instances = stored(journal)
    problems = stored_problems(instances, expected)
    for name, replica in zip("AB", replicas, strict=False):
        problems += allocator_problems(name, replica.addresses, instances, expected)
    assert problems == []


def named(address: str) -> Callable[[str], bool]:
    return lambda name: name == ipinstances.instance_name(address)


# --------------------------------------------------------------------------- storage


def test_a_pod_another_manager_served_is_not_released_before_the_pod_reaches_this_one(
    journal: Journal, harness: Harness, replicas: tuple[Replica, Replica]
) -> None:
    """B's pod watch is behind its IPInstance watch: B has heard A's IPInstances for the pod,
    not the pod. A pass over it (whatever woke it) must not take the pod for deleted."""
    a, b = replicas
    harness.pod("apps", "p", node="n1", annotations=DUAL)
    a.serve()
    served = stored_addresses(journal, "apps/p")
    assert len(served) == 2

    b.hear(IPInstance)
    b.controller.reconcile("apps/p")
    assert stored_addresses(journal, "apps/p") == served
    assert b.addresses("apps/p") == served

    converged(journal, replicas, {"apps/p": {4, 6}})
    assert stored_addresses(journal, "apps/p") == served


def test_losing_the_second_family_keeps_the_first_another_manager_kept(
    journal: Journal, harness: Harness, replicas: tuple[Replica, Replica]
) -> None:
    """B served the pod (198.19.0.9 and an IPv6 address). A, not having heard it, writes
    198.19.0.10, which B then keeps over its own (its name is the lower), and loses the IPv6
    address to B. Deleting 198.19.0.10 again would leave the pod with no IPv4 address (until
    some later pass gave it another)."""
    a, b = replicas
    a.allocator.set_cursor("v4", "198.19.0.9")
    b.allocator.set_cursor("v4", "198.19.0.8")
    harness.pod("apps", "p", node="n1", annotations=DUAL)
    b.serve()
    a.hear(Pod)
    v6 = stored_addresses(journal, "apps/p")[1]
    assert stored_addresses(journal, "apps/p") == ["198.19.0.9", v6]

    def b_settles_on_a_copy() -> None:
        b.serve()
        assert stored_addresses(journal, "apps/p") == ["198.19.0.10", v6]

    a.store.before_create(named(v6), b_settles_on_a_copy)
    a.controller.reconcile("apps/p")
    assert a.store.unfired() == []  # A did try the IPv6 address B holds
    assert stored_addresses(journal, "apps/p") == ["198.19.0.10", v6]

    converged(journal, replicas, {"apps/p": {4, 6}})
    assert stored_addresses(journal, "apps/p") == ["198.19.0.10", v6]


def test_a_running_pod_whose_address_was_deleted_is_served_again(
    journal: Journal, harness: Harness, replicas: tuple[Replica, Replica]
) -> None:
    """Whoever deleted it (a manager that lost a race, an administrator), a running pod with no
    address of a family it asked for gets one again."""
    a, _ = replicas
    harness.pod("apps", "p", node="n1")
    a.serve()
    (address,) = stored_addresses(journal, "apps/p")
    journal.delete(IPInstance, ipinstances.instance_name(address), IPAM_NAMESPACE)
    a.serve()
    assert len(stored_addresses(journal, "apps/p")) == 1
    converged(journal, replicas, {"apps/p": {4}})


def test_a_stale_cached_copy_never_deletes_the_address_of_another_pod(
    journal: Journal, harness: Harness, replicas: tuple[Replica, Replica]
) -> None:
    """A's cache still says p holds 198.19.0.1 and 198.19.0.2 (both managers served it); B has
    since dropped 198.19.0.2 and given it to q. A's pass over p must not delete q's address:
    its name is all that the stale copy and the new one share."""
    a, b = replicas
    b.allocator.set_cursor("v4", "198.19.0.1")
    harness.pod("apps", "p", node="n1")
    a.hear(Pod)
    b.hear(Pod)
    a.controller.reconcile("apps/p")
    b.controller.reconcile("apps/p")
    assert stored_addresses(journal, "apps/p") == ["198.19.0.1", "198.19.0.2"]
    a.hear(IPInstance)
    assert a.queued() == ["apps/p"]  # the pass below is the one this queued

    b.serve()
    assert stored_addresses(journal, "apps/p") == ["198.19.0.1"]
    b.allocator.set_cursor("v4", "198.19.0.1")
    harness.pod("apps", "q", node="n1")
    b.serve()
    assert stored_addresses(journal, "apps/q") == ["198.19.0.2"]

    a.controller.reconcile("apps/p")
    assert stored_addresses(journal, "apps/q") == ["198.19.0.2"]
    converged(journal, replicas, {"apps/p": {4}, "apps/q": {4}})


# --------------------------------------------------------------------------- allocators


def test_an_address_dropped_while_a_pass_reads_the_cache_is_not_kept(
    journal: Journal,
    harness: Harness,
    replicas: tuple[Replica, Replica],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """B wrote 198.19.0.9 for p, then A (not having heard it) 198.19.0.10; A has heard B's,
    not yet its own. A's pass over p reads B's from its cache, and before it goes on B drops
    198.19.0.9 (198-19-0-10 is the lower name) and A hears that. Taking the copy it read for
    what storage holds would leave A's allocator giving p an address nobody holds."""
    a, b = replicas
    a.allocator.set_cursor("v4", "198.19.0.9")
    b.allocator.set_cursor("v4", "198.19.0.8")
    harness.pod("apps", "p", node="n1")
    b.serve()
    a.hear(Pod)
    assert a.queued() == ["apps/p"]
    a.controller.reconcile("apps/p")
    assert stored_addresses(journal, "apps/p") == ["198.19.0.10", "198.19.0.9"]
    heard = a.hear_next(IPInstance)
    assert heard is not None and heard.object.name == "198-19-0-9"

    def b_drops_its_copy_and_a_hears_it() -> None:
        b.serve()
        assert stored_addresses(journal, "apps/p") == ["198.19.0.10"]
        a.hear(IPInstance)

    read = a.cache.instances.get
    pending = [b_drops_its_copy_and_a_hears_it]

    def get(name: str, namespace: str = "") -> IPInstance | None:
        found = read(name, namespace)
        if name == "198-19-0-9" and pending:
            pending.pop()()
        return found

    monkeypatch.setattr(a.cache.instances, "get", get)
    a.controller.reconcile("apps/p")
    assert pending == []  # the pass did read the copy
    assert a.addresses("apps/p") == ["198.19.0.10"]
    converged(journal, replicas, {"apps/p": {4}})


def test_a_claim_lost_to_an_address_that_is_dropped_meanwhile_is_not_kept(
    journal: Journal, harness: Harness, replicas: tuple[Replica, Replica]
) -> None:
    """A and B both served q (198.19.0.10 from A, 198.19.0.11 from B). A, not having heard
    B's, tries 198.19.0.11 for p and loses it. Right then B drops 198.19.0.11 (q keeps the
    lower name) and A hears it. Learning the lost claim from a read made before the drop
    would leave A's allocator giving q an address nobody holds."""
    a, b = replicas
    a.allocator.set_cursor("v4", "198.19.0.9")
    b.allocator.set_cursor("v4", "198.19.0.10")
    harness.pod("apps", "q", node="n1")
    a.hear(Pod)
    b.hear(Pod)
    a.controller.reconcile("apps/q")
    b.controller.reconcile("apps/q")
    assert stored_addresses(journal, "apps/q") == ["198.19.0.10", "198.19.0.11"]
    harness.pod("apps", "p", node="n1")
    a.hear(Pod)

    def b_drops_its_copy_and_a_hears_it() -> None:
        b.serve()
        assert stored_addresses(journal, "apps/q") == ["198.19.0.10"]
        a.hear(IPInstance)

    # The manager may read the IPInstance that beat it (then the drop comes right after that
    # read), or not read it at all (then right after the pass).
    a.store.after_get(named("198.19.0.11"), b_drops_its_copy_and_a_hears_it)
    a.controller.reconcile("apps/p")
    for action in a.store.unfired():
        action()
    assert stored_addresses(journal, "apps/p") == ["198.19.0.12"]
    assert a.addresses("apps/q") == ["198.19.0.10"]
    converged(journal, replicas, {"apps/p": {4}, "apps/q": {4}})


def test_a_claim_written_but_not_heard_yet_is_kept(
    journal: Journal, harness: Harness, replicas: tuple[Replica, Replica]
) -> None:
    """A pass that finds the allocator ahead of the cache (this manager's own write, whose
    event has not arrived) asks storage, and keeps the claim instead of allocating again."""
    a, _ = replicas
    harness.pod("apps", "p", node="n1")
    a.hear(Pod)
    a.controller.reconcile("apps/p")
    (written,) = stored_addresses(journal, "apps/p")
    harness.set_phase("apps", "p", "Running")
    a.hear(Pod)
    a.controller.reconcile("apps/p")
    assert a.addresses("apps/p") == stored_addresses(journal, "apps/p") == [written]
    converged(journal, replicas, {"apps/p": {4}})


def test_two_managers_that_both_served_pods_converge_on_one_address_each(
    journal: Journal, harness: Harness, replicas: tuple[Replica, Replica]
) -> None:
    """Both serve every pod before hearing the other's writes, from different cursors, so
    every pod starts with two addresses of each family; each manager then settles on what
    it reads, and both end with what storage holds."""
    b = replicas[1]
    b.allocator.set_cursor("v4", "198.19.0.100")
    b.allocator.set_cursor("v6", "2001:db8::100")
    expected = {}
    for index in range(6):
        dual = index % 2 == 1
        harness.pod("apps", f"p{index}", node="n1", annotations=DUAL if dual else {})
        expected[f"apps/p{index}"] = {4, 6} if dual else {4}
    for replica in replicas:
        replica.hear(Pod)
        for key in replica.queued():
            replica.controller.reconcile(key)
    assert len(stored(journal)) == 2 * 9
    converged(journal, replicas, expected)
