"""The processes the lab starts: commands run to completion, and long-lived children.

Either kind may run inside a network namespace (``ip netns exec NS ...``). The lab's namespaces,
the daemons in them and the control plane's etcd and kube-apiserver are all started as a
:class:`Process`, so there is one way to start, watch and end a child: by its own process group,
never by name.
"""

from __future__ import annotations

import contextlib
import os
import re
import select
import signal
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path
from typing import IO

from hybridnet.lab.errors import TestbedError


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
        self._buffer = b""
        self.output_lines: list[str] = []

    @property
    def pid(self) -> int:
        return self._popen.pid

    def poll(self) -> int | None:
        return self._popen.poll()

    def wait_for_line(self, pattern: str, timeout: float = 10.0) -> str:
        """Block until a line of output matches ``pattern`` and return it."""
        regex = re.compile(pattern)
        for seen in self.output_lines:
            if regex.search(seen):
                return seen
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            line = self._read_line(deadline - time.monotonic())
            if line is None:
                if self.poll() is not None:
                    break
                continue
            if regex.search(line):
                return line
        raise TestbedError(
            f"no output matching {pattern!r} within {timeout}s from {' '.join(self.argv)}; "
            f"exit={self.poll()} output:\n" + "\n".join(self.output_lines[-40:])
        )

    def _output(self) -> IO[bytes]:
        if self._popen.stdout is None:
            raise TestbedError(f"{' '.join(self.argv)} writes its output to {self.log_path}")
        return self._popen.stdout

    def _read_line(self, timeout: float) -> str | None:
        stream = self._output()
        while b"\n" not in self._buffer:
            ready, _, _ = select.select([stream], [], [], max(timeout, 0))
            if not ready:
                return None
            chunk = os.read(stream.fileno(), 65536)
            if not chunk:
                if not self._buffer:
                    return None
                self._buffer += b"\n"
                break
            self._buffer += chunk
        raw, self._buffer = self._buffer.split(b"\n", 1)
        line = raw.decode(errors="replace")
        self.output_lines.append(line)
        return line

    def read_remaining(self) -> str:
        """Drain whatever the (finished) process printed and return all of its output."""
        while self._read_line(0.05) is not None:
            pass
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
