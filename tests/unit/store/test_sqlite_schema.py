"""Store files written by older hybridnet open and keep their objects; newer ones are refused."""

from __future__ import annotations

import json
import sqlite3
import threading
from pathlib import Path

import pytest

from hybridnet.api.resources import Subnet
from hybridnet.store.errors import Gone, StoreError
from hybridnet.store.sqlite import SQLiteStore
from hybridnet.store.sqlite_errors import UnsupportedSchema
from hybridnet.store.sqlite_schema import SCHEMA_VERSION
from tests.store_contract import make_subnet, watch_until_added

FIRST_LAYOUT = """
CREATE TABLE objects (
    kind TEXT NOT NULL, namespace TEXT NOT NULL, name TEXT NOT NULL,
    revision INTEGER NOT NULL, body TEXT NOT NULL,
    PRIMARY KEY (kind, namespace, name)
);
CREATE TABLE events (
    revision INTEGER PRIMARY KEY, kind TEXT NOT NULL, namespace TEXT NOT NULL,
    type TEXT NOT NULL, body TEXT NOT NULL
);
CREATE INDEX events_by_kind ON events (kind, revision);
CREATE TABLE counters (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
INSERT INTO counters VALUES ('revision', 1), ('compacted', 0);
"""
"""The tables as the first release created them (schema version 0, no user_version)."""

SUBNET_KIND = "networking.alibaba.com/Subnet"


def write_first_layout_file(path: Path, names: list[str]) -> None:
    """A file as the first release left it: one ADDED event per subnet, in the WAL mode it
    used."""
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.executescript(FIRST_LAYOUT)
        for index, name in enumerate(names):
            revision = index + 2
            body = make_subnet(name, f"198.19.{index}.0/24", run="old").to_json()
            body["metadata"].update(
                resourceVersion=str(revision),
                uid=f"uid-{name}",
                creationTimestamp="2025-01-01T00:00:00Z",
                generation=1,
            )
            text = json.dumps(body)
            conn.execute(
                "INSERT INTO objects VALUES (?, '', ?, ?, ?)", (SUBNET_KIND, name, revision, text)
            )
            conn.execute(
                "INSERT INTO events VALUES (?, ?, '', 'ADDED', ?)", (revision, SUBNET_KIND, text)
            )
            conn.execute("UPDATE counters SET value = ? WHERE key = 'revision'", (revision,))
    finally:
        conn.close()


FIRST_LAYOUT_EVENT_COLUMNS = ["revision", "kind", "namespace", "type", "body"]


def layout_of(path: Path) -> tuple[int, list[str], list[str]]:
    """The file's version, its events' columns and its relabels' columns."""
    conn = sqlite3.connect(path)
    try:
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        events = [row[1] for row in conn.execute("PRAGMA table_info(events)")]
        relabels = [row[1] for row in conn.execute("PRAGMA table_info(relabels)")]
        return version, events, relabels
    finally:
        conn.close()


def test_a_new_file_has_the_current_layout(tmp_path: Path) -> None:
    SQLiteStore(tmp_path / "store.db").close()
    assert layout_of(tmp_path / "store.db") == (
        SCHEMA_VERSION,
        FIRST_LAYOUT_EVENT_COLUMNS,
        ["revision", "previous"],
    )


def test_a_file_of_the_first_layout_is_migrated_and_keeps_its_objects(tmp_path: Path) -> None:
    path = tmp_path / "store.db"
    write_first_layout_file(path, ["a", "b"])
    store = SQLiteStore(path)
    try:
        assert layout_of(path) == (
            SCHEMA_VERSION,
            FIRST_LAYOUT_EVENT_COLUMNS,
            ["revision", "previous"],
        )
        kept = store.get(Subnet, "b")
        assert kept.metadata.uid == "uid-b"
        assert kept.metadata.resource_version == "3"
        listed = store.list(Subnet, label_selector="run=old")
        assert [s.name for s in listed.items] == ["a", "b"]
        assert listed.resource_version == "3"
        # The old events could not tell a selector watch what objects were before, so that
        # history is compacted: a watcher from before the migration relists.
        with pytest.raises(Gone):
            next(iter(store.watch(Subnet, "1", timeout_seconds=5)))
        # From the current version on, everything works, selector transitions included.
        kept.metadata.labels = {"run": "new"}
        moved = store.update(kept)
        assert int(moved.metadata.resource_version or 0) == 4
        store.create(make_subnet("c", "198.19.9.0/24", run="old"))
        events = watch_until_added(store, listed.resource_version, "c", "run=old")
        assert [(e.type, e.object.name) for e in events] == [("DELETED", "b"), ("ADDED", "c")]
    finally:
        store.close()


