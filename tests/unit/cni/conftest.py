"""Fixtures for the plugin tests: the installed plugin executable, a fake daemon, a runtime."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from hybridnet.daemon.bundle import default_interpreter
from hybridnet.daemon.install import install_plugin
from tests.unit.cni.fake_daemon import FakeDaemon, serve

_installed: list[Path] = []


@pytest.fixture(scope="session", autouse=True)
def _install_plugin(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Bundle the plugin once per session, as ``hybridnet-daemon install`` writes it."""
    _installed.append(install_plugin(default_interpreter(), tmp_path_factory.mktemp("cni-bin")))


def plugin_executable() -> Path:
    """The installed plugin (see ``_install_plugin``)."""
    return _installed[-1]


@pytest.fixture
def plugin_dir() -> Path:
    """A CNI_PATH directory holding the plugin under its type name, as it is installed."""
    return plugin_executable().parent


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
    fake.release.set()
    server.stop(grace=None).wait()


@pytest.fixture
def netns_path(tmp_path: Path) -> Path:
    """An existing file standing in for a pod's netns path (the fake daemon never enters it)."""
    path = tmp_path / "netns-pod1"
    path.touch()
    return path
