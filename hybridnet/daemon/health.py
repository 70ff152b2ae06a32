"""Whether an informer's store answers: what the daemon's readiness (CNI STATUS) reports.

``WatchHealth`` wraps the store one informer uses and remembers the outcome of the informer's
latest request. Healthy means the store answered it: a list returned, or a watch delivered an
event (bookmarks count) or ran to its timeout; ``Gone`` counts too (the store answered, and
the informer relists). A list or watch that failed - unreachable, overloaded, forbidden - makes
it unhealthy until a later one succeeds.

A watch proves nothing until it delivers or ends, and a quiet one may do neither for its whole
timeout. So after a failure the informer's next watch is a short one (``RECHECK_SECONDS``):
when it ends normally, the store answers again and readiness returns within about a second
instead of a whole watch timeout later.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator

from hybridnet.store.errors import Gone, StoreError
from hybridnet.store.interface import ListResult, R, Store, WatchEvent

RECHECK_SECONDS = 1.0


class WatchHealth(Store):
    """A store that remembers whether its latest list or watch succeeded; every other call
    goes straight through."""

    def __init__(self, inner: Store, recheck_seconds: float = RECHECK_SECONDS):
        self.inner = inner
        self.recheck_seconds = recheck_seconds
        self._lock = threading.Lock()
        self._problem: str | None = None

    @property
    def problem(self) -> str | None:
        """None while healthy (and before the first request), else the failed request's
        error."""
        with self._lock:
            return self._problem

    def _answered(self) -> None:
        with self._lock:
            self._problem = None

    def _failed(self, exc: StoreError) -> None:
        with self._lock:
            self._problem = str(exc)

    # ----------------------------------------------------------------- observed

    def list(
        self, kind: type[R], namespace: str | None = None, label_selector: str | None = None
    ) -> ListResult[R]:
        try:
            listed = self.inner.list(kind, namespace, label_selector)
        except Gone:
            self._answered()
            raise
        except StoreError as exc:
            self._failed(exc)
            raise
        self._answered()
        return listed

    def watch(
        self,
        kind: type[R],
        resource_version: str,
        namespace: str | None = None,
        label_selector: str | None = None,
        timeout_seconds: float | None = None,
    ) -> Iterator[WatchEvent[R]]:
        if self.problem is not None:
            timeout_seconds = min(timeout_seconds or self.recheck_seconds, self.recheck_seconds)
        events: Iterator[WatchEvent[R]] | None = None
        try:
            # Inside the generator: a backend may fail at the call or at the first event.
            events = self.inner.watch(
                kind, resource_version, namespace, label_selector, timeout_seconds
            )
            for event in events:
                self._answered()
                yield event
        except Gone:
            self._answered()
            raise
        except StoreError as exc:
            self._failed(exc)
            raise
        finally:
            close = getattr(events, "close", None)
            if close is not None:
                close()  # the informer stopped reading: end the request now
        self._answered()  # the watch ran to its timeout

    # ----------------------------------------------------------------- passed through

    def get(self, kind: type[R], name: str, namespace: str | None = None) -> R:
        return self.inner.get(kind, name, namespace)

    def create(self, obj: R) -> R:
        return self.inner.create(obj)

    def update(self, obj: R) -> R:
        return self.inner.update(obj)

    def update_status(self, obj: R) -> R:
        return self.inner.update_status(obj)

    def delete(
        self,
        kind: type[R],
        name: str,
        namespace: str | None = None,
        resource_version: str | None = None,
        grace_period_seconds: int | None = None,
    ) -> None:
        self.inner.delete(kind, name, namespace, resource_version, grace_period_seconds)

    def close(self) -> None:
        """The inner store is shared with the rest of the daemon, which closes it."""
