"""A task the manager repeats every few seconds on a daemon thread (status counters, node
labels), stopped within a time budget."""

from __future__ import annotations

import threading
from collections.abc import Callable


class Periodic:
    """Calls ``tick`` every ``interval`` seconds, first right away or after one interval."""

    def __init__(
        self, name: str, interval: float, tick: Callable[[], None], *, tick_at_start: bool
    ):
        self.name = name
        self.interval = interval
        self._tick = tick
        self._tick_at_start = tick_at_start
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> bool:
        """Stop ticking; True once the thread has finished (False: a tick still runs after
        ``timeout``, and the daemon thread ends with the process)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=timeout)
            return not self._thread.is_alive()
        return True

    def _run(self) -> None:
        if not self._tick_at_start and self._stop.wait(self.interval):
            return
        while True:
            self._tick()
            if self._stop.wait(self.interval):
                return
