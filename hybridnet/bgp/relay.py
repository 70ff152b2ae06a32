"""The process ExaBGP spawns for its API: joins ExaBGP's pipes to the speaker's socket.

ExaBGP talks to a child it starts itself (commands arrive on the child's stdout, answers and
events leave on its stdin), so this small child connects to the speaker's unix socket, says
which ExaBGP it belongs to (its parent's PID), and copies bytes both ways. Each direction has
its own thread, so neither side ever waits on the other: ExaBGP blocks when it writes to a
full pipe, and the speaker keeps reading its socket. When either side closes, the relay
exits, and ExaBGP (told to stop when its API process dies) exits too, so the speaker's
supervisor restarts it from a known, empty state.

Standard library only, and no import of the package: it starts once per ExaBGP start.
"""

from __future__ import annotations

import os
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


def _copy_out(sock: socket.socket) -> None:
    """The speaker's commands to ExaBGP (our stdout)."""
    try:
        while data := sock.recv(_CHUNK):
            view = memoryview(data)
            while view:
                view = view[os.write(1, view) :]
    except OSError:
        pass
    os._exit(0)


def main(argv: list[str]) -> None:
    if len(argv) != 1:
        sys.stderr.write("usage: relay SOCKET\n")
        os._exit(2)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.connect(argv[0])
        sock.sendall(f"relay {os.getppid()}\n".encode())
    except OSError as exc:
        sys.stderr.write(f"relay: cannot reach the speaker at {argv[0]}: {exc}\n")
        os._exit(1)
    threading.Thread(target=_copy_in, args=(sock,), daemon=True).start()
    _copy_out(sock)


if __name__ == "__main__":
    main(sys.argv[1:])
