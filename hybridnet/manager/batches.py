"""Bring marked objects up to date on one daemon thread, in batches at most every few seconds.

The status writer and the node labeler are told what changed (an event, an allocation) and
mark the affected object's key; this loop then calls their ``sync(key)`` for each marked key,
oldest mark first. A key marked many times between two batches is synced once, so a burst of
allocations costs one status write per interval, not one per address. The first batch after a
quiet spell goes at once. Every ``resync`` seconds every key is marked again, to heal anything
missed; ``sync`` works from the informers' caches, so a resync sends nothing unless something
is really out of date.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable

from hybridnet.logs import fields
from hybridnet.manager.workqueue import WorkQueue
from hybridnet.store.errors import StoreError, Unavailable

log = logging.getLogger(__name__)

RETRY_SECONDS = 2.0
"""When a sync found the store unavailable, how long before that key is tried again."""


class BatchLoop:
    def __init__(
        self,
        name: str,
        sync: Callable[[str], None],
        every_key: Callable[[], Iterable[str]],
        *,
        interval: float,
        resync: float,
    ):
        self.name = name
        self.interval = interval
        self.resync = resync
        self._sync = sync
        self._every_key = every_key
        self._queue = WorkQueue()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def mark(self, key: str) -> None:
        """``key`` may be out of date: sync it in the next batch (cheap, any thread)."""
        self._queue.add(key)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> bool:
        """Sync what is still marked, then stop; True once the thread has finished (False: a
        sync still runs after ``timeout``, and the daemon thread ends with the process)."""
        self._stop.set()
        self._queue.close()
        if self._thread is None:
            return True
        self._thread.join(timeout=timeout)
        return not self._thread.is_alive()

    def _run(self) -> None:
        next_resync = time.monotonic() + self.resync
        while True:
            key = self._queue.get(timeout=max(next_resync - time.monotonic(), 0.0))
            if key is None:
                if self._stop.is_set():
                    return
                for every in self._every_key():
                    self._queue.add(every)
                next_resync = time.monotonic() + self.resync
                continue
            batch = [key]
            while (more := self._queue.get(timeout=0)) is not None:
                batch.append(more)
            for item in batch:
                self._sync_one(item)
            self._stop.wait(self.interval)

    def _sync_one(self, key: str) -> None:
        try:
            self._sync(key)
        except Unavailable as exc:
            log.warning(
                "store unavailable, will retry",
                extra=fields(loop=self.name, key=key, error=str(exc)),
            )
            self._queue.add_after(key, RETRY_SECONDS)
        except StoreError as exc:  # refused (RBAC, validation): the next change marks it again
            log.warning("sync refused", extra=fields(loop=self.name, key=key, error=str(exc)))
        except Exception:
            log.exception("sync failed", extra=fields(loop=self.name, key=key))
        finally:
            self._queue.done(key)


class OwnWrites:
    """The cached version each key's last write of ours was based on.

    Until the informer's cache moves past that version it does not show our write yet:
    comparing with it would find the old value and write again (a Conflict, at best). A sync
    that finds the cache behind skips; the event of our own write marks the key again.
    Used from the loop's one thread only."""

    def __init__(self) -> None:
        self._based_on: dict[str, str | None] = {}

    def cache_is_behind(self, key: str, cached_version: str | None) -> bool:
        return key in self._based_on and self._based_on[key] == cached_version

    def wrote(self, key: str, based_on: str | None) -> None:
        self._based_on[key] = based_on

    def failed(self, key: str) -> None:
        """The write did not happen: the cache is as current as anything we know."""
        self._based_on.pop(key, None)
