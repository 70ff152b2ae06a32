"""The processes the lab starts: commands run to completion, and long-lived children.

Either kind may run inside a network namespace (``ip netns exec NS ...``). The lab's namespaces,
the daemons in them and the control plane's etcd and kube-apiserver are all started as a
:class:`Process`, so there is one way to start, watch and end a child: by its own process group,
never by name.
"""

from __future__ import annotations

import collections
import contextlib
import os
import re
import signal
import subprocess
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import IO

from hybridnet.lab.errors import TestbedError

OUTPUT_LINES_KEPT = 20_000
"""Lines of a child's output kept in memory (the oldest go first)."""
OUTPUT_DRAIN_SECONDS = 2.0
"""How long to wait for a finished child's last lines (a grandchild may hold the pipe)."""


def in_namespace(argv: Sequence[str], netns: str | None) -> list[str]:
    """``argv`` run inside network namespace ``netns`` (unchanged when it is None)."""
    return [*(["ip", "netns", "exec", netns] if netns else []), *argv]


def run(
    args: Sequence[str],
    *,
    netns: str | None = None,
    check: bool = True,
    timeout: float = 30.0,
    input_text: str | None = None,
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run a command to completion, inside ``netns`` when given, and capture its output."""
    argv = in_namespace(args, netns)
    try:
        done = subprocess.run(
            argv,
            input=input_text,
            capture_output=True,
            text=True,
            timeout=timeout,
            env=env,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise TestbedError(f"timed out after {timeout}s: {' '.join(argv)}") from exc
    if check and done.returncode != 0:
        raise TestbedError(
            f"exit {done.returncode}: {' '.join(argv)}\n"
            f"stdout: {done.stdout.strip()}\nstderr: {done.stderr.strip()}"
        )
    return done


class Process:
    """A long-lived process we started (in a namespace or not), ended by its own PID only.

    Its output (stdout and stderr together) is read line by line (:meth:`wait_for_line`), or,
    with ``log_path``, appended to that file instead: for servers whose logs are read after the
    fact and may outlive us (:meth:`forget`).
    """

    def __init__(
        self,
        argv: Sequence[str],
        *,
        netns: str | None = None,
        env: dict[str, str] | None = None,
        log_path: Path | None = None,
    ):
        self.argv = in_namespace(argv, netns)
        self.netns = netns
        self.log_path = log_path
        self._log: IO[bytes] | None = log_path.open("ab") if log_path is not None else None
        # A new session makes the process the leader of its own group, so stop() can end it
        # and its children (and nothing else) by that group id; a Ctrl-C in the terminal that
        # started us does not reach it either: we end it ourselves.
        self._popen = subprocess.Popen(
            self.argv,
            stdin=subprocess.DEVNULL,
            stdout=self._log if self._log is not None else subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
        self.output_lines: collections.deque[str] = collections.deque(maxlen=OUTPUT_LINES_KEPT)
        """The latest lines of output (stdout and stderr together)."""
        self._lines = threading.Condition()
        self._read = 0
        self._ended = False
        self._reader: threading.Thread | None = None
        if self._popen.stdout is not None:
            # Read all the time: a pipe nobody empties fills after 64 KiB and then blocks the
            # child in its next write (a daemon logging every reconcile gets there in minutes).
            self._reader = threading.Thread(
                target=self._pump, args=(self._popen.stdout,), name="output", daemon=True
            )
            self._reader.start()

    @property
    def pid(self) -> int:
        return self._popen.pid

    def poll(self) -> int | None:
        return self._popen.poll()

    def _pump(self, stream: IO[bytes]) -> None:
        try:
            for raw in iter(stream.readline, b""):
                with self._lines:
                    self.output_lines.append(raw.decode(errors="replace").rstrip("\n"))
                    self._read += 1
                    self._lines.notify_all()
        except (OSError, ValueError):
            pass  # our end was closed by stop()
        finally:
            with self._lines:
                self._ended = True
                self._lines.notify_all()

    def wait_for_line(self, pattern: str, timeout: float = 10.0) -> str:
        """Block until a line of output matches ``pattern`` and return it (lines printed
        before the call count too)."""
        if self._reader is None:
            raise TestbedError(f"{' '.join(self.argv)} writes its output to {self.log_path}")
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        checked = 0
        with self._lines:
            while True:
                unchecked = min(self._read - checked, len(self.output_lines))
                fresh = list(self.output_lines)[len(self.output_lines) - unchecked :]
                checked = self._read
                for line in fresh:
                    if regex.search(line):
                        return line
                remaining = deadline - time.monotonic()
                if self._ended or remaining <= 0:
                    break
                self._lines.wait(remaining)
            tail = list(self.output_lines)[-40:]
        raise TestbedError(
            f"no output matching {pattern!r} within {timeout}s from {' '.join(self.argv)}; "
            f"exit={self.poll()} output:\n" + "\n".join(tail)
        )

    def read_remaining(self) -> str:
        """All the output kept so far (for a finished process, up to its end)."""
        if self._reader is not None and self._popen.poll() is not None:
            self._reader.join(OUTPUT_DRAIN_SECONDS)
        with self._lines:
            return "\n".join(self.output_lines)

    def stop(self, timeout: float = 5.0) -> int:
        """SIGTERM the process group, SIGKILL it if it lingers; return the exit code."""
        if self._popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self._popen.pid, signal.SIGTERM)
            try:
                self._popen.wait(timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self._popen.pid, signal.SIGKILL)
                self._popen.wait(timeout)
        if self._reader is not None:
            self._reader.join(OUTPUT_DRAIN_SECONDS)  # the rest of what it printed
        self._close_output()
        return self._popen.returncode

    def forget(self) -> None:
        """Leave the process running after we exit: only close our end of its log file."""
        if self._log is None:
            raise TestbedError(f"{' '.join(self.argv)} would lose its output pipe; log to a file")
        self._close_output()
        # Keep Popen from warning that a process it started is still running.
        self._popen.returncode = 0

    def _close_output(self) -> None:
        for stream in (self._popen.stdout, self._log):
            if stream is not None:
                stream.close()
