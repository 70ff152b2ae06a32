"""The API relay: introduces itself with its parent's PID, copies both ways, and exits when
either side goes away; when the speaker's side goes, it first tells its parent (ExaBGP) to
stop with SIGTERM, since ExaBGP does not stop by itself when its API process ends.

The relay runs under a stand-in parent (``PARENT``) that hands it this test's pipes and
reports, on stderr, whether it was sent SIGTERM."""

from __future__ import annotations

import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest


@pytest.fixture
def listener(tmp_path: Path) -> Iterator[tuple[socket.socket, str]]:
    path = str(tmp_path / "api.sock")
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(path)
    server.listen(1)
    server.settimeout(30)
    yield server, path
    server.close()


PARENT = """
import signal, subprocess, sys
signalled = []
signal.signal(signal.SIGTERM, lambda *_: signalled.append(True))
relay = subprocess.Popen([sys.executable, "-I", "-m", "hybridnet.bgp.relay", sys.argv[1]])
print(relay.pid, file=sys.stderr, flush=True)
code = relay.wait()
signal.pthread_sigmask(signal.SIG_BLOCK, [])  # a pending handler runs before this returns
print("SIGTERM" if signalled else "no signal", code, file=sys.stderr, flush=True)
"""


def start_relay(path: str) -> subprocess.Popen[bytes]:
    """The stand-in parent, its relay on this test's pipes (stdin/stdout)."""
    return subprocess.Popen(
        [sys.executable, "-c", PARENT, path],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def parent_report(parent: subprocess.Popen[bytes]) -> tuple[int, str]:
    """The relay's PID, and what the parent saw when it ended ("SIGTERM 0")."""
    assert parent.stderr is not None
    assert parent.wait(30) == 0
    pid, report = parent.stderr.read().decode().strip().splitlines()[:2]
    return int(pid), report


def read_line(stream: socket.socket) -> bytes:
    data = b""
    while not data.endswith(b"\n"):
        chunk = stream.recv(1)
        assert chunk, f"connection closed after {data!r}"
        data += chunk
    return data


def test_the_relay_copies_both_ways_and_ends_with_the_speaker(
    listener: tuple[socket.socket, str],
) -> None:
    server, path = listener
    relay = start_relay(path)
    assert relay.stdin is not None and relay.stdout is not None
    try:
        connection, _ = server.accept()
        connection.settimeout(30)
        assert read_line(connection) == f"relay {relay.pid}\n".encode()  # the parent's
        relay.stdin.write(b'{"type": "fsm"}\ndone\n')
        relay.stdin.flush()
        assert read_line(connection) == b'{"type": "fsm"}\n'
        assert read_line(connection) == b"done\n"
        big = b"neighbor 198.18.0.1 announce attributes next-hop self nlri " + b"x" * 200_000
        connection.sendall(big + b"\n")
        assert relay.stdout.readline() == big + b"\n"
        connection.close()  # ExaBGP's pipe stays open: closing it too would race this end
        assert parent_report(relay)[1] == "SIGTERM 0", "ExaBGP told to stop, the relay ended"
    finally:
        relay.kill()
        relay.wait()
        for stream in (relay.stdin, relay.stdout, relay.stderr):
            if stream is not None:
                stream.close()


def test_the_relay_ends_when_exabgp_closes_its_pipe(listener: tuple[socket.socket, str]) -> None:
    server, path = listener
    relay = start_relay(path)
    assert relay.stdin is not None
    try:
        connection, _ = server.accept()
        connection.settimeout(30)
        read_line(connection)
        relay.stdin.close()
        assert connection.recv(1) == b"", "the speaker sees the relay's end"
        assert parent_report(relay)[1] == "no signal 0", "an ending ExaBGP is not signalled"
        connection.close()
    finally:
        relay.kill()
        relay.wait()
        for stream in (relay.stdout, relay.stderr):
            if stream is not None:
                stream.close()


def test_the_relay_fails_loudly_when_the_speaker_is_not_there(tmp_path: Path) -> None:
    relay = subprocess.Popen(
        [sys.executable, "-I", "-m", "hybridnet.bgp.relay", str(tmp_path / "nobody.sock")],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    _, err = relay.communicate(timeout=30)
    assert relay.returncode == 1
    assert b"cannot reach the speaker" in err
