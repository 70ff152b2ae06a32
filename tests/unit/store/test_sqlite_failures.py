"""sqlite3 failures inside reads, writes and watches reach callers as typed StoreErrors, and a
write that fails part-way leaves the file as it was.

Every failure here is a real one from SQLite, made through SQLite's own hooks on the store's
connection (an authorizer that refuses a statement, a progress handler that interrupts one,
``max_page_count`` for a full disk), or by damaging or replacing the file: no sqlite3 object is
mocked, and nothing needs root (the unit tier also runs unprivileged, where a read-only file
would do; as root it would not, which is why these hooks are used instead).
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from hybridnet.api.builtin import Pod
from hybridnet.api.meta import ObjectMeta
from hybridnet.api.resources import Subnet
from hybridnet.store.errors import Forbidden, StoreError, Unavailable
from hybridnet.store.sqlite import SQLiteStore
from hybridnet.store.sqlite_errors import Corrupt
from tests.store_contract import make_subnet

Authorizer = Callable[[int, str | None, str | None, str | None, str | None], int]


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "store.db"


@pytest.fixture
def store(path: Path) -> Iterator[SQLiteStore]:
    opened = SQLiteStore(path)
    yield opened
    opened.close()


def this_threads_connection(store: SQLiteStore) -> sqlite3.Connection:
    """The connection the store uses in the calling thread: failures are injected on it."""
    return store._conn()


def refusing(*refused: tuple[int, str]) -> Authorizer:
    """An authorizer that refuses the (action, first argument) pairs given, e.g. inserting
    into the ``events`` table, and allows everything else."""

    def authorize(
        action: int, arg1: str | None, _arg2: str | None, _db: str | None, _trigger: str | None
    ) -> int:
        return sqlite3.SQLITE_DENY if (action, arg1) in refused else sqlite3.SQLITE_OK

    return authorize


INSERT_EVENT = (sqlite3.SQLITE_INSERT, "events")
ROLLBACK = (sqlite3.SQLITE_TRANSACTION, "ROLLBACK")


def file_contents(path: Path) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of the file, read through a connection of its own (what another process
    would see)."""
    conn = sqlite3.connect(path)
    try:
        return {
            table: conn.execute(f"SELECT * FROM {table} ORDER BY 1, 2").fetchall()  # noqa: S608
            for table in ("objects", "events", "counters")
        }
    finally:
        conn.close()


def big_pod(name: str) -> Pod:
    """A pod whose body needs pages the file does not have yet."""
    env = [{"name": f"V{i}", "value": "x" * 200} for i in range(200)]
    return Pod(
        ObjectMeta(name=name, namespace="default"),
        body={"spec": {"containers": [{"name": "c", "image": "busybox", "env": env}]}},
    )


# --------------------------------------------------------------------------- writes


def _create(store: SQLiteStore) -> None:
    store.create(make_subnet("new", "198.19.9.0/24"))


def _update(store: SQLiteStore) -> None:
    current = store.get(Subnet, "s1")
    current.metadata.labels = {"moved": "yes"}
    store.update(current)


def _update_status(store: SQLiteStore) -> None:
    current = store.get(Subnet, "s1")
    current.status.used = 3
    store.update_status(current)


def _delete(store: SQLiteStore) -> None:
    store.delete(Subnet, "s1")


WRITES = [_create, _update, _update_status, _delete]


@pytest.mark.parametrize("write", WRITES, ids=lambda w: w.__name__.strip("_"))
def test_a_write_refused_part_way_leaves_the_file_as_it_was(
    store: SQLiteStore, path: Path, write: Callable[[SQLiteStore], None]
) -> None:
    """The event insert comes after the object row and the revision counter were written in
    the same transaction: refusing it fails the write in the middle."""
    store.create(make_subnet("s1"))
    before = file_contents(path)
    this_threads_connection(store).set_authorizer(refusing(INSERT_EVENT))
    with pytest.raises(Forbidden, match="not authorized"):
        write(store)
    assert file_contents(path) == before
    this_threads_connection(store).set_authorizer(None)
    write(store)  # the same write goes through once SQLite allows it
    assert file_contents(path) != before


def test_when_even_the_rollback_fails_the_write_is_undone_and_the_lock_released(
    store: SQLiteStore, path: Path
) -> None:
    current = store.create(make_subnet("s1"))
    before = file_contents(path)
    failing = this_threads_connection(store)
    failing.set_authorizer(refusing(INSERT_EVENT, ROLLBACK))
    current.metadata.labels = {"moved": "yes"}
    with pytest.raises(Forbidden):
        store.update(current)
    # Another process can write at once: the failed write's lock is gone (were it still held,
    # this would wait for the busy timeout and fail as Unavailable).
    other = SQLiteStore(path)
    try:
        other.create(make_subnet("s2", "198.19.1.0/24"))
    finally:
        other.close()
    after = file_contents(path)
    assert after["objects"][0] == before["objects"][0], "s1 is as it was"
    assert [row[2] for row in after["objects"]] == ["s1", "s2"]
    # The store goes on, on a fresh connection of this thread.
    assert this_threads_connection(store) is not failing
    assert store.get(Subnet, "s1").metadata.labels == {}
    _update(store)
    assert store.get(Subnet, "s1").metadata.labels == {"moved": "yes"}


