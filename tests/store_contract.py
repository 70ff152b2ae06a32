"""The store contract: one suite every backend must pass (see hybridnet/store/interface.py).

A backend's test module subclasses :class:`StoreContract` and provides the fixtures ``store``
(a Store), ``namespace`` (an existing namespace for namespaced kinds) and ``compact`` (a callable
that compacts the backend's history at its current version). Names and label values carry a
per-test suffix so the suite can share one API server between tests.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable

import pytest

from hybridnet.api.builtin import Lease, Pod
from hybridnet.api.meta import ObjectMeta
from hybridnet.api.resources import (
    Address,
    AddressRange,
    IPInstance,
    IPInstanceSpec,
    Network,
    NetworkSpec,
    Subnet,
    SubnetSpec,
)
from hybridnet.store.errors import AlreadyExists, Conflict, Gone, Invalid, NotFound
from hybridnet.store.informer import Backoff, Informer
from hybridnet.store.interface import Store, WatchEvent

WAIT_SECONDS = 20.0


def make_subnet(name: str, cidr: str = "198.19.0.0/24", **labels: str) -> Subnet:
    return Subnet(
        ObjectMeta(name=name, labels=dict(labels)),
        SubnetSpec(network="net1", range=AddressRange(version="4", cidr=cidr)),
    )


def make_instance(name: str, namespace: str, ip: str = "198.19.0.5/24") -> IPInstance:
    return IPInstance(
        ObjectMeta(name=name, namespace=namespace),
        IPInstanceSpec(
            network="net1",
            subnet="s1",
            address=Address(version="4", ip=ip, mac="02:00:00:00:00:05"),
        ),
    )


def wait_until(condition: Callable[[], bool], what: str, timeout: float = WAIT_SECONDS) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def watch_until_added(
    store: Store, start: str, last: str, label_selector: str | None = None
) -> list[WatchEvent[Subnet]]:
    """The Subnet events after ``start`` up to and including the ADDED of ``last``.

    ``last`` is a marker the test writes after everything it wants to see or not see: a watch
    delivers events in order, so an event missing before the marker was never sent (no sleeping
    to prove absence).
    """
    seen: list[WatchEvent[Subnet]] = []
    events = store.watch(Subnet, start, label_selector=label_selector, timeout_seconds=WAIT_SECONDS)
    for event in events:
        if event.type == "BOOKMARK":
            continue
        seen.append(event)
        if event.type == "ADDED" and event.object.metadata.name == last:
            return seen
    raise AssertionError(f"the watch ended before {last} arrived; it saw {summary(seen)}")


def summary(events: list[WatchEvent[Subnet]]) -> list[tuple[str, str]]:
    return [(event.type, event.object.metadata.name) for event in events]


class StoreContract:
    """Behaviour every Store backend shares with the Kubernetes API server."""

    @pytest.fixture
    def unique(self) -> str:
        return uuid.uuid4().hex[:8]

    # ----------------------------------------------------------------- create / get

    def test_create_then_get(self, store: Store, unique: str) -> None:
        created = store.create(make_subnet(f"s-{unique}", team=unique))
        assert created.metadata.resource_version
        assert created.metadata.uid
        assert created.metadata.creation_timestamp
        fetched = store.get(Subnet, f"s-{unique}")
        assert fetched.spec == created.spec
        assert fetched.metadata.labels == {"team": unique}
        assert fetched.metadata.resource_version == created.metadata.resource_version

    def test_create_refuses_a_taken_name(self, store: Store, unique: str) -> None:
        store.create(make_subnet(f"s-{unique}"))
        with pytest.raises(AlreadyExists):
            store.create(make_subnet(f"s-{unique}", cidr="198.19.1.0/24"))
        assert store.get(Subnet, f"s-{unique}").spec.range.cidr == "198.19.0.0/24"

    def test_only_one_of_many_concurrent_creates_wins(self, store: Store, unique: str) -> None:
        results: list[str] = []

        def claim(index: int) -> None:
            try:
                store.create(make_subnet(f"claim-{unique}", cidr=f"198.19.{index}.0/24"))
                results.append("created")
            except AlreadyExists:
                results.append("exists")

        threads = [threading.Thread(target=claim, args=(i,)) for i in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert sorted(results) == ["created"] + ["exists"] * 7

    def test_get_missing_is_not_found(self, store: Store, unique: str) -> None:
        with pytest.raises(NotFound):
            store.get(Subnet, f"missing-{unique}")

    def test_create_sets_no_status_and_namespaced_kinds_need_a_namespace(
        self, store: Store, namespace: str, unique: str
    ) -> None:
        subnet = make_subnet(f"s-{unique}")
        subnet.status.used = 99
        assert store.create(subnet).status.used == 0
        with pytest.raises(Invalid, match="namespace"):
            store.create(make_instance(f"i-{unique}", namespace=""))
        created = store.create(make_instance(f"i-{unique}", namespace=namespace))
        assert created.metadata.namespace == namespace

    # ----------------------------------------------------------------- validation

    def test_invalid_objects_are_refused_before_they_are_stored(
        self, store: Store, unique: str
    ) -> None:
        with pytest.raises(Invalid, match=r"spec\.range\.cidr"):
            store.create(make_subnet(f"bad-{unique}", cidr="198.19.0.7/24"))
        with pytest.raises(NotFound):
            store.get(Subnet, f"bad-{unique}")
        bad_network = Network(ObjectMeta(name=f"n-{unique}"), NetworkSpec(type="Underlay"))
        with pytest.raises(Invalid, match=r"spec\.nodeSelector"):
            store.create(bad_network)

    def test_immutable_fields_cannot_change(self, store: Store, unique: str) -> None:
        created = store.create(make_subnet(f"s-{unique}"))
        created.spec.range.cidr = "198.19.9.0/24"
        with pytest.raises(Invalid, match=r"spec\.range\.cidr"):
            store.update(created)
        assert store.get(Subnet, f"s-{unique}").spec.range.cidr == "198.19.0.0/24"

    # ----------------------------------------------------------------- update

    def test_update_needs_the_current_version(self, store: Store, unique: str) -> None:
        created = store.create(make_subnet(f"s-{unique}"))
        created.spec.range.reserved_ips = ["198.19.0.9"]
        updated = store.update(created)
        assert updated.metadata.resource_version != created.metadata.resource_version
        assert updated.spec.range.reserved_ips == ["198.19.0.9"]
        created.spec.range.reserved_ips = ["198.19.0.10"]  # still at the old version
        with pytest.raises(Conflict):
            store.update(created)
        assert store.get(Subnet, f"s-{unique}").spec.range.reserved_ips == ["198.19.0.9"]

    def test_update_without_a_version_is_refused(self, store: Store, unique: str) -> None:
        store.create(make_subnet(f"s-{unique}"))
        with pytest.raises(Invalid, match="resourceVersion"):
            store.update(make_subnet(f"s-{unique}"))

    def test_update_of_a_missing_object_is_not_found(self, store: Store, unique: str) -> None:
        ghost = make_subnet(f"ghost-{unique}")
        ghost.metadata.resource_version = "1"
        with pytest.raises(NotFound):
            store.update(ghost)

    def test_an_update_that_changes_nothing_keeps_the_version(
        self, store: Store, unique: str
    ) -> None:
        created = store.create(make_subnet(f"s-{unique}"))
        again = store.update(created)
        assert again.metadata.resource_version == created.metadata.resource_version

    def test_status_subresource_splits_spec_and_status(self, store: Store, unique: str) -> None:
        created = store.create(make_subnet(f"s-{unique}"))
        created.status.used = 5
        created.spec.range.reserved_ips = ["198.19.0.9"]
        after_update = store.update(created)
        assert after_update.status.used == 0, "update must not write status"
        assert after_update.spec.range.reserved_ips == ["198.19.0.9"]
        after_update.status.used = 7
        after_update.spec.range.reserved_ips = []
        after_status = store.update_status(after_update)
        assert after_status.status.used == 7
        assert after_status.spec.range.reserved_ips == ["198.19.0.9"], "status writes only status"
        with pytest.raises(Conflict):
            store.update_status(after_update)  # stale now

    # ----------------------------------------------------------------- list

    def test_list_by_label_selector(self, store: Store, unique: str) -> None:
        store.create(make_subnet(f"a-{unique}", "198.19.1.0/24", run=unique, tier="web"))
        store.create(make_subnet(f"b-{unique}", "198.19.2.0/24", run=unique, tier="db"))
        store.create(make_subnet(f"c-{unique}", "198.19.3.0/24", run=unique))

        def names(selector: str) -> list[str]:
            return sorted(
                s.metadata.name for s in store.list(Subnet, label_selector=selector).items
            )

        assert names(f"run={unique}") == [f"a-{unique}", f"b-{unique}", f"c-{unique}"]
        assert names(f"run={unique},tier=web") == [f"a-{unique}"]
        assert names(f"run={unique},tier!=web") == [f"b-{unique}", f"c-{unique}"]
        assert names(f"run={unique},tier in (web,db)") == [f"a-{unique}", f"b-{unique}"]
        assert names(f"run={unique},!tier") == [f"c-{unique}"]
        assert store.list(Subnet, label_selector=f"run={unique}").resource_version

    def test_list_by_namespace(self, store: Store, namespace: str, unique: str) -> None:
        store.create(make_instance(f"i-{unique}", namespace))
        listed = store.list(IPInstance, namespace=namespace).items
        assert f"i-{unique}" in [i.metadata.name for i in listed]
        everywhere = store.list(IPInstance).items
        assert f"i-{unique}" in [i.metadata.name for i in everywhere]

    # ----------------------------------------------------------------- delete

    def test_delete(self, store: Store, unique: str) -> None:
        created = store.create(make_subnet(f"s-{unique}"))
        stale = created.metadata.resource_version
        created.spec.range.reserved_ips = ["198.19.0.9"]
        current = store.update(created).metadata.resource_version
        with pytest.raises(Conflict):
            store.delete(Subnet, f"s-{unique}", resource_version=stale)
        store.delete(Subnet, f"s-{unique}", resource_version=current)
        with pytest.raises(NotFound):
            store.get(Subnet, f"s-{unique}")
        with pytest.raises(NotFound):
            store.delete(Subnet, f"s-{unique}")

    # ----------------------------------------------------------------- built-in kinds

    def test_builtin_objects(self, store: Store, namespace: str, unique: str) -> None:
        pod = Pod(
            ObjectMeta(name=f"p-{unique}", namespace=namespace, labels={"app": unique}),
            body={"spec": {"containers": [{"name": "c", "image": "busybox"}]}},
        )
        created = store.create(pod)
        assert created.body["spec"]["containers"][0]["image"] == "busybox"
        assert [p.name for p in store.list(Pod, namespace, f"app={unique}").items] == [
            f"p-{unique}"
        ]
        lease = Lease(
            ObjectMeta(name=f"l-{unique}", namespace=namespace),
            body={"spec": {"holderIdentity": "me", "leaseDurationSeconds": 15}},
        )
        created_lease = store.create(lease)
        created_lease.body["spec"]["holderIdentity"] = "you"
        assert store.update(created_lease).body["spec"]["holderIdentity"] == "you"

    # ----------------------------------------------------------------- watch

    def test_watch_streams_changes_in_order(self, store: Store, unique: str) -> None:
        selector = f"run={unique}"
        start = store.list(Subnet, label_selector=selector).resource_version
        created = store.create(make_subnet(f"w-{unique}", run=unique))
        created.spec.range.reserved_ips = ["198.19.0.9"]
        updated = store.update(created)
        store.delete(Subnet, f"w-{unique}")
        store.create(make_subnet(f"other-{unique}", "198.19.7.0/24", run="someone-else"))
        store.create(make_subnet(f"last-{unique}", "198.19.8.0/24", run=unique))
        events = watch_until_added(store, start, f"last-{unique}", selector)
        assert summary(events) == [
            ("ADDED", f"w-{unique}"),
            ("MODIFIED", f"w-{unique}"),
            ("DELETED", f"w-{unique}"),
            ("ADDED", f"last-{unique}"),
        ], "the object outside the selector must not appear"
        assert events[1].object.metadata.resource_version == updated.metadata.resource_version
        assert events[1].object.spec.range.reserved_ips == ["198.19.0.9"]

    def test_watch_with_a_selector_sees_objects_leave_and_enter_it(
        self, store: Store, unique: str
    ) -> None:
        """Like the API server: an object changed so that it stops matching arrives as DELETED
        (carrying its last matching state, at the version of the change that made it leave), one
        that starts matching as ADDED, and changes outside the selector not at all."""
        selector = f"run={unique}"
        start = store.list(Subnet, label_selector=selector).resource_version
        member = store.create(make_subnet(f"m-{unique}", "198.19.1.0/24", run=unique, tier="a"))
        outsider = store.create(make_subnet(f"o-{unique}", "198.19.2.0/24", run="elsewhere"))
        member.metadata.labels = {"run": "elsewhere", "tier": "a"}
        left = store.update(member)
        left.spec.range.reserved_ips = ["198.19.1.9"]
        store.update(left)  # changed while outside: not seen
        outsider.spec.range.reserved_ips = ["198.19.2.9"]
        outsider = store.update(outsider)  # changed while outside: not seen
        outsider.metadata.labels = {"run": unique}
        entered = store.update(outsider)
        entered.spec.range.reserved_ips = []
        modified = store.update(entered)
        store.delete(Subnet, member.name)  # deleted while outside: not seen
        store.create(make_subnet(f"z-{unique}", "198.19.3.0/24", run=unique))

        events = watch_until_added(store, start, f"z-{unique}", selector)
        assert summary(events) == [
            ("ADDED", member.name),
            ("DELETED", member.name),
            ("ADDED", outsider.name),
            ("MODIFIED", outsider.name),
            ("ADDED", f"z-{unique}"),
        ]
        gone, came, changed = events[1].object, events[2].object, events[3].object
        assert gone.metadata.labels == {"run": unique, "tier": "a"}, "its last matching state"
        assert gone.metadata.resource_version == left.metadata.resource_version
        assert came.metadata.labels == {"run": unique}
        assert came.spec.range.reserved_ips == ["198.19.2.9"]
        assert came.metadata.resource_version == entered.metadata.resource_version
        assert changed.metadata.resource_version == modified.metadata.resource_version

    def test_watch_without_a_selector_sees_label_changes_as_modified(
        self, store: Store, unique: str
    ) -> None:
        start = store.list(Subnet).resource_version
        created = store.create(make_subnet(f"m-{unique}", run=unique))
        created.metadata.labels = {"run": "elsewhere"}
        relabelled = store.update(created)
        store.create(make_subnet(f"z-{unique}", "198.19.3.0/24"))
        events = [
            e
            for e in watch_until_added(store, start, f"z-{unique}")
            if e.object.metadata.name in (created.name, f"z-{unique}")
        ]
        assert summary(events) == [
            ("ADDED", created.name),
            ("MODIFIED", created.name),
            ("ADDED", f"z-{unique}"),
        ]
        assert events[1].object.metadata.labels == {"run": "elsewhere"}
        assert events[1].object.metadata.resource_version == relabelled.metadata.resource_version

    def test_watch_from_compacted_history_is_gone(
        self, store: Store, unique: str, compact: Callable[[], None]
    ) -> None:
        old = store.create(make_subnet(f"g1-{unique}")).metadata.resource_version
        assert old is not None
        for index in range(3):
            store.create(make_subnet(f"g{index + 2}-{unique}", f"198.19.{index + 1}.0/24"))
        compact()
        with pytest.raises(Gone):
            for _ in store.watch(Subnet, old, timeout_seconds=5):
                pass

    # ----------------------------------------------------------------- informer

    def test_informer_syncs_follows_and_heals_after_compaction(
        self, store: Store, unique: str, compact: Callable[[], None]
    ) -> None:
        selector = f"run={unique}"
        keep = store.create(make_subnet(f"keep-{unique}", "198.19.1.0/24", run=unique))
        change = store.create(make_subnet(f"change-{unique}", "198.19.2.0/24", run=unique))
        drop = store.create(make_subnet(f"drop-{unique}", "198.19.3.0/24", run=unique))
        heard: list[tuple[str, str]] = []

        def handler(event: WatchEvent[Subnet]) -> None:
            heard.append((event.type, event.object.metadata.name))

        informer = Informer(
            store,
            Subnet,
            handler,
            label_selector=selector,
            watch_timeout=2,
            backoff=Backoff(initial=0.05, maximum=0.2),
        ).start()
        try:
            assert informer.synced.wait(WAIT_SECONDS)
            names = {k[1] for k in informer.cache}
            assert names == {keep.name, change.name, drop.name}
            store.create(make_subnet(f"live-{unique}", "198.19.4.0/24", run=unique))
            wait_until(lambda: ("ADDED", f"live-{unique}") in heard, "the live ADDED event")
        finally:
            informer.stop(timeout=10)

        # While the informer is stopped: changes happen and their history is compacted away.
        heard.clear()
        change.spec.range.reserved_ips = ["198.19.2.9"]
        store.update(change)
        store.delete(Subnet, drop.name)
        store.create(make_subnet(f"new-{unique}", "198.19.5.0/24", run=unique))
        compact()
        relists_before = informer.relists
        informer.start()
        try:
            wait_until(lambda: informer.relists > relists_before, "a relist after Gone")
            wait_until(lambda: len(heard) >= 3, "the differences after the relist")
            assert sorted(heard) == sorted(
                [
                    ("MODIFIED", change.name),
                    ("DELETED", drop.name),
                    ("ADDED", f"new-{unique}"),
                ]
            )
            assert {k[1] for k in informer.cache} == {
                keep.name,
                change.name,
                f"live-{unique}",
                f"new-{unique}",
            }
        finally:
            informer.stop(timeout=10)

    def test_informer_drops_an_object_that_stops_matching_and_takes_it_back(
        self, store: Store, unique: str
    ) -> None:
        selector = f"run={unique}"
        member = store.create(make_subnet(f"m-{unique}", "198.19.1.0/24", run=unique))
        heard: list[tuple[str, str, dict[str, str]]] = []

        def handler(event: WatchEvent[Subnet]) -> None:
            heard.append((event.type, event.object.metadata.name, event.object.metadata.labels))

        informer = Informer(
            store,
            Subnet,
            handler,
            label_selector=selector,
            watch_timeout=2,
            backoff=Backoff(initial=0.05, maximum=0.2),
        ).start()
        try:
            assert informer.synced.wait(WAIT_SECONDS)
            assert {k[1] for k in informer.cache} == {member.name}
            member.metadata.labels = {"run": "elsewhere"}
            left = store.update(member)
            wait_until(lambda: ("DELETED", member.name) in [h[:2] for h in heard], "DELETED")
            assert informer.cache == {}
            assert heard[-1] == ("DELETED", member.name, {"run": unique})
            left.metadata.labels = {"run": unique}
            back = store.update(left)
            wait_until(lambda: heard[-1][:2] == ("ADDED", member.name), "ADDED on return")
            cached = informer.cache[("", member.name)]
            assert cached.metadata.resource_version == back.metadata.resource_version
            assert [h[:2] for h in heard] == [
                ("ADDED", member.name),
                ("DELETED", member.name),
                ("ADDED", member.name),
            ]
        finally:
            informer.stop(timeout=10)
