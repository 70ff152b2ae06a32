"""The embedded store: one SQLite file, for a host without Kubernetes (demo, podman hosts).

It behaves like the API server where components can tell the difference: one global revision
counter (like etcd's) gives every write a new resourceVersion; create-only names; optimistic
concurrency; status subresource semantics; watches from a revision, with ``Gone`` once that
history is compacted; with a label selector, an object that stops matching arrives as DELETED
and one that starts matching as ADDED. Several processes on one host may share the file: every
write is one ``BEGIN IMMEDIATE`` transaction (SQLite's write lock) in WAL mode, and a watcher
sleeps until a commit wakes it, in this process or another (hybridnet.store.sqlite_wakeup).
Every sqlite3 failure reaches callers as a typed StoreError (hybridnet.store.sqlite_errors),
and a write that fails leaves the file as it was.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import logging
import secrets
import sqlite3
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

from hybridnet.api import validation
from hybridnet.api.meta import ObjectMeta, Resource, ResourceKind
from hybridnet.logs import fields
from hybridnet.store import selectors, sqlite_schema
from hybridnet.store.errors import (
    AlreadyExists,
    Conflict,
    Gone,
    Invalid,
    NotFound,
    StoreError,
    Unavailable,
)
from hybridnet.store.interface import EventType, ListResult, R, Store, WatchEvent
from hybridnet.store.sqlite_errors import translate
from hybridnet.store.sqlite_wakeup import CommitNotifier

log = logging.getLogger(__name__)

DEFAULT_HISTORY = 10_000
"""Events kept for watchers; older ones are compacted (a watcher that far behind relists)."""
COMPACT_EVERY = 1_000
BUSY_TIMEOUT_SECONDS = 10.0
CLOSE_WAIT_SECONDS = BUSY_TIMEOUT_SECONDS + 1.0
"""How long close() waits for operations under way (each waits at most the busy timeout for
SQLite's lock) before it leaves their connections open rather than close them under them."""
SAFETY_POLL_SECONDS = 5.0
"""The default ``recheck_interval``: how long a watcher that nothing wakes sleeps before it looks
at the file anyway. Commits wake watchers at once; this only bounds the delay for writes whose
notification cannot arrive: a writer of an older hybridnet, one without permission on the
watchers' directory, one killed between its commit and its notification, a listener that
could not bind. Seconds keep an idle watcher at one indexed query per period (it used to poll
twenty times a second)."""
WATCH_BATCH = 500


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
        recheck_interval: float = SAFETY_POLL_SECONDS,
        history: int = DEFAULT_HISTORY,
    ):
        self.path = Path(path)
        self.recheck_interval = recheck_interval
        self.history = history
        self.notifier = CommitNotifier(self.path.with_name(self.path.name + "-watchers"))
        """Wakes this store's watchers after commits (public for tests and diagnostics)."""
        self._local = threading.local()
        self._connections: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        self._closed = threading.Event()
        self._usage = threading.Condition()
        self._in_use = 0
        """Operations holding a connection now (guarded by _usage): see _using()."""
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise Unavailable(f"cannot open the store at {self.path}: {exc}") from exc
        try:
            self._prepare_file()
        except StoreError:
            with contextlib.suppress(StoreError):
                self.close()
            raise

    def _prepare_file(self) -> None:
        """Create or migrate the tables; the write lock is taken only when there is work."""
        what = f"cannot open the store at {self.path}"
        with self._translated(what), self._using() as conn:
            current = sqlite_schema.is_current(conn)
        if not current:
            with self._write(what) as conn:
                sqlite_schema.prepare(conn)

    # ----------------------------------------------------------------- connections

    def _conn(self) -> sqlite3.Connection:
        """This thread's connection, opened on first use."""
        if self._closed.is_set():
            raise self._closed_error()
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is not None:
            return conn
        with self._translated(f"cannot open the store at {self.path}"):
            conn = sqlite3.connect(
                self.path,
                timeout=BUSY_TIMEOUT_SECONDS,
                isolation_level=None,
                check_same_thread=False,
            )
            try:
                conn.execute("PRAGMA journal_mode=WAL")
                conn.execute("PRAGMA synchronous=NORMAL")
            except sqlite3.Error:
                conn.close()
                raise
        with self._lock:
            if self._closed.is_set():  # closed while this thread was connecting
                conn.close()
                raise self._closed_error()
            self._connections.append(conn)
        self._local.conn = conn
        return conn

    @contextlib.contextmanager
    def _using(self) -> Iterator[sqlite3.Connection]:
        """This thread's connection for one operation. close() waits until no operation is
        under way: closing a connection while another thread executes on it crashes the
        interpreter (a watch reading as the process shuts down did, once)."""
        with self._usage:
            if self._closed.is_set():
                raise self._closed_error()
            self._in_use += 1
        try:
            yield self._conn()
        finally:
            with self._usage:
                self._in_use -= 1
                self._usage.notify_all()

    def _closed_error(self) -> Unavailable:
        return Unavailable(f"the store at {self.path} is closed")

    @contextlib.contextmanager
    def _translated(self, what: str) -> Iterator[None]:
        """sqlite3 errors as typed StoreErrors; any error after close() is "closed"."""
        try:
            yield
        except sqlite3.Error as exc:
            if self._closed.is_set():
                raise self._closed_error() from exc
            raise translate(exc, what) from exc

    @contextlib.contextmanager
    def _write(self, what: str | None = None) -> Iterator[sqlite3.Connection]:
        """One write transaction holding SQLite's write lock: the unit of atomicity. Whatever
        fails inside it, nothing of it stays in the file; watchers hear of a commit that
        changed something."""
        with (
            self._using() as conn,
            self._translated(what or f"cannot write the store at {self.path}"),
        ):
            try:
                conn.execute("BEGIN IMMEDIATE")
                changes_before = conn.total_changes
                yield conn
                changed = conn.total_changes != changes_before
                conn.execute("COMMIT")
            except BaseException:
                self._end_transaction(conn)
                raise
        if changed:
            self.notifier.committed()

    @contextlib.contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        """A read transaction: one consistent snapshot of the file."""
        with self._using() as conn:
            try:
                with self._translated(f"cannot read the store at {self.path}"):
                    conn.execute("BEGIN")
                    yield conn
            finally:
                self._end_transaction(conn, "COMMIT")  # a read has nothing to commit: it ends

    def _end_transaction(self, conn: sqlite3.Connection, how: str = "ROLLBACK") -> None:
        """End whatever transaction ``conn`` still has (SQLite ends some by itself on
        failure). Should even that fail, close the connection: closing rolls back what it held
        and releases the write lock, and this thread connects afresh next time."""
        try:
            if conn.in_transaction:
                conn.execute(how)
        except sqlite3.Error as exc:
            if not self._closed.is_set():
                log.warning(
                    "ending a transaction failed; discarding the connection",
                    extra=fields(path=str(self.path), reason=str(exc)),
                )
            self._discard(conn)

    def _discard(self, conn: sqlite3.Connection) -> None:
        with self._lock:
            if conn in self._connections:
                self._connections.remove(conn)
        if getattr(self._local, "conn", None) is conn:
            self._local.conn = None
        with contextlib.suppress(sqlite3.Error):
            conn.close()

    def close(self) -> None:
        """Wake and end every watcher (they raise Unavailable), wait for the operations under
        way, then close the connections. Safe under watches and writes of other threads."""
        self._closed.set()
        self.notifier.close()
        with self._usage:
            idle = self._usage.wait_for(lambda: self._in_use == 0, CLOSE_WAIT_SECONDS)
        if not idle:
            log.warning(
                "store closed with operations still under way; their connections stay open",
                extra=fields(path=str(self.path), operations=self._in_use),
            )
            return
        with self._lock:
            connections, self._connections = self._connections, []
        self._local = threading.local()
        failures: list[sqlite3.Error] = []
        for conn in connections:
            try:
                conn.close()
            except sqlite3.Error as exc:
                failures.append(exc)
        if failures:
            raise translate(failures[0], f"cannot close the store at {self.path}") from failures[0]

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
        *,
        previous: dict[str, Any] | None = None,
    ) -> None:
        """Write the object and its event. ``previous`` is the object before a change of its
        labels: what a label-selector watch needs to tell that it left or entered."""
        revision = int(body["metadata"]["resourceVersion"])
        text = json.dumps(body, separators=(",", ":"))
        before = None if previous is None else json.dumps(previous, separators=(",", ":"))
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
            "INSERT INTO events (revision, kind, namespace, type, body) VALUES (?, ?, ?, ?, ?)",
            (revision, _kind_key(kind), namespace, event, text),
        )
        if before is not None:
            conn.execute("INSERT INTO relabels VALUES (?, ?)", (revision, before))
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
            relabelled = _labels(body) != _labels(current)
            self._record(conn, kind, ns, "MODIFIED", body, previous=current if relabelled else None)
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
        # Listen before the first look at the log: a commit it misses rings afterwards.
        self.notifier.listen()
        self._check_not_compacted(after)
        for item in start.items:
            yield WatchEvent("ADDED", item)
        query = (
            "SELECT e.revision, e.type, e.body, r.previous FROM events e "
            "LEFT JOIN relabels r ON r.revision = e.revision WHERE e.kind = ? AND e.revision > ?"
        )
        if kind.KIND.namespaced and namespace:
            query += " AND e.namespace = ?"
        query += f" ORDER BY e.revision LIMIT {WATCH_BATCH}"
        while True:
            seen = self.notifier.generation
            with self._read() as conn:
                compacted = self._counter(conn, "compacted")
                params: list[Any] = [_kind_key(kind.KIND), after]
                if kind.KIND.namespaced and namespace:
                    params.append(namespace)
                rows = conn.execute(query, params).fetchall()
            if compacted > after:
                raise Gone(f"version {after} was compacted (oldest kept is {compacted})")
            for revision, event_type, text, previous in rows:
                after = revision
                event = _selected_event(kind, selector, event_type, text, previous)
                if event is not None:
                    yield event
            if len(rows) < WATCH_BATCH:  # caught up: sleep until a commit or the re-check
                self.notifier.listen()  # again: replaces a listener that stopped working
                self.notifier.wait(seen, self._wait_seconds(deadline))
                if self._closed.is_set():
                    raise self._closed_error()
            if deadline is not None and time.monotonic() >= deadline:
                return

    def _wait_seconds(self, deadline: float | None) -> float:
        if deadline is None:
            return self.recheck_interval
        return max(0.0, min(self.recheck_interval, deadline - time.monotonic()))

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
        conn.execute("DELETE FROM relabels WHERE revision <= ?", (revision,))
        conn.execute(
            "UPDATE counters SET value = MAX(value, ?) WHERE key = 'compacted'", (revision,)
        )


def _labels(body: dict[str, Any]) -> dict[str, str]:
    labels: dict[str, str] = body["metadata"].get("labels") or {}
    return labels


def _selected_event(
    kind: type[R],
    selector: selectors.Selector,
    event_type: str,
    text: str,
    previous: str | None,
) -> WatchEvent[R] | None:
    """What a watch with ``selector`` sees of one logged event, as the API server does it: a
    change that makes the object match is ADDED, one that makes it stop matching is DELETED
    with the object's last matching state at the change's version, and none at all when the
    object matched neither before nor after."""
    body = json.loads(text)
    matches = selector.matches(_labels(body))
    if event_type != "MODIFIED" or previous is None:  # created, deleted, or labels unchanged
        return WatchEvent(cast(EventType, event_type), kind.from_json(body)) if matches else None
    before = json.loads(previous)
    matched = selector.matches(_labels(before))
    if matches:
        return WatchEvent("MODIFIED" if matched else "ADDED", kind.from_json(body))
    if matched:
        before["metadata"]["resourceVersion"] = body["metadata"]["resourceVersion"]
        return WatchEvent("DELETED", kind.from_json(before))
    return None


__all__ = ["SQLiteStore", "StoreError"]
