"""The launcher turns Nagle off on the sockets ExaBGP opens its sessions with.

Checked through ExaBGP's own connection class (``Outgoing._setup`` builds the socket a
session connects with), in a child interpreter so that the wrapped factory stays out of the
test process. Without the launcher the option is off: that is the pitfall it exists for
(if an ExaBGP upgrade sets it itself, the first test says so and the launcher can go).
"""

from __future__ import annotations

import subprocess
import sys

PROBE = """
import socket, sys
from hybridnet.bgp import launcher
if sys.argv[1] == "patched":
    launcher.install_nodelay()
    launcher.install_nodelay()  # a second call does not wrap twice
from exabgp.reactor.network import outgoing
from exabgp.protocol.family import AFI
connection = outgoing.Outgoing(AFI.ipv4, "127.0.0.1", None, port=1)
problem = connection._setup()
if problem is not None:
    raise SystemExit(f"setup failed: {problem}")
print(connection.io.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
print(outgoing.create.__name__)
connection.io.close()
connection.io = None
"""


def probe(mode: str) -> list[str]:
    done = subprocess.run(
        [sys.executable, "-c", PROBE, mode], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.split()


def test_exabgp_alone_leaves_nagle_on_for_the_sessions_it_opens() -> None:
    nodelay, factory = probe("plain")
    assert nodelay == "0"
    assert factory == "create"


def test_the_launcher_turns_nagle_off_on_them() -> None:
    nodelay, factory = probe("patched")
    assert nodelay == "1"
    assert factory == "create_without_nagle"


def test_the_launcher_runs_exabgps_server_command() -> None:
    done = subprocess.run(
        [sys.executable, "-I", "-m", "hybridnet.bgp.launcher", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "usage: exabgp server" in done.stdout