def test_a_migrated_file_opens_again_with_its_new_history(tmp_path: Path) -> None:
    """The migration runs once: history written after it survives later openings."""
    path = tmp_path / "store.db"
    write_first_layout_file(path, ["a"])
    first = SQLiteStore(path)
    first.create(make_subnet("after", "198.19.9.0/24"))
    first.close()
    store = SQLiteStore(path)
    try:
        assert store.get(Subnet, "a").metadata.resource_version == "2"
        events = watch_until_added(store, "2", "after")
        assert [(e.type, e.object.name) for e in events] == [("ADDED", "after")]
    finally:
        store.close()


def test_processes_opening_an_old_file_at_once_migrate_it_once(tmp_path: Path) -> None:
    """Each opener checks the version again under the write lock, so the second one finds
    the work done (a second compaction would throw away history written since)."""
    path = tmp_path / "store.db"
    write_first_layout_file(path, ["a"])
    opened: list[SQLiteStore] = []
    failures: list[BaseException] = []

    def open_it() -> None:
        try:
            opened.append(SQLiteStore(path))
        except StoreError as exc:
            failures.append(exc)

    openers = [threading.Thread(target=open_it) for _ in range(6)]
    for thread in openers:
        thread.start()
    for thread in openers:
        thread.join()
    try:
        assert failures == []
        assert len(opened) == 6
        assert layout_of(path)[0] == SCHEMA_VERSION
        assert all(s.get(Subnet, "a").metadata.uid == "uid-a" for s in opened)
    finally:
        for store in opened:
            store.close()


def test_a_file_from_a_newer_hybridnet_is_refused_and_left_alone(tmp_path: Path) -> None:
    path = tmp_path / "store.db"
    SQLiteStore(path).close()
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.close()
    with pytest.raises(UnsupportedSchema, match="upgrade hybridnet"):
        SQLiteStore(path)
    assert layout_of(path)[0] == SCHEMA_VERSION + 1


def test_a_writer_of_the_first_release_still_writes_to_a_migrated_file(tmp_path: Path) -> None:
    """Processes sharing a file are not upgraded at the same instant: the first release's
    event insert (five values, no column list) keeps working, and watchers of the new code
    see what it wrote."""
    path = tmp_path / "store.db"
    write_first_layout_file(path, ["a"])
    store = SQLiteStore(path)
    try:
        start = store.list(Subnet).resource_version
        body = make_subnet("old-writer", "198.19.8.0/24").to_json()
        body["metadata"].update(resourceVersion="3", uid="uid-old", generation=1)
        text = json.dumps(body)
        old = sqlite3.connect(path, isolation_level=None)
        try:
            old.execute("BEGIN IMMEDIATE")
            old.execute("UPDATE counters SET value = 3 WHERE key = 'revision'")
            old.execute(
                "INSERT INTO objects VALUES (?, '', 'old-writer', 3, ?)", (SUBNET_KIND, text)
            )
            old.execute("INSERT INTO events VALUES (3, ?, '', 'ADDED', ?)", (SUBNET_KIND, text))
            old.execute("COMMIT")
        finally:
            old.close()
        events = watch_until_added(store, start, "old-writer")
        assert [(e.type, e.object.name) for e in events] == [("ADDED", "old-writer")]
    finally:
        store.close()
