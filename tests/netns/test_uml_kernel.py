"""Which user-mode-linux kernel the 802.1Q tests boot, and what ours has that Debian's lacks.

Ours (hack/uml/build.sh, ``make uml-kernel``) is chosen whenever its cache is complete; Debian's
``linux.uml`` with its modules is the fallback. The guest is told which one it runs.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.netns import uml

GUEST_TESTS = """
import os, subprocess, sys

from tests.netns import uml

# An SCTP association on loopback: the kernel has SCTP sockets (this host's has none).
SCTP_ECHO = '''
import socket
server = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_SCTP)
server.bind(("127.0.0.1", 0))
server.listen(1)
server.settimeout(30)
client = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_SCTP)
client.settimeout(30)
client.connect(server.getsockname())
peer, _ = server.accept()
client.sendall(b"ping")
print(peer.recv(4).decode())
'''

def in_probe(*argv):
    return subprocess.run(["ip", "netns", "exec", "kernelprobe", *argv],
                          capture_output=True, text=True)

def test_our_kernel_has_nftables_inet_and_sctp():
    assert uml.in_our_kernel()
    assert uml.host_has_8021q()
    subprocess.run(["ip", "netns", "add", "kernelprobe"], check=True)
    try:
        subprocess.run(["ip", "-n", "kernelprobe", "link", "set", "lo", "up"], check=True)
        made = in_probe("nft", "add", "table", "inet", "probe")
        assert made.returncode == 0, made.stderr
        echoed = in_probe(sys.executable, "-c", SCTP_ECHO)
        assert echoed.stdout.strip() == "ping", echoed.stderr
    finally:
        subprocess.run(["ip", "netns", "del", "kernelprobe"], check=True)

def test_debians_kernel_has_8021q_from_its_modules():
    assert not uml.in_our_kernel()
    assert uml.host_has_8021q()
"""


@pytest.fixture
def guest_tests(tmp_path: Path) -> Path:
    if os.geteuid() != 0:
        pytest.skip("needs root")
    if uml.host_has_8021q():
        pytest.skip("this kernel has 8021q natively: user-mode-linux is not used here")
    path = tmp_path / "test_guest.py"
    path.write_text(GUEST_TESTS)
    return path


@pytest.fixture
def without_our_build(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Our build's cache pointed at an empty directory, as on a machine that never built it."""
    monkeypatch.setenv("HYBRIDNET_UML_KERNEL_CACHE", str(tmp_path / "empty-cache"))
    uml.built_kernel.cache_clear()
    yield
    monkeypatch.undo()
    uml.built_kernel.cache_clear()


def test_the_build_script_reports_a_missing_build_without_building(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    if not Path("/usr/src/linux-source-6.1.tar.xz").exists():
        pytest.skip("linux-source-6.1 is not installed (make deps)")
    cache = tmp_path / "cache"
    env = {**os.environ, "HYBRIDNET_UML_KERNEL_CACHE": str(cache)}
    done = subprocess.run(
        [str(uml.KERNEL_BUILD), "--cached"], capture_output=True, text=True, env=env, check=False
    )
    assert done.returncode == 3, done.stderr
    assert "make uml-kernel" in done.stderr
    assert done.stdout == ""
    assert not cache.exists()


@pytest.mark.root
def test_guests_boot_our_kernel_which_has_nftables_inet_and_sctp(guest_tests: Path) -> None:
    ours = uml.built_kernel()
    if ours is None:
        pytest.skip("our user-mode-linux kernel is not built (make uml-kernel)")
    assert uml.guest_kernel() == ours
    outcome = uml.run_in_guest(f"{guest_tests}::test_our_kernel_has_nftables_inet_and_sctp")
    assert outcome.status == "passed", outcome.output


@pytest.mark.root
def test_without_our_build_guests_boot_debians_kernel(
    guest_tests: Path, without_our_build: None
) -> None:
    debian = uml.debian_kernel()
    if debian is None:
        pytest.skip("user-mode-linux is not installed")
    assert uml.built_kernel() is None
    assert uml.guest_kernel() == debian
    outcome = uml.run_in_guest(f"{guest_tests}::test_debians_kernel_has_8021q_from_its_modules")
    assert outcome.status == "passed", outcome.output
