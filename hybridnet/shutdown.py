"""SIGTERM and SIGINT turned into a ``threading.Event`` without touching it in the handler.

A handler that calls ``Event.set()`` can deadlock: Python runs it in the main thread between two
bytecodes, and if those are inside ``Event.wait()`` while it holds the Event's own
(non-reentrant) lock, ``set()`` waits for that lock forever. A manager told to stop hung so,
never logging "stopping". Here the handler only stores the signal's number, and a watcher thread
sets the Event; and the main thread waits in short steps (:func:`wait_for`), so that it also
runs a handler whose signal the kernel gave another thread while the main one was blocked.
"""

from __future__ import annotations

import signal
import threading
from types import FrameType

POLL_SECONDS = 0.1


def set_on_signal(
    event: threading.Event,
    signals: tuple[signal.Signals, ...] = (signal.SIGTERM, signal.SIGINT),
    poll: float = POLL_SECONDS,
) -> None:
    """Set ``event`` soon after one of ``signals`` arrives (install from the main thread)."""
    received: list[int] = []

    def handle(signum: int, frame: FrameType | None) -> None:
        received.append(signum)  # no lock taken here, see the module docstring

    def watch() -> None:
        while not received and not event.wait(poll):
            pass
        event.set()

    for signum in signals:
        signal.signal(signum, handle)
    threading.Thread(target=watch, name="stop-signals", daemon=True).start()


def wait_for(event: threading.Event, poll: float = POLL_SECONDS) -> None:
    """The main thread's wait for ``event``: in steps of ``poll`` seconds, never one blocking
    call that a signal might not interrupt."""
    while not event.wait(poll):
        pass
