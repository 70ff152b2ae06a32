"""A keyed work queue: a key waits at most once, and is never worked on by two threads at once.

Handlers are level-based (they look at the current state of the key, not at the event), so
coalescing many events for one pod into one pass is correct and cheaper.
"""

from __future__ import annotations

import threading
import time
from collections import deque


class WorkQueue:
    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._queue: deque[str] = deque()
        self._waiting: set[str] = set()
        self._active: set[str] = set()
        self._again: set[str] = set()
        self._timers: list[threading.Timer] = []
        self._closed = False

    def add(self, key: str) -> None:
        with self._cond:
            if self._closed:
                return
            if key in self._active:
                self._again.add(key)  # re-run after the current pass finishes
            elif key not in self._waiting:
                self._waiting.add(key)
                self._queue.append(key)
                self._cond.notify()

    def add_after(self, key: str, delay: float) -> None:
        timer = threading.Timer(delay, self.add, args=(key,))
        timer.daemon = True
        with self._cond:
            self._timers = [t for t in self._timers if t.is_alive()]
            self._timers.append(timer)
        timer.start()

    def get(self, timeout: float | None = None) -> str | None:
        """The next key to work on (None when closed or on timeout); call done() after."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while not self._queue:
                if self._closed:
                    return None
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return None
                self._cond.wait(remaining)
            key = self._queue.popleft()
            self._waiting.discard(key)
            self._active.add(key)
            return key

    def done(self, key: str) -> None:
        with self._cond:
            self._active.discard(key)
            if key in self._again:
                self._again.discard(key)
                self._waiting.add(key)
                self._queue.append(key)
                self._cond.notify()

    def __len__(self) -> int:
        with self._cond:
            return len(self._queue) + len(self._active)

    def close(self) -> None:
        with self._cond:
            self._closed = True
            for timer in self._timers:
                timer.cancel()
            self._cond.notify_all()
