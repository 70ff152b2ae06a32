"""Fixtures for the plugin tests: the installed plugin executable, a fake daemon, a runtime."""

from __future__ import annotations

import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.unit.cni.fake_daemon import FakeDaemon, serve


def plugin_executable() -> Path:
    """The ``hybridnet-cni`` console script of this environment (``pip install -e .``)."""
    candidate = Path(sys.executable).parent / "hybridnet-cni"
    found = candidate if candidate.exists() else shutil.which("hybridnet-cni")
    assert found, "hybridnet-cni is not installed: pip install -e '.[test,dev]'"
    return Path(found)


@pytest.fixture
def plugin_dir(tmp_path: Path) -> Path:
    """A CNI_PATH directory holding the plugin under its type name, as it is installed."""
    directory = tmp_path / "bin"
    directory.mkdir()
    (directory / "hybridnet").symlink_to(plugin_executable())
    return directory


@pytest.fixture
def short_dir() -> Iterator[Path]:
    """A short directory for unix sockets (paths are limited to 107 bytes)."""
    with tempfile.TemporaryDirectory(prefix="hncni") as name:
        yield Path(name)


@pytest.fixture
def daemon(short_dir: Path) -> Iterator[tuple[FakeDaemon, Path]]:
    """A running fake daemon (see fake_daemon: a stand-in for the real one) and its socket."""
    fake = FakeDaemon()
    socket_path = short_dir / "daemon.sock"
    server = serve(fake, socket_path)
    yield fake, socket_path
    server.stop(grace=None).wait()


@pytest.fixture
def netns_path(tmp_path: Path) -> Path:
    """An existing file standing in for a pod's netns path (the fake daemon never enters it)."""
    path = tmp_path / "netns-pod1"
    path.touch()
    return path
