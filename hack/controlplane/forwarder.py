"""Reach from a network namespace: a listening socket made inside it, relayed to our loopback.

The API server listens on 127.0.0.1 of our own namespace; daemons in node namespaces reach it at
the lab's gateway address through a :class:`Forwarder` whose listening socket lives in the
gateway namespace. The root namespace is not changed.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import select
import socket
import threading
from pathlib import Path

from hack.controlplane.errors import ControlPlaneError

CLONE_NEWNET = 0x40000000


def _setns(fd: int) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.setns(fd, CLONE_NEWNET) != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"setns: {os.strerror(errno)}")


def listen_in_namespace(netns: str, address: str, port: int = 0) -> socket.socket:
    """A listening TCP socket created inside network namespace ``netns``.

    ``netns`` is a name under ``/run/netns`` or a path to a namespace file. ``setns`` moves only
    the calling thread, so a short-lived thread enters the namespace, makes and binds the socket
    (which keeps the namespace it was created in), and switches back; nothing else of the
    process, and nothing in the root namespace, changes.
    """
    path = netns if "/" in netns else f"/run/netns/{netns}"
    if not Path(path).exists():
        raise ControlPlaneError(f"no network namespace at {path}")
    made: list[socket.socket] = []
    failed: list[BaseException] = []

    def enter_and_listen() -> None:
        try:
            own = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
            try:
                target = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
                try:
                    _setns(target)
                finally:
                    os.close(target)
                try:
                    family = socket.AF_INET6 if ":" in address else socket.AF_INET
                    listener = socket.socket(family, socket.SOCK_STREAM)
                    try:
                        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                        listener.bind((address, port))
                        listener.listen(128)
                    except BaseException:
                        listener.close()
                        raise
                    made.append(listener)
                finally:
                    # If even this failed, the thread ends here and takes the namespace along.
                    _setns(own)
            finally:
                os.close(own)
        except BaseException as exc:  # handed to the caller's thread below
            failed.append(exc)

    worker = threading.Thread(target=enter_and_listen, name=f"setns-{netns}")
    worker.start()
    worker.join()
    if failed:
        for listener in made:
            listener.close()
        raise ControlPlaneError(
            f"cannot listen on {address}:{port} in namespace {netns}: {failed[0]}"
        ) from failed[0]
    return made[0]


class Forwarder:
    """Relays every connection accepted on ``listener`` to ``target`` (from our own namespace).

    Threads: one accepts, one per connection copies bytes both ways (half-closes are passed on).
    :meth:`close` wakes all of them through a pipe and closes every socket.
    """

    def __init__(self, listener: socket.socket, target: tuple[str, int]) -> None:
        self.listener = listener
        self.target = target
        # A socket pair rather than a pipe: select() then sees sockets only.
        self._wake_read, self._wake_write = socket.socketpair()
        self._closed = False
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        host, port = listener.getsockname()[:2]
        self.address: tuple[str, int] = (host, port)
        self._acceptor = threading.Thread(
            target=self._accept_loop, name=f"forward-{host}:{port}", daemon=True
        )
        self._acceptor.start()

    def _accept_loop(self) -> None:
        while True:
            ready, _, _ = select.select([self.listener, self._wake_read], [], [])
            if self._wake_read in ready:
                return
            try:
                conn, _ = self.listener.accept()
            except OSError:
                continue
            relay = threading.Thread(target=self._relay, args=(conn,), daemon=True)
            with self._lock:
                if self._closed:
                    conn.close()
                    return
                self._threads = [t for t in self._threads if t.is_alive()]
                self._threads.append(relay)
            relay.start()

    def _relay(self, conn: socket.socket) -> None:
        with conn:
            try:
                upstream = socket.create_connection(self.target, timeout=10)
            except OSError:
                return
            with upstream:
                upstream.settimeout(None)
                peers = {conn: upstream, upstream: conn}
                reading = [conn, upstream]
                try:
                    while reading:
                        ready, _, _ = select.select([*reading, self._wake_read], [], [])
                        if self._wake_read in ready:
                            return
                        for source in ready:
                            data = source.recv(65536)
                            if data:
                                peers[source].sendall(data)
                            else:
                                reading.remove(source)
                                with contextlib.suppress(OSError):
                                    peers[source].shutdown(socket.SHUT_WR)
                except OSError:
                    return

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            threads = [*self._threads, self._acceptor]
        self._wake_write.send(b"x")
        for thread in threads:
            thread.join(5)
        self.listener.close()
        self._wake_read.close()
        self._wake_write.close()