def test_a_full_disk_part_way_is_unavailable_and_changes_nothing(
    store: SQLiteStore, path: Path
) -> None:
    store.create(make_subnet("s1"))
    before = file_contents(path)
    conn = this_threads_connection(store)
    pages = conn.execute("PRAGMA page_count").fetchone()[0]
    conn.execute(f"PRAGMA max_page_count = {pages}")  # the file may not grow: a full disk
    with pytest.raises(Unavailable, match="full"):
        store.create(big_pod("p1"))
    assert file_contents(path) == before
    conn.execute("PRAGMA max_page_count = 1073741823")
    store.create(big_pod("p1"))
    assert store.get(Pod, "p1", "default").name == "p1"


def test_a_write_while_another_process_holds_the_lock_is_unavailable(
    store: SQLiteStore, path: Path
) -> None:
    holder = sqlite3.connect(path, isolation_level=None)
    try:
        holder.execute("BEGIN IMMEDIATE")
        this_threads_connection(store).execute("PRAGMA busy_timeout = 0")  # no waiting here
        with pytest.raises(Unavailable, match="locked"):
            _create(store)
        assert store.list(Subnet).items == [], "reads go on beside a writer (WAL)"
    finally:
        holder.close()
    _create(store)


# --------------------------------------------------------------------------- reads


def test_a_refused_read_is_forbidden(store: SQLiteStore) -> None:
    store.create(make_subnet("s1"))
    this_threads_connection(store).set_authorizer(refusing((sqlite3.SQLITE_READ, "objects")))
    with pytest.raises(Forbidden):
        store.get(Subnet, "s1")
    with pytest.raises(Forbidden):
        store.list(Subnet)


def test_an_interrupted_read_is_unavailable(store: SQLiteStore) -> None:
    store.create(make_subnet("s1"))
    conn = this_threads_connection(store)
    conn.set_progress_handler(lambda: 1, 1)  # interrupt every statement at once
    with pytest.raises(Unavailable, match="interrupted"):
        store.get(Subnet, "s1")
    with pytest.raises(Unavailable, match="interrupted"):
        store.list(Subnet)
    conn.set_progress_handler(None, 1)
    assert store.get(Subnet, "s1").name == "s1"


def test_damaged_pages_are_corrupt(path: Path) -> None:
    first = SQLiteStore(path)
    for index in range(3):
        first.create(make_subnet(f"s{index}", f"198.19.{index}.0/24"))
    first.close()  # the last connection folds the WAL back into the file
    plain = sqlite3.connect(path)
    page_size = plain.execute("PRAGMA page_size").fetchone()[0]
    roots = [
        row[0]
        for row in plain.execute(
            "SELECT rootpage FROM sqlite_master WHERE tbl_name = 'objects' AND rootpage > 0"
        )
    ]
    plain.close()
    with path.open("r+b") as raw:
        for root in roots:
            raw.seek((root - 1) * page_size)
            raw.write(b"\xa5" * page_size)
    damaged = SQLiteStore(path)  # the schema page is intact: the file opens
    try:
        with pytest.raises(Corrupt, match="malformed"):
            damaged.list(Subnet)
        with pytest.raises(Corrupt, match="malformed"):
            damaged.get(Subnet, "s1")
    finally:
        damaged.close()


def test_a_file_that_is_not_a_store_is_corrupt(path: Path) -> None:
    path.write_bytes(b"this is not an SQLite database, " * 200)
    with pytest.raises(Corrupt, match="not a database"):
        SQLiteStore(path)


def test_a_file_replaced_by_a_directory_is_unavailable(store: SQLiteStore, path: Path) -> None:
    store.create(make_subnet("s1"))
    path.rename(path.with_name("moved.db"))
    path.mkdir()
    failures: list[BaseException] = []

    def read_from_a_new_thread() -> None:  # a new thread opens its own connection
        try:
            store.get(Subnet, "s1")
        except BaseException as exc:  # handed to the test thread
            failures.append(exc)

    reader = threading.Thread(target=read_from_a_new_thread)
    reader.start()
    reader.join()
    assert len(failures) == 1
    assert isinstance(failures[0], Unavailable), repr(failures[0])
    assert "unable to open" in str(failures[0])


# --------------------------------------------------------------------------- watches


@pytest.mark.parametrize(
    ("break_reads", "expected"),
    [
        (lambda c: c.set_progress_handler(lambda: 1, 1), Unavailable),
        (lambda c: c.set_authorizer(refusing((sqlite3.SQLITE_READ, "events"))), Forbidden),
    ],
    ids=["interrupted", "refused"],
)
def test_a_watch_whose_reads_fail_raises_a_typed_error(
    store: SQLiteStore,
    break_reads: Callable[[sqlite3.Connection], None],
    expected: type[StoreError],
) -> None:
    start = store.list(Subnet).resource_version
    store.create(make_subnet("s1"))
    store.create(make_subnet("s2", "198.19.1.0/24"))
    events = iter(store.watch(Subnet, start, timeout_seconds=30))
    assert next(events).object.name == "s1"  # the first batch held both events
    assert next(events).object.name == "s2"
    break_reads(this_threads_connection(store))  # the watch reads in this thread
    # A write from another thread (its own connection) wakes the watch to read again.
    writer = threading.Thread(target=lambda: store.create(make_subnet("s3", "198.19.2.0/24")))
    writer.start()
    writer.join()
    with pytest.raises(expected):
        next(events)


def test_every_operation_on_a_closed_store_is_unavailable(store: SQLiteStore) -> None:
    start = store.list(Subnet).resource_version
    store.close()
    for operation in (
        lambda: store.get(Subnet, "s1"),
        lambda: store.list(Subnet),
        lambda: _create(store),
        lambda: next(iter(store.watch(Subnet, start))),
    ):
        with pytest.raises(Unavailable, match="closed"):
            operation()
