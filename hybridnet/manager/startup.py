"""Start-up steps that outlast a store which is not ready yet, and stop at one that never will be.

Right after an API server (re)starts it answers 429 ("storage is (re)initializing") or 5xx for
a while, and a manager started with it must wait that out instead of exiting. The store maps
those, and a connection refused, to ``Unavailable``: such a step is retried with backoff, each
failure logged. Anything else (Forbidden: RBAC; NotFound: a CRD not installed; Invalid) will
not heal by waiting, so the step fails at once with an error that names it.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import TypeVar

from hybridnet.logs import fields
from hybridnet.store.errors import NotFound, StoreError, Unavailable
from hybridnet.store.informer import Backoff

log = logging.getLogger(__name__)

T = TypeVar("T")

STARTUP_BACKOFF = Backoff(initial=0.5, maximum=10.0)


class StartupFailed(Exception):
    """A start-up step met an error that waiting does not cure."""

    def __init__(self, step: str, error: StoreError):
        super().__init__(f"{step}: {describe(error)}")
        self.step = step
        self.error = error


class StartupAborted(Exception):
    """Asked to stop while a start-up step was still waiting for the store."""


def is_transient(error: StoreError) -> bool:
    return isinstance(error, Unavailable)


def describe(error: StoreError) -> str:
    """The error with its type, and what a missing resource most likely means."""
    text = f"{type(error).__name__}: {error}"
    if isinstance(error, NotFound):
        text += " (is the CRD installed?)"
    return text


def retry_transient(
    step: str,
    action: Callable[[], T],
    stopping: threading.Event,
    backoff: Backoff | None = None,
) -> T:
    """``action()``, again after a backoff while it fails with a transient store error.

    Raises StartupFailed on any other store error, StartupAborted when ``stopping`` is set
    while waiting to try again."""
    delays = (backoff or STARTUP_BACKOFF).delays()
    attempt = 1
    while True:
        try:
            return action()
        except StoreError as exc:
            if not is_transient(exc):
                raise StartupFailed(step, exc) from exc
            delay = next(delays)
            log.warning(
                "start-up step failed, retrying",
                extra=fields(
                    step=step, attempt=attempt, delay_seconds=round(delay, 2), error=str(exc)
                ),
            )
            if stopping.wait(delay):
                raise StartupAborted(step) from exc
            attempt += 1
