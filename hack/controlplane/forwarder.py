"""Reach from a network namespace: a listening socket made inside it, relayed to our loopback.

The API server listens on 127.0.0.1 of our own namespace; daemons in node namespaces reach it at
the lab's gateway address through a :class:`Forwarder` whose listening socket lives in the
gateway namespace. The root namespace is not changed.
"""

from __future__ import annotations

import abc
import contextlib
import ctypes
import os
import select
import socket
import threading
from collections.abc import Callable
from pathlib import Path

from hack.controlplane.errors import ControlPlaneError

CLONE_NEWNET = 0x40000000


def _setns(fd: int) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.setns(fd, CLONE_NEWNET) != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"setns: {os.strerror(errno)}")


def socket_in_namespace(
    netns: str, make: Callable[[], socket.socket], what: str = "a socket"
) -> socket.socket:
    """The socket ``make()`` returns, made inside network namespace ``netns`` (a name under
    ``/run/netns`` or a path to a namespace file).

    ``setns`` moves only the calling thread, so a short-lived thread enters the namespace, makes
    the socket (which keeps the namespace it was created in), and switches back; nothing else of
    the process, and nothing in the root namespace, changes.
    """
    path = netns if "/" in netns else f"/run/netns/{netns}"
    if not Path(path).exists():
        raise ControlPlaneError(f"no network namespace at {path}")
    made: list[socket.socket] = []
    failed: list[BaseException] = []

    def enter_and_make() -> None:
        try:
            own = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
            try:
                target = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
                try:
                    _setns(target)
                finally:
                    os.close(target)
                try:
                    made.append(make())
                finally:
                    # If even this failed, the thread ends here and takes the namespace along.
                    _setns(own)
            finally:
                os.close(own)
        except BaseException as exc:  # handed to the caller's thread below
            failed.append(exc)

    worker = threading.Thread(target=enter_and_make, name=f"setns-{netns}")
    worker.start()
    worker.join()
    if failed:
        for sock in made:
            sock.close()
        raise ControlPlaneError(f"cannot make {what} in namespace {netns}: {failed[0]}") from (
            failed[0]
        )
    return made[0]


def listen_in_namespace(netns: str, address: str, port: int = 0) -> socket.socket:
    """A listening TCP socket created inside network namespace ``netns``."""

    def listen() -> socket.socket:
        family = socket.AF_INET6 if ":" in address else socket.AF_INET
        listener = socket.socket(family, socket.SOCK_STREAM)
        try:
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            listener.bind((address, port))
            listener.listen(128)
        except BaseException:
            listener.close()
            raise
        return listener

    return socket_in_namespace(netns, listen, f"a listener on {address}:{port}")


def pump(a: socket.socket, b: socket.socket, wake: socket.socket) -> None:
    """Copy bytes both ways between ``a`` and ``b`` until both have ended (half-closes are
    passed on) or ``wake`` becomes readable. OSError when a socket fails."""
    peers = {a: b, b: a}
    reading = [a, b]
    while reading:
        ready, _, _ = select.select([*reading, wake], [], [])
        if wake in ready:
            return
        for source in ready:
            data = source.recv(65536)
            if data:
                peers[source].sendall(data)
            else:
                reading.remove(source)
                with contextlib.suppress(OSError):
                    peers[source].shutdown(socket.SHUT_WR)


class RelayServer(abc.ABC):
    """Accepts on ``listener`` and serves each connection in a thread of its own (``serve``).

    :meth:`close` wakes every thread through a socket pair (``self.wake``: give it to
    :func:`pump`), waits for them and closes the listener.
    """

    def __init__(self, listener: socket.socket, name: str) -> None:
        self.listener = listener
        # A socket pair rather than a pipe: select() then sees sockets only.
        self.wake, self._wake_write = socket.socketpair()
        self._closed = False
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self._acceptor = threading.Thread(target=self._accept_loop, name=name, daemon=True)
        self._acceptor.start()

    @abc.abstractmethod
    def serve(self, conn: socket.socket) -> None:
        """Serve one accepted connection (in its own thread); close it when done."""

    def _accept_loop(self) -> None:
        while True:
            ready, _, _ = select.select([self.listener, self.wake], [], [])
            if self.wake in ready:
                return
            try:
                conn, _ = self.listener.accept()
            except OSError:
                continue
            worker = threading.Thread(target=self.serve, args=(conn,), daemon=True)
            with self._lock:
                if self._closed:
                    conn.close()
                    return
                self._threads = [t for t in self._threads if t.is_alive()]
                self._threads.append(worker)
            worker.start()

    def close(self) -> None:
        """Stop accepting and end every connection; twice is fine."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            threads = [*self._threads, self._acceptor]
        self._wake_write.send(b"x")
        for thread in threads:
            thread.join(5)
        self.listener.close()
        self.wake.close()
        self._wake_write.close()


class Forwarder(RelayServer):
    """Relays every connection accepted on ``listener`` to ``target`` (from our own namespace).

    Threads: one accepts, one per connection copies bytes both ways (half-closes are passed on).
    """

    def __init__(self, listener: socket.socket, target: tuple[str, int]) -> None:
        self.target = target
        host, port = listener.getsockname()[:2]
        self.address: tuple[str, int] = (host, port)
        super().__init__(listener, f"forward-{host}:{port}")

    def serve(self, conn: socket.socket) -> None:
        with conn:
            try:
                upstream = socket.create_connection(self.target, timeout=10)
            except OSError:
                return
            with upstream:
                upstream.settimeout(None)
                with contextlib.suppress(OSError):
                    pump(conn, upstream, self.wake)
