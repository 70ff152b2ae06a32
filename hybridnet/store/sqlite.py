"""The embedded store: one SQLite file, for a host without Kubernetes (demo, podman hosts).

It behaves like the API server where components can tell the difference: one global revision
counter (like etcd's) gives every write a new resourceVersion; create-only names; optimistic
concurrency; status subresource semantics; watches from a revision, with ``Gone`` once that
history is compacted. Several processes on one host may share the file: every write is one
``BEGIN IMMEDIATE`` transaction (SQLite's write lock) in WAL mode, and watchers poll the event
log, so a watcher in one process sees writes made by another.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import secrets
import sqlite3
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from hybridnet.api import validation
from hybridnet.api.meta import ObjectMeta, Resource, ResourceKind
from hybridnet.store import selectors
from hybridnet.store.errors import (
    AlreadyExists,
    Conflict,
    Gone,
    Invalid,
    NotFound,
    StoreError,
    Unavailable,
)
from hybridnet.store.interface import ListResult, R, Store, WatchEvent

SCHEMA = """
CREATE TABLE IF NOT EXISTS objects (
    kind TEXT NOT NULL, namespace TEXT NOT NULL, name TEXT NOT NULL,
    revision INTEGER NOT NULL, body TEXT NOT NULL,
    PRIMARY KEY (kind, namespace, name)
);
CREATE TABLE IF NOT EXISTS events (
    revision INTEGER PRIMARY KEY, kind TEXT NOT NULL, namespace TEXT NOT NULL,
    type TEXT NOT NULL, body TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS events_by_kind ON events (kind, revision);
CREATE TABLE IF NOT EXISTS counters (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
-- Versions start at 1: "0" means "any version" to a watch, as it does to the API server.
INSERT OR IGNORE INTO counters VALUES ('revision', 1), ('compacted', 0);
"""

DEFAULT_HISTORY = 10_000
"""Events kept for watchers; older ones are compacted (a watcher that far behind relists)."""
COMPACT_EVERY = 1_000
BUSY_TIMEOUT_SECONDS = 10.0


def _kind_key(kind: ResourceKind) -> str:
    return f"{kind.group}/{kind.kind}"


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class SQLiteStore(Store):
    """The store in one SQLite file; safe for several threads and processes."""

    def __init__(
        self,
        path: str | Path,
        *,
        poll_interval: float = 0.05,
        history: int = DEFAULT_HISTORY,
    ):
        self.path = Path(path)
        self.poll_interval = poll_interval
        self.history = history
        self._local = threading.local()
        self._connections: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        self._closed = False
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._conn().executescript(SCHEMA)
        except (OSError, sqlite3.Error) as exc:
            raise Unavailable(f"cannot open the store at {self.path}: {exc}") from exc

    # ----------------------------------------------------------------- connections

    def _conn(self) -> sqlite3.Connection:
        if self._closed:
            raise Unavailable(f"the store at {self.path} is closed")
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            try:
                conn = sqlite3.connect(
                    self.path,
                    timeout=BUSY_TIMEOUT_SECONDS,
                    isolation_level=None,
                    check_same_thread=False,
                )
                conn.execute("PRAGMA journal_mode=WAL")
                conn.execute("PRAGMA synchronous=NORMAL")
            except sqlite3.Error as exc:
                raise Unavailable(f"cannot open the store at {self.path}: {exc}") from exc
            self._local.conn = conn
            with self._lock:
                self._connections.append(conn)
        return conn

    @contextlib.contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One write transaction holding SQLite's write lock: the unit of atomicity."""
        conn = self._conn()
        try:
            conn.execute("BEGIN IMMEDIATE")
        except (sqlite3.OperationalError, sqlite3.ProgrammingError) as exc:
            raise Unavailable(f"the store at {self.path} is busy or closed: {exc}") from exc
        try:
            yield conn
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    @contextlib.contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        """A read transaction: one consistent snapshot of the file."""
        conn = self._conn()
        try:
            conn.execute("BEGIN")
            yield conn
        except (sqlite3.OperationalError, sqlite3.ProgrammingError) as exc:
            raise Unavailable(f"cannot read the store at {self.path}: {exc}") from exc
        finally:
            with contextlib.suppress(sqlite3.ProgrammingError):  # closed meanwhile
                if conn.in_transaction:
                    conn.execute("COMMIT")

    def close(self) -> None:
        self._closed = True
        with self._lock:
            for conn in self._connections:
                conn.close()
            self._connections.clear()
        self._local = threading.local()

    # ----------------------------------------------------------------- helpers

    @staticmethod
    def _namespace(kind: ResourceKind, namespace: str | None) -> str:
        if kind.namespaced and not namespace:
            raise Invalid(f"{kind.kind}: metadata.namespace: is required")
        return (namespace or "") if kind.namespaced else ""

    @staticmethod
    def _bump(conn: sqlite3.Connection) -> int:
        row = conn.execute(
            "UPDATE counters SET value = value + 1 WHERE key = 'revision' RETURNING value"
        ).fetchone()
        return int(row[0])

    def _row(
        self, conn: sqlite3.Connection, kind: ResourceKind, namespace: str, name: str
    ) -> dict[str, Any] | None:
        row = conn.execute(
            "SELECT body FROM objects WHERE kind = ? AND namespace = ? AND name = ?",
            (_kind_key(kind), namespace, name),
        ).fetchone()
        return json.loads(row[0]) if row else None

    def _record(
        self,
        conn: sqlite3.Connection,
        kind: ResourceKind,
        namespace: str,
        event: str,
        body: dict[str, Any],
    ) -> None:
        revision = int(body["metadata"]["resourceVersion"])
        text = json.dumps(body, separators=(",", ":"))
        name = body["metadata"]["name"]
        if event == "DELETED":
            conn.execute(
                "DELETE FROM objects WHERE kind = ? AND namespace = ? AND name = ?",
                (_kind_key(kind), namespace, name),
            )
        else:
            conn.execute(
                "INSERT OR REPLACE INTO objects VALUES (?, ?, ?, ?, ?)",
                (_kind_key(kind), namespace, name, revision, text),
            )
        conn.execute(
            "INSERT INTO events VALUES (?, ?, ?, ?, ?)",
            (revision, _kind_key(kind), namespace, event, text),
        )
        if revision % COMPACT_EVERY == 0 and revision > self.history:
            self._compact(conn, revision - self.history)

    @staticmethod
    def _validate(obj: Resource, old: Resource | None = None) -> None:
        try:
            validation.validate(obj, old)
        except validation.ValidationFailed as exc:
            raise Invalid(str(exc)) from exc

    # ----------------------------------------------------------------- reads

    def get(self, kind: type[R], name: str, namespace: str | None = None) -> R:
        ns = self._namespace(kind.KIND, namespace)
        with self._read() as conn:
            body = self._row(conn, kind.KIND, ns, name)
        if body is None:
            where = f"{ns}/{name}" if ns else name
            raise NotFound(f"{kind.KIND.kind} {where} not found")
        return kind.from_json(body)

    def list(
        self,
        kind: type[R],
        namespace: str | None = None,
        label_selector: str | None = None,
    ) -> ListResult[R]:
        selector = selectors.parse(label_selector)
        query = "SELECT body FROM objects WHERE kind = ?"
        params: list[str] = [_kind_key(kind.KIND)]
        if kind.KIND.namespaced and namespace:
            query += " AND namespace = ?"
            params.append(namespace)
        with self._read() as conn:
            rows = conn.execute(query + " ORDER BY namespace, name", params).fetchall()
            revision = conn.execute("SELECT value FROM counters WHERE key = 'revision'").fetchone()
        items = [kind.from_json(json.loads(row[0])) for row in rows]
        items = [item for item in items if selector.matches(item.metadata.labels)]
        return ListResult(items, str(revision[0]))

    # ----------------------------------------------------------------- writes

    def create(self, obj: R) -> R:
        kind = obj.KIND
        meta = obj.metadata
        if meta.resource_version:
            raise Invalid(f"{kind.kind} {meta.name}: metadata.resourceVersion: must not be set")
        if not meta.name and meta.generate_name:
            meta.name = meta.generate_name + secrets.token_hex(3)[:5]
        self._validate(obj)
        ns = self._namespace(kind, meta.namespace)
        body = obj.to_json()
        if kind.status_subresource:
            # Like the API server: a create cannot set status; it starts from the defaults.
            initial = type(obj)(metadata=ObjectMeta()).to_json().get("status")
            body.pop("status", None)
            if initial is not None:
                body["status"] = initial
        with self._write() as conn:
            if self._row(conn, kind, ns, meta.name) is not None:
                where = f"{ns}/{meta.name}" if ns else meta.name
                raise AlreadyExists(f"{kind.kind} {where} already exists")
            revision = self._bump(conn)
            body["metadata"].update(
                resourceVersion=str(revision),
                uid=str(uuid.uuid4()),
                creationTimestamp=_now(),
                generation=1,
            )
            if kind.namespaced:
                body["metadata"]["namespace"] = ns
            else:
                body["metadata"].pop("namespace", None)
            self._record(conn, kind, ns, "ADDED", body)
        return type(obj).from_json(body)

    def update(self, obj: R) -> R:
        return self._replace(obj, status_only=False)

    def update_status(self, obj: R) -> R:
        return self._replace(obj, status_only=True)

    def _replace(self, obj: R, *, status_only: bool) -> R:
        kind = obj.KIND
        meta = obj.metadata
        if not meta.resource_version:
            raise Invalid(
                f"{kind.kind} {meta.name}: metadata.resourceVersion: must be set for an update"
            )
        ns = self._namespace(kind, meta.namespace)
        with self._write() as conn:
            current = self._row(conn, kind, ns, meta.name)
            if current is None:
                raise NotFound(f"{kind.kind} {meta.name} not found")
            if current["metadata"]["resourceVersion"] != meta.resource_version:
                raise Conflict(
                    f"{kind.kind} {meta.name} was modified (version {meta.resource_version} is "
                    f"stale, current is {current['metadata']['resourceVersion']}): "
                    "read it again and retry"
                )
            old = type(obj).from_json(current)
            body = self._merge(obj, current, status_only=status_only)
            if not status_only:
                self._validate(type(obj).from_json(body), old)
            unchanged = {k: v for k, v in current.items() if k != "metadata"} == {
                k: v for k, v in body.items() if k != "metadata"
            } and current["metadata"] == body["metadata"]
            if unchanged:
                return old
            revision = self._bump(conn)
            body["metadata"]["resourceVersion"] = str(revision)
            if body.get("spec") != current.get("spec"):
                body["metadata"]["generation"] = int(current["metadata"].get("generation", 1)) + 1
            self._record(conn, kind, ns, "MODIFIED", body)
        return type(obj).from_json(body)

    @staticmethod
    def _merge(obj: Resource, current: dict[str, Any], *, status_only: bool) -> dict[str, Any]:
        """The body to store: the update's parts over the stored object, the way the API
        server's status subresource splits them."""
        new = obj.to_json()
        identity = {
            k: current["metadata"][k]
            for k in ("uid", "creationTimestamp", "generation", "resourceVersion", "namespace")
            if k in current["metadata"]
        }
        if status_only:
            body = dict(current)
            if "status" in new:
                body["status"] = new["status"]
            return body
        body = dict(new)
        body["metadata"] = {**new["metadata"], **identity}
        if obj.KIND.status_subresource:
            if "status" in current:
                body["status"] = current["status"]
            else:
                body.pop("status", None)
        return body

    def delete(
        self,
        kind: type[R],
        name: str,
        namespace: str | None = None,
        resource_version: str | None = None,
        grace_period_seconds: int | None = None,
    ) -> None:
        ns = self._namespace(kind.KIND, namespace)
        with self._write() as conn:
            current = self._row(conn, kind.KIND, ns, name)
            if current is None:
                raise NotFound(f"{kind.KIND.kind} {name} not found")
            if resource_version and current["metadata"]["resourceVersion"] != resource_version:
                raise Conflict(f"{kind.KIND.kind} {name} was modified; not deleted")
            current["metadata"]["resourceVersion"] = str(self._bump(conn))
            self._record(conn, kind.KIND, ns, "DELETED", current)

    # ----------------------------------------------------------------- watch

    def watch(
        self,
        kind: type[R],
        resource_version: str,
        namespace: str | None = None,
        label_selector: str | None = None,
        timeout_seconds: float | None = None,
    ) -> Iterator[WatchEvent[R]]:
        selector = selectors.parse(label_selector)
        if not resource_version or resource_version == "0":
            listed = self.list(kind, namespace, label_selector)
            return self._watch_from(kind, listed, namespace, selector, timeout_seconds)
        try:
            after = int(resource_version)
        except ValueError as exc:
            raise Invalid(f"resourceVersion {resource_version!r} is not a version") from exc
        start: ListResult[R] = ListResult([], str(after))
        return self._watch_from(kind, start, namespace, selector, timeout_seconds)

    def _watch_from(
        self,
        kind: type[R],
        start: ListResult[R],
        namespace: str | None,
        selector: selectors.Selector,
        timeout_seconds: float | None,
    ) -> Iterator[WatchEvent[R]]:
        deadline = None if timeout_seconds is None else time.monotonic() + timeout_seconds
        after = int(start.resource_version)
        self._check_not_compacted(after)
        for item in start.items:
            yield WatchEvent("ADDED", item)
        query = "SELECT revision, type, body FROM events WHERE kind = ? AND revision > ?"
        if kind.KIND.namespaced and namespace:
            query += " AND namespace = ?"
        query += " ORDER BY revision LIMIT 500"
        while deadline is None or time.monotonic() < deadline:
            with self._read() as conn:
                compacted = self._counter(conn, "compacted")
                params: list[Any] = [_kind_key(kind.KIND), after]
                if kind.KIND.namespaced and namespace:
                    params.append(namespace)
                rows = conn.execute(query, params).fetchall()
            if compacted > after:
                raise Gone(f"version {after} was compacted (oldest kept is {compacted})")
            for revision, event_type, text in rows:
                after = revision
                obj = kind.from_json(json.loads(text))
                if selector.matches(obj.metadata.labels):
                    yield WatchEvent(event_type, obj)
            if not rows:
                time.sleep(self.poll_interval)

    def _check_not_compacted(self, after: int) -> None:
        with self._read() as conn:
            compacted = self._counter(conn, "compacted")
        if compacted > after:
            raise Gone(f"version {after} was compacted (oldest kept is {compacted})")

    @staticmethod
    def _counter(conn: sqlite3.Connection, key: str) -> int:
        return int(conn.execute("SELECT value FROM counters WHERE key = ?", (key,)).fetchone()[0])

    # ----------------------------------------------------------------- maintenance

    def compact(self, revision: int | None = None) -> int:
        """Forget events up to ``revision`` (default: all so far); watchers behind get Gone."""
        with self._write() as conn:
            target = self._counter(conn, "revision") if revision is None else revision
            self._compact(conn, target)
        return target

    @staticmethod
    def _compact(conn: sqlite3.Connection, revision: int) -> None:
        conn.execute("DELETE FROM events WHERE revision <= ?", (revision,))
        conn.execute(
            "UPDATE counters SET value = MAX(value, ?) WHERE key = 'compacted'", (revision,)
        )


__all__ = ["SQLiteStore", "StoreError"]
