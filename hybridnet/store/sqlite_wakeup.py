"""Wake the embedded store's watchers after each commit, so that they never poll.

In one process, a condition variable with a generation counter: a writer bumps it after its
commit and wakes every waiting watcher. Across processes sharing the file (the daemon, the
manager, a CLI), a store that watches binds a unix datagram socket in a directory next to the
database, and every writer sends one byte to each socket there after it commits; the store's
listener thread turns a datagram into a bump of its own counter. Pathname sockets live in the
filesystem, not in a network namespace, so a daemon inside a node's namespace and a CLI in the
host's reach each other (abstract sockets would not). A socket whose owner is gone refuses the
datagram (ECONNREFUSED), and the writer that finds it removes it.

The notification is best-effort by nature (a writer of an older version or without permission
on the directory never sends one), so watchers still re-check the file now and then; see
``SQLiteStore``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import selectors
import socket
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

from hybridnet.logs import fields

log = logging.getLogger(__name__)

_MAX_SOCKET_PATH = 107
"""sun_path holds 108 bytes with the terminating NUL; longer paths go through /proc/self/fd."""


class CommitNotifier:
    """Generation counter + condition for this process, datagrams for the others."""

    def __init__(self, directory: Path):
        self.directory = directory
        self._condition = threading.Condition()
        self._generation = 0
        self._waiting = 0
        self._closed = False
        self._listener: _Listener | None = None
        self._listen_failed = False
        self._sender: socket.socket | None = None

    @property
    def generation(self) -> int:
        """Read before looking at the file; pass to :meth:`wait` after finding nothing new."""
        with self._condition:
            return self._generation

    @property
    def waiting(self) -> int:
        """How many watchers are blocked in :meth:`wait` right now."""
        with self._condition:
            return self._waiting

    @property
    def listening_path(self) -> Path | None:
        """This process's socket, once a watch has started listening."""
        return None if self._listener is None else self._listener.path

    def listen(self) -> None:
        """Hear other processes' commits from now on. Idempotent and cheap, so watchers call
        it at every look: a listener that stopped working (its socket file removed, e.g. by
        a cleanup of the directory, or its thread ended by an error) is replaced. A failure
        is logged once and leaves the watchers to their periodic re-check until a later call
        succeeds."""
        with self._condition:
            if self._closed:
                return
            lost = (
                self._listener
                if self._listener is not None and not self._listener.working()
                else None
            )
            if self._listener is not None and lost is None:
                return
            self._listener = None
            if lost is not None:
                log.warning(
                    "wake-up socket lost; listening again",
                    extra=fields(directory=str(self.directory), path=str(lost.path)),
                )
            try:
                self._listener = _Listener(self.directory, self._bump)
            except (OSError, RuntimeError) as exc:
                if not self._listen_failed:
                    log.warning(
                        "cannot listen for other processes' writes; watchers will only re-check",
                        extra=fields(directory=str(self.directory), reason=str(exc)),
                    )
                self._listen_failed = True
            else:
                self._listen_failed = False
        if lost is not None:
            lost.close()

    def committed(self) -> None:
        """After a commit: wake this process's watchers and tell every other listener."""
        self._bump()
        self._tell_others()

    def wait(self, seen: int, timeout: float | None) -> None:
        """Block until the generation differs from ``seen``, the notifier closes, or
        ``timeout`` passes."""
        with self._condition:
            self._waiting += 1
            try:
                self._condition.wait_for(lambda: self._generation != seen or self._closed, timeout)
            finally:
                self._waiting -= 1

    def close(self) -> None:
        """Wake every waiter for good and remove this process's socket."""
        with self._condition:
            self._closed = True
            self._condition.notify_all()
            listener, self._listener = self._listener, None
            sender, self._sender = self._sender, None
        if listener is not None:
            listener.close()
        if sender is not None:
            sender.close()

    # ----------------------------------------------------------------- internals

    def _bump(self) -> None:
        with self._condition:
            self._generation += 1
            self._condition.notify_all()

    def _tell_others(self) -> None:
        try:
            names = os.listdir(self.directory)
        except FileNotFoundError:
            return  # nobody has ever watched this file
        except OSError as exc:
            log.debug("cannot list watchers", extra=fields(reason=str(exc)))
            return
        own = self.listening_path
        sender = self._sending_socket()
        if sender is None:
            return
        with _addresses(self.directory) as address:
            for name in names:
                if own is not None and name == own.name:
                    continue
                try:
                    sender.sendto(b"\x01", address(name))
                except ConnectionRefusedError:  # its owner is gone
                    with contextlib.suppress(FileNotFoundError):
                        (self.directory / name).unlink()
                except (BlockingIOError, FileNotFoundError):
                    pass  # its queue is full (it is woken already), or it just went away
                except OSError as exc:
                    log.debug("cannot wake a watcher", extra=fields(name=name, reason=str(exc)))

    def _sending_socket(self) -> socket.socket | None:
        with self._condition:
            if self._closed:
                return None
            if self._sender is None:
                self._sender = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
                self._sender.setblocking(False)
            return self._sender


