"""The speaker's end of ExaBGP's API: a unix socket the relay (hybridnet.bgp.relay) connects
to, and the connection it makes.

The listener accepts in a thread; a connection introduces itself (``relay <ExaBGP PID>``)
and is handed to ``on_connection``. Each connection's lines are read by a thread of its own,
always, and handed to ``on_line``; its end is reported to ``on_closed``. Writing happens on
the caller's thread, within a time bound: an ExaBGP that stops reading its commands (hung,
stopped) fills the relay's pipe and then this socket, and a plain blocking write would wait
for it forever.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
import select
import socket
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path

from hybridnet.logs import fields

log = logging.getLogger(__name__)

MAX_UNIX_PATH = 107
"""sun_path holds 108 bytes with the terminating NUL."""
HELLO_TIMEOUT = 5.0
"""How long a new connection has to say which ExaBGP it belongs to."""

_ids = itertools.count(1)


class ApiConnection:
    def __init__(self, sock: socket.socket, exabgp_pid: int):
        self.id = next(_ids)
        self.exabgp_pid = exabgp_pid
        self._sock = sock
        self._reader: threading.Thread | None = None

    def start_reading(
        self, on_line: Callable[[int, str], None], on_closed: Callable[[int], None]
    ) -> None:
        self._reader = threading.Thread(
            target=self._read, args=(on_line, on_closed), name=f"exabgp-api-{self.id}", daemon=True
        )
        self._reader.start()

    def _read(self, on_line: Callable[[int, str], None], on_closed: Callable[[int], None]) -> None:
        try:
            with self._sock.makefile("rb") as stream:
                for raw in stream:
                    on_line(self.id, raw.decode(errors="replace").rstrip("\r\n"))
        except (OSError, ValueError):
            pass  # closed under us by close()
        finally:
            on_closed(self.id)

    def send(self, lines: Iterable[str], timeout: float) -> None:
        """Write command lines: TimeoutError when they are not all taken within ``timeout``
        seconds (the other side has stopped reading), another OSError when the relay has
        gone. The socket stays blocking for the reader thread; only these writes are bounded
        (poll, then a send that does not wait)."""
        data = memoryview("".join(f"{line}\n" for line in lines).encode())
        total = len(data)
        deadline = time.monotonic() + timeout
        writable = select.poll()
        writable.register(self._sock, select.POLLOUT)
        while data:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not writable.poll(remaining * 1000):
                raise TimeoutError(
                    f"ExaBGP's API did not take our commands within {timeout:g}s "
                    f"({len(data)} of {total} bytes unwritten)"
                )
            try:
                data = data[self._sock.send(data, socket.MSG_DONTWAIT) :]
            except BlockingIOError:
                continue  # a spurious wake-up: poll again

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._sock.shutdown(socket.SHUT_RDWR)
        self._sock.close()


class ApiListener:
    def __init__(self, path: Path, on_connection: Callable[[ApiConnection], None]):
        if len(os.fsencode(path)) > MAX_UNIX_PATH:
            raise OSError(f"socket path {path} is longer than {MAX_UNIX_PATH} bytes")
        path.unlink(missing_ok=True)
        self.path = path
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._sock.bind(str(path))
        os.chmod(path, 0o600)
        self._sock.listen(4)
        self._closed = False
        self._on_connection = on_connection
        self._thread = threading.Thread(target=self._accept, name="exabgp-api-accept", daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while True:
            try:
                sock, _ = self._sock.accept()
            except OSError:
                if self._closed:
                    return
                log.exception("accepting ExaBGP's API connection failed")
                continue
            connection = self._introduce(sock)
            if connection is not None:
                self._on_connection(connection)

    def _introduce(self, sock: socket.socket) -> ApiConnection | None:
        try:
            sock.settimeout(HELLO_TIMEOUT)
            hello = b""
            while not hello.endswith(b"\n") and len(hello) < 64:
                chunk = sock.recv(1)
                if not chunk:
                    break
                hello += chunk
            sock.settimeout(None)
            word, _, pid = hello.decode(errors="replace").strip().partition(" ")
            if word != "relay" or not pid.isdigit():
                raise ValueError(f"unexpected greeting {hello!r}")
        except (OSError, ValueError) as exc:
            log.warning(
                "dropped an API connection that did not introduce itself",
                extra=fields(error=str(exc)),
            )
            sock.close()
            return None
        return ApiConnection(sock, int(pid))

    def close(self) -> None:
        self._closed = True
        with contextlib.suppress(OSError):
            self._sock.shutdown(socket.SHUT_RDWR)
        self._sock.close()
        self._thread.join(timeout=5.0)
        self.path.unlink(missing_ok=True)
