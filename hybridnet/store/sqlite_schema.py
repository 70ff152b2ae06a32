"""The layout of the embedded store's file, and the migration of files written by older code.

Users keep this file on their hosts across upgrades, so a layout change is a numbered
migration (SQLite's ``user_version``), run once in one write transaction by whichever process
opens the file first; concurrent openers wait on the write lock and then find nothing to do.

Versions:

- 0: the first layout (no ``user_version``).
- 1: an event that changed an object's labels keeps the object as it was before, in its own
  table ``relabels`` (keyed by the event's revision), so a label-selector watch can tell that
  the object left or entered the selection. ``events`` keeps the first layout's columns, so a
  process still running the first release goes on writing to a migrated file; its relabelling
  writes simply have no ``relabels`` row and are replayed as the first release replayed them.
"""

from __future__ import annotations

import sqlite3

from hybridnet.store.sqlite_errors import UnsupportedSchema

SCHEMA_VERSION = 1

_TABLES = (
    """CREATE TABLE IF NOT EXISTS objects (
        kind TEXT NOT NULL, namespace TEXT NOT NULL, name TEXT NOT NULL,
        revision INTEGER NOT NULL, body TEXT NOT NULL,
        PRIMARY KEY (kind, namespace, name)
    )""",
    """CREATE TABLE IF NOT EXISTS events (
        revision INTEGER PRIMARY KEY, kind TEXT NOT NULL, namespace TEXT NOT NULL,
        type TEXT NOT NULL, body TEXT NOT NULL
    )""",
    """CREATE TABLE IF NOT EXISTS relabels (
        revision INTEGER PRIMARY KEY, previous TEXT NOT NULL
    )""",
    "CREATE INDEX IF NOT EXISTS events_by_kind ON events (kind, revision)",
    "CREATE TABLE IF NOT EXISTS counters (key TEXT PRIMARY KEY, value INTEGER NOT NULL)",
    # Versions start at 1: "0" means "any version" to a watch, as it does to the API server.
    "INSERT OR IGNORE INTO counters VALUES ('revision', 1), ('compacted', 0)",
)


def schema_version(conn: sqlite3.Connection) -> int:
    return int(conn.execute("PRAGMA user_version").fetchone()[0])


def is_current(conn: sqlite3.Connection) -> bool:
    """Whether the file needs no preparation (checked without taking the write lock)."""
    version = schema_version(conn)
    _refuse_newer(version)
    return version == SCHEMA_VERSION


def prepare(conn: sqlite3.Connection) -> None:
    """Create the tables of a new file or migrate an older one; call inside a write
    transaction, which makes the migration all-or-nothing."""
    version = schema_version(conn)
    _refuse_newer(version)
    if version == SCHEMA_VERSION:
        return  # another process prepared it while this one waited for the lock
    existing = conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'events'").fetchone()
    for statement in _TABLES:
        conn.execute(statement)
    if existing and version == 0:
        _migrate_0_to_1(conn)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")


def _migrate_0_to_1(conn: sqlite3.Connection) -> None:
    """Compact the history written before ``relabels`` existed (its table is created with the
    others): those events do not say what an object looked like before, so a label-selector
    watch could not replay them faithfully. A watcher from before the migration gets Gone and
    relists, as after any compaction; the objects and the revision counter are kept."""
    conn.execute("DELETE FROM events")
    conn.execute(
        "UPDATE counters SET value = (SELECT value FROM counters WHERE key = 'revision') "
        "WHERE key = 'compacted'"
    )


def _refuse_newer(version: int) -> None:
    if version > SCHEMA_VERSION:
        raise UnsupportedSchema(
            f"the store file has layout version {version}; this hybridnet knows up to "
            f"{SCHEMA_VERSION}: upgrade hybridnet, or keep the file for the newer version"
        )
