"""Keep an up-to-date view of one kind: list, watch from there, heal from every failure.

The loop every component runs on top of the store: list (the cache becomes exactly the listed
objects, and the handler hears the difference), watch from the list's version, resume from the
last seen version when a watch ends, relist on ``Gone`` (history compacted, or a restarted API
server), and back off with jitter while the store is ``Unavailable``. A handler that raises
is logged and does not stop the loop.
"""

from __future__ import annotations

import dataclasses
import logging
import random
import threading
from collections.abc import Callable, Iterator
from typing import Generic

from hybridnet.logs import fields
from hybridnet.store.errors import Gone, StoreError
from hybridnet.store.interface import R, Store, WatchEvent

log = logging.getLogger(__name__)

Key = tuple[str, str]


def object_key(obj: R) -> Key:
    return (obj.metadata.namespace or "", obj.metadata.name)


@dataclasses.dataclass(frozen=True)
class Backoff:
    """Exponential delays with jitter, so reconnecting clients do not arrive in lockstep."""

    initial: float = 0.2
    maximum: float = 10.0
    factor: float = 2.0
    jitter: float = 0.2

    def delays(self) -> Iterator[float]:
        delay = self.initial
        while True:
            yield delay * (1 + random.uniform(-self.jitter, self.jitter))  # noqa: S311
            delay = min(delay * self.factor, self.maximum)


class Informer(Generic[R]):
    """A cache of ``kind`` objects kept current from the store, calling ``handler`` on
    every change (from its own thread)."""

    def __init__(
        self,
        store: Store,
        kind: type[R],
        handler: Callable[[WatchEvent[R]], None],
        *,
        namespace: str | None = None,
        label_selector: str | None = None,
        backoff: Backoff | None = None,
        watch_timeout: float = 30.0,
    ):
        self.store = store
        self.kind = kind
        self.handler = handler
        self.namespace = namespace
        self.label_selector = label_selector
        self.backoff = backoff or Backoff()
        self.watch_timeout = watch_timeout
        self.cache: dict[Key, R] = {}
        self.synced = threading.Event()
        self.resource_version = ""
        self.relists = 0
        self.last_error: StoreError | None = None
        """The failure the loop is backing off from now (None once a list or watch works)."""
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # ----------------------------------------------------------------- lifecycle

    def start(self) -> Informer[R]:
        """Run in a daemon thread; a stopped informer may be started again (it resumes from
        its last version and cache)."""
        self._stop.clear()
        self._thread = threading.Thread(
            target=self.run, name=f"informer-{self.kind.KIND.plural}", daemon=True
        )
        self._thread.start()
        return self

    def signal_stop(self) -> None:
        """Ask the loop to end (it does at its next event or watch timeout); see stop()."""
        self._stop.set()

    def stop(self, timeout: float | None = None) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def run(self) -> None:
        delays = self.backoff.delays()
        must_list = True
        while not self._stop.is_set():
            try:
                if must_list:
                    self._relist()
                    must_list = False
                self.last_error = None
                self._watch_once()
                delays = self.backoff.delays()
            except Gone as exc:
                log.info(
                    "watch history gone, relisting",
                    extra=fields(
                        kind=self.kind.KIND.kind, version=self.resource_version, reason=str(exc)
                    ),
                )
                must_list = True
            except StoreError as exc:  # unreachable, overloaded, forbidden: wait, retry
                self.last_error = exc
                delay = next(delays)
                log.warning(
                    "store request failed, retrying",
                    extra=fields(
                        kind=self.kind.KIND.kind, delay_seconds=round(delay, 2), reason=str(exc)
                    ),
                )
                self._stop.wait(delay)

    # ----------------------------------------------------------------- steps

    def _relist(self) -> None:
        listed = self.store.list(self.kind, self.namespace, self.label_selector)
        fresh = {object_key(obj): obj for obj in listed.items}
        changes: list[WatchEvent[R]] = []
        for key, obj in fresh.items():
            known = self.cache.get(key)
            if known is None:
                changes.append(WatchEvent("ADDED", obj))
            elif known.metadata.resource_version != obj.metadata.resource_version:
                changes.append(WatchEvent("MODIFIED", obj))
        changes += [
            WatchEvent("DELETED", obj) for key, obj in self.cache.items() if key not in fresh
        ]
        self.cache = fresh
        self.resource_version = listed.resource_version
        self.relists += 1
        self.synced.set()
        for event in changes:
            self._notify(event)

    def _watch_once(self) -> None:
        events = self.store.watch(
            self.kind,
            self.resource_version,
            self.namespace,
            self.label_selector,
            timeout_seconds=self.watch_timeout,
        )
        for event in events:
            if event.object.metadata.resource_version:
                self.resource_version = event.object.metadata.resource_version
            if event.type == "BOOKMARK":
                continue
            key = object_key(event.object)
            if event.type == "DELETED":
                self.cache.pop(key, None)
            else:
                self.cache[key] = event.object
            self._notify(event)
            if self._stop.is_set():
                return

    def _notify(self, event: WatchEvent[R]) -> None:
        try:
            self.handler(event)
        except Exception:
            log.exception(
                "event handler failed",
                extra=fields(
                    kind=self.kind.KIND.kind, event=event.type, name=event.object.metadata.name
                ),
            )