class _Listener:
    """One bound datagram socket and the thread that turns its datagrams into wake-ups."""

    def __init__(self, directory: Path, on_datagram: Callable[[], None]):
        directory.mkdir(exist_ok=True)
        self.path = directory / f"{os.getpid()}-{secrets.token_hex(4)}"
        self._on_datagram = on_datagram
        self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._stop_reader, self._stop_writer = socket.socketpair()
        self._thread = threading.Thread(target=self._run, name="sqlite-wakeup", daemon=True)
        try:
            with _addresses(directory) as address:
                self._socket.bind(address(self.path.name))
            self._socket.setblocking(False)
            self._thread.start()
        except (OSError, RuntimeError):  # RuntimeError: no thread could be started
            self._close_sockets()
            with contextlib.suppress(FileNotFoundError):
                self.path.unlink()
            raise

    def _run(self) -> None:
        try:
            with selectors.DefaultSelector() as selector:
                selector.register(self._socket, selectors.EVENT_READ)
                selector.register(self._stop_reader, selectors.EVENT_READ)
                while True:
                    ready = {key.fileobj for key, _ in selector.select()}
                    if self._stop_reader in ready:
                        return
                    self._drain()
                    self._on_datagram()
        except OSError as exc:  # watchers fall back to their periodic re-check
            log.warning("stopped listening for writes", extra=fields(reason=str(exc)))

    def _drain(self) -> None:
        """Many commits may have rung while the thread was busy: one wake-up covers them."""
        with contextlib.suppress(BlockingIOError):
            while True:
                self._socket.recv(16)

    def working(self) -> bool:
        """Whether datagrams can still reach this listener: its thread runs and its socket
        file is still in the directory (writers find listeners by name)."""
        return self._thread.is_alive() and self.path.exists()

    def close(self) -> None:
        self._stop_writer.send(b"\x00")
        self._thread.join()
        self._close_sockets()
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()

    def _close_sockets(self) -> None:
        for each in (self._socket, self._stop_reader, self._stop_writer):
            each.close()


@contextlib.contextmanager
def _addresses(directory: Path) -> Iterator[Callable[[str], str]]:
    """Socket addresses for names in ``directory``: the path itself when it fits in sun_path,
    otherwise the same file reached through an open descriptor of the directory (a store may
    live at any depth; the kernel resolves the descriptor's link like any directory)."""
    descriptor: int | None = None

    def address(name: str) -> str:
        nonlocal descriptor
        path = str(directory / name)
        if len(os.fsencode(path)) <= _MAX_SOCKET_PATH:
            return path
        if descriptor is None:
            descriptor = os.open(directory, os.O_PATH | os.O_DIRECTORY)
        return f"/proc/self/fd/{descriptor}/{name}"

    try:
        yield address
    finally:
        if descriptor is not None:
            os.close(descriptor)
