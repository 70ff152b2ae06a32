"""Progress of the lab's long steps (building a cluster, waiting for its datapath), for people.

A step is announced when it starts, each item of it when it is done, and the step's duration
when it ends; every line carries the seconds since the first step, so a slow part stands out.
The same events go to the log as structured records (logger ``hybridnet.lab.progress``), which
is what tests see: they pass no stream.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterator
from typing import TextIO

from hybridnet.logs import fields

log = logging.getLogger(__name__)


class Progress:
    """Reports steps and their items; silent on the terminal when ``stream`` is None."""

    def __init__(self, stream: TextIO | None = None):
        self.stream = stream
        self._started = time.monotonic()
        self._step: str | None = None

    def _print(self, text: str) -> None:
        if self.stream is not None:
            elapsed = time.monotonic() - self._started
            print(f"[{elapsed:5.1f}s] {text}", file=self.stream, flush=True)

    @contextlib.contextmanager
    def step(self, title: str) -> Iterator[None]:
        """Announce ``title``, run the block, then say how long it took (or that it failed)."""
        began = time.monotonic()
        self._step = title
        self._print(f"{title} ...")
        log.info("step started", extra=fields(step=title))
        try:
            yield
        except BaseException as exc:
            self._print(f"{title}: FAILED ({type(exc).__name__})")
            log.info("step failed", extra=fields(step=title, error=str(exc)))
            raise
        finally:
            self._step = None
        seconds = time.monotonic() - began
        self._print(f"{title}: done in {seconds:.1f} s")
        log.info("step done", extra=fields(step=title, seconds=round(seconds, 3)))

    def item(self, text: str) -> None:
        """One part of the current step is done."""
        self._print(f"  {text}")
        log.info("step item", extra=fields(step=self._step, item=text))
