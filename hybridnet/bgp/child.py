"""One run of ExaBGP as our child process: started, its output logged, ended by its PID.

ExaBGP's output (stdout and stderr together: its log and any traceback) is read all the time
by a thread and written into our log as structured lines, so its pipe never fills; when the
process ends, ``on_exit`` is called with its exit code from another thread.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import os
import signal
import subprocess
import threading
from collections.abc import Callable, Sequence
from typing import IO

from hybridnet.logs import fields

log = logging.getLogger(__name__)

TAIL_LINES = 20
"""Lines of output kept to explain an exit."""


class ExaBGPChild:
    def __init__(
        self,
        argv: Sequence[str],
        *,
        env: dict[str, str],
        cwd: str,
        log_level: int,
        on_exit: Callable[[int], None],
    ):
        self.argv = list(argv)
        self._log_level = log_level
        self.tail: collections.deque[str] = collections.deque(maxlen=TAIL_LINES)
        # A session of its own: a signal sent to our process group (Ctrl-C on a terminal)
        # does not reach it; we end it ourselves, by PID.
        self._popen = subprocess.Popen(
            self.argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=cwd,
            start_new_session=True,
        )
        self.pid = self._popen.pid
        self._signal_lock = threading.Lock()
        self._exited = False
        self._pump = threading.Thread(
            target=self._read_output,
            args=(self._popen.stdout,),
            name=f"exabgp-log-{self.pid}",
            daemon=True,
        )
        self._pump.start()
        self._waiter = threading.Thread(
            target=self._wait, args=(on_exit,), name=f"exabgp-wait-{self.pid}", daemon=True
        )
        self._waiter.start()

    def _read_output(self, stream: IO[bytes] | None) -> None:
        if stream is None:
            return
        with stream:
            for raw in iter(stream.readline, b""):
                line = raw.decode(errors="replace").rstrip()
                if not line:
                    continue
                self.tail.append(line)
                source, _, message = line.partition(" ")
                log.log(
                    self._log_level,
                    "exabgp: " + message.strip(),
                    extra=fields(exabgp_pid=self.pid, exabgp_source=source),
                )

    def _wait(self, on_exit: Callable[[int], None]) -> None:
        # Wait without reaping first (WNOWAIT): until it is reaped the PID stays this
        # zombie's, so a signal sent before the flag below is set cannot reach another
        # process that was given the same PID.
        with contextlib.suppress(ChildProcessError):
            os.waitid(os.P_PID, self.pid, os.WEXITED | os.WNOWAIT)
        with self._signal_lock:
            self._exited = True
        code = self._popen.wait()
        self._pump.join(timeout=2.0)  # its last lines first, so an exit report can show them
        on_exit(code)

    def running(self) -> bool:
        with self._signal_lock:
            return not self._exited

    def signal(self, signum: int) -> None:
        """Send ``signum`` to ExaBGP (by PID); nothing once it has exited."""
        with self._signal_lock:
            if not self._exited:
                os.kill(self.pid, signum)

    def stop(self, timeout: float) -> int:
        """SIGTERM (ExaBGP closes sessions that negotiated graceful restart without a
        NOTIFICATION, so the fabric keeps their routes), SIGKILL if it lingers; the exit code."""
        self.signal(signal.SIGTERM)
        try:
            return self._popen.wait(timeout)
        except subprocess.TimeoutExpired:
            log.warning(
                "ExaBGP did not stop on SIGTERM, killing it", extra=fields(exabgp_pid=self.pid)
            )
            self.signal(signal.SIGKILL)
            return self._popen.wait(timeout)

    def join(self, timeout: float) -> None:
        self._waiter.join(timeout)
