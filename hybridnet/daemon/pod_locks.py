"""One lock per pod, made when first needed and dropped when nobody holds or waits for it.

ADD, DEL and GC of one pod must not overlap: a DEL that the runtime sends after an ADD timed
out on its side would otherwise detach while the ADD is still building, or free addresses the
ADD is about to record. Pods are independent of each other, and an ADD may wait many seconds
for its allocation, so the lock is the pod's own (no striping that would make unrelated pods
wait), and the table holds only pods being served right now.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator


class PodLocks:
    def __init__(self) -> None:
        self._guard = threading.Lock()
        self._locks: dict[str, tuple[threading.Lock, int]] = {}

    @contextlib.contextmanager
    def hold(self, owner: str) -> Iterator[None]:
        """Serve ``owner`` (``namespace/name``) alone, for the duration of the block."""
        with self._guard:
            lock, users = self._locks.get(owner, (threading.Lock(), 0))
            self._locks[owner] = (lock, users + 1)
        try:
            with lock:
                yield
        finally:
            with self._guard:
                lock, users = self._locks[owner]
                if users == 1:
                    del self._locks[owner]
                else:
                    self._locks[owner] = (lock, users - 1)

    def users(self, owner: str) -> int:
        """How many calls hold or wait for ``owner``'s lock right now."""
        with self._guard:
            return self._locks.get(owner, (None, 0))[1]

    def __len__(self) -> int:
        """How many pods are being served (or waited for) right now."""
        with self._guard:
            return len(self._locks)
