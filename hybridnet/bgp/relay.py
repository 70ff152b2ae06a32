"""The process ExaBGP spawns for its API: joins ExaBGP's pipes to the speaker's socket.

ExaBGP talks to a child it starts itself (commands arrive on the child's stdout, answers and
events leave on its stdin), so this small child connects to the speaker's unix socket, says
which ExaBGP it belongs to (its parent's PID), and copies bytes both ways. Each direction has
its own thread, so neither side ever waits on the other: ExaBGP blocks when it writes to a
full pipe, and the speaker keeps reading its socket. When either side closes, the relay
exits. When the speaker's side closes (the speaker dropped the connection, or its process
died: a manager killed with -9), the relay first sends ExaBGP SIGTERM: ExaBGP itself does
not stop when its API process ends (its ``api.terminate`` covers only a process that fails
to start), so with stable sessions it would go on announcing for a speaker that is gone.
SIGTERM is its graceful stop: sessions with graceful restart close without a NOTIFICATION,
and the fabric keeps the routes for the next speaker (a restarted ExaBGP, a new leader).

Standard library only, and no import of the package: it starts once per ExaBGP start.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import sys
import threading

_CHUNK = 65536


def _copy_in(sock: socket.socket) -> None:
    """ExaBGP's answers and events (our stdin) to the speaker."""
    try:
        while data := os.read(0, _CHUNK):
            sock.sendall(data)
    except OSError:
        pass
    os._exit(0)


def _copy_out(sock: socket.socket, exabgp: int) -> None:
    """The speaker's commands to ExaBGP (our stdout); when the speaker is gone, ExaBGP is
    told to stop."""
    try:
        while data := sock.recv(_CHUNK):
            view = memoryview(data)
            while view:
                view = view[os.write(1, view) :]
    except OSError:
        pass
    if os.getppid() == exabgp:  # not once ExaBGP has ended and we were handed to another
        with contextlib.suppress(OSError):
            os.kill(exabgp, signal.SIGTERM)
    os._exit(0)


def main(argv: list[str]) -> None:
    if len(argv) != 1:
        sys.stderr.write("usage: relay SOCKET\n")
        os._exit(2)
    exabgp = os.getppid()
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.connect(argv[0])
        sock.sendall(f"relay {exabgp}\n".encode())
    except OSError as exc:
        sys.stderr.write(f"relay: cannot reach the speaker at {argv[0]}: {exc}\n")
        os._exit(1)
    threading.Thread(target=_copy_in, args=(sock,), daemon=True).start()
    _copy_out(sock, exabgp)


if __name__ == "__main__":
    main(sys.argv[1:])
