"""The real hybridnet-daemon, whose store notes every request it makes to the API server.

``python -m tests.cluster.counting_daemon DAEMON-ARGS... --request-log FILE`` runs
``hybridnet-daemon DAEMON-ARGS`` (the flag may stand anywhere) with its store wrapped: every
call (each is one HTTP request of the Kubernetes store; a watch is one long-running request)
appends a line ``THREAD VERB KIND`` to FILE, written through at once. The thread tells who
asked: the informers run in ``informer-<plural>`` threads, CNI calls in the gRPC server's
workers. Nothing else changes.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from hybridnet.daemon import main as daemon_main
from hybridnet.store.interface import ListResult, R, Store, WatchEvent


class CountingStore(Store):
    def __init__(self, inner: Store, log_path: Path):
        self.inner = inner
        self._log = log_path.open("a", buffering=1)  # line-buffered: readable at once
        self._lock = threading.Lock()

    def _note(self, verb: str, kind: type[Any]) -> None:
        with self._lock:
            self._log.write(f"{threading.current_thread().name}\t{verb}\t{kind.KIND.kind}\n")

    def get(self, kind: type[R], name: str, namespace: str | None = None) -> R:
        self._note("get", kind)
        return self.inner.get(kind, name, namespace)

    def list(
        self, kind: type[R], namespace: str | None = None, label_selector: str | None = None
    ) -> ListResult[R]:
        self._note("list", kind)
        return self.inner.list(kind, namespace, label_selector)

    def create(self, obj: R) -> R:
        self._note("create", type(obj))
        return self.inner.create(obj)

    def update(self, obj: R) -> R:
        self._note("update", type(obj))
        return self.inner.update(obj)

    def update_status(self, obj: R) -> R:
        self._note("update_status", type(obj))
        return self.inner.update_status(obj)

    def delete(
        self,
        kind: type[R],
        name: str,
        namespace: str | None = None,
        resource_version: str | None = None,
        grace_period_seconds: int | None = None,
    ) -> None:
        self._note("delete", kind)
        self.inner.delete(kind, name, namespace, resource_version, grace_period_seconds)

    def watch(
        self,
        kind: type[R],
        resource_version: str,
        namespace: str | None = None,
        label_selector: str | None = None,
        timeout_seconds: float | None = None,
    ) -> Iterator[WatchEvent[R]]:
        self._note("watch", kind)
        return self.inner.watch(kind, resource_version, namespace, label_selector, timeout_seconds)

    def close(self) -> None:
        self.inner.close()
        self._log.close()


def main(argv: Sequence[str]) -> int:
    daemon_args = list(argv)
    if "--request-log" not in daemon_args[:-1]:
        raise SystemExit("usage: counting_daemon DAEMON-ARGS... --request-log FILE")
    at = daemon_args.index("--request-log")
    log_path = Path(daemon_args[at + 1])
    del daemon_args[at : at + 2]
    open_store = daemon_main.open_store

    def counting(args: Any) -> Store:
        return CountingStore(open_store(args), log_path)

    daemon_main.open_store = counting
    return daemon_main.main(daemon_args)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
