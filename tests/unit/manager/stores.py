"""Store wrappers for manager tests: count what a component asks of the store, or make some
requests fail the way an API server that is not ready does, around a real store."""

from __future__ import annotations

import collections
import threading
from collections.abc import Callable, Iterator

from hybridnet.store.errors import StoreError
from hybridnet.store.interface import ListResult, R, Store, WatchEvent


class DelegatingStore(Store):
    """Every call goes to ``inner``, through :meth:`_before` (which may count, or raise)."""

    def __init__(self, inner: Store):
        self.inner = inner

    def _before(self, verb: str, kind: str) -> None:
        """Called before each request: ``verb`` as in RBAC, ``kind`` the plural."""

    def get(self, kind: type[R], name: str, namespace: str | None = None) -> R:
        self._before("get", kind.KIND.plural)
        return self.inner.get(kind, name, namespace)

    def list(
        self, kind: type[R], namespace: str | None = None, label_selector: str | None = None
    ) -> ListResult[R]:
        self._before("list", kind.KIND.plural)
        return self.inner.list(kind, namespace, label_selector)

    def create(self, obj: R) -> R:
        self._before("create", obj.KIND.plural)
        return self.inner.create(obj)

    def update(self, obj: R) -> R:
        self._before("update", obj.KIND.plural)
        return self.inner.update(obj)

    def update_status(self, obj: R) -> R:
        self._before("update_status", obj.KIND.plural)
        return self.inner.update_status(obj)

    def delete(
        self,
        kind: type[R],
        name: str,
        namespace: str | None = None,
        resource_version: str | None = None,
        grace_period_seconds: int | None = None,
    ) -> None:
        self._before("delete", kind.KIND.plural)
        self.inner.delete(kind, name, namespace, resource_version, grace_period_seconds)

    def watch(
        self,
        kind: type[R],
        resource_version: str,
        namespace: str | None = None,
        label_selector: str | None = None,
        timeout_seconds: float | None = None,
    ) -> Iterator[WatchEvent[R]]:
        self._before("watch", kind.KIND.plural)
        return self.inner.watch(kind, resource_version, namespace, label_selector, timeout_seconds)

    def close(self) -> None:
        self.inner.close()


class CountingStore(DelegatingStore):
    """Counts requests by (verb, plural)."""

    def __init__(self, inner: Store):
        super().__init__(inner)
        self._lock = threading.Lock()
        self._calls: collections.Counter[tuple[str, str]] = collections.Counter()

    def _before(self, verb: str, kind: str) -> None:
        with self._lock:
            self._calls[(verb, kind)] += 1

    def calls(self) -> collections.Counter[tuple[str, str]]:
        """A snapshot of the counts so far."""
        with self._lock:
            return collections.Counter(self._calls)


class FailingStore(DelegatingStore):
    """Raises ``error()`` for the first ``times`` requests of ``verb`` on ``kind`` (the plural;
    "*" for any), then lets them through."""

    def __init__(
        self, inner: Store, verb: str, kind: str, times: int, error: Callable[[], StoreError]
    ):
        super().__init__(inner)
        self.verb, self.kind, self.error = verb, kind, error
        self._lock = threading.Lock()
        self.left = times

    def _before(self, verb: str, kind: str) -> None:
        if verb != self.verb or self.kind not in ("*", kind):
            return
        with self._lock:
            if self.left <= 0:
                return
            self.left -= 1
        raise self.error()
