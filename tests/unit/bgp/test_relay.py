"""The API relay: introduces itself with its parent's PID, copies both ways, and exits when
either side goes away (so ExaBGP, told to stop when its API process dies, stops too)."""

from __future__ import annotations

import os
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


def start_relay(path: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-I", "-m", "hybridnet.bgp.relay", path],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


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
        assert read_line(connection) == f"relay {os.getpid()}\n".encode()
        relay.stdin.write(b'{"type": "fsm"}\ndone\n')
        relay.stdin.flush()
        assert read_line(connection) == b'{"type": "fsm"}\n'
        assert read_line(connection) == b"done\n"
        big = b"neighbor 198.18.0.1 announce attributes next-hop self nlri " + b"x" * 200_000
        connection.sendall(big + b"\n")
        assert relay.stdout.readline() == big + b"\n"
        connection.close()
        assert relay.wait(30) == 0
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
        assert relay.wait(30) == 0
        assert connection.recv(1) == b"", "the speaker sees the relay's end"
        connection.close()
    finally:
        relay.kill()
        relay.wait()
        for stream in (relay.stdout, relay.stderr):
            if stream is not None:
                stream.close()


def test_the_relay_fails_loudly_when_the_speaker_is_not_there(tmp_path: Path) -> None:
    relay = start_relay(str(tmp_path / "nobody.sock"))
    _, err = relay.communicate(timeout=30)
    assert relay.returncode == 1
    assert b"cannot reach the speaker" in err
