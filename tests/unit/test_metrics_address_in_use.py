"""A metrics port that is taken ends the manager and the daemon with one line naming it, and
exit code 1: the OSError's traceback is no help to the person who chose the port."""

from __future__ import annotations

import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def taken_port() -> Iterator[int]:
    holder = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    holder.bind(("127.0.0.1", 0))
    holder.listen(1)
    yield int(holder.getsockname()[1])
    holder.close()


@pytest.mark.parametrize(
    ("program", "extra"),
    [
        ("hybridnet-manager", ["--no-leader-elect"]),
        ("hybridnet-daemon", ["--node-name", "n1", "--network", "pods", "--socket", "d.sock"]),
    ],
)
def test_a_taken_metrics_port_is_one_line_and_exit_1(
    program: str, extra: list[str], taken_port: int, tmp_path: Path
) -> None:
    address = f"127.0.0.1:{taken_port}"
    module = f"hybridnet.{program.removeprefix('hybridnet-')}.main"
    extra = [str(tmp_path / arg) if arg == "d.sock" else arg for arg in extra]
    argv = [sys.executable, "-m", module, "--store", str(tmp_path / "s.db"), *extra]
    result = subprocess.run(
        [*argv, "--metrics-address", address],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=REPO,
    )
    assert result.returncode == 1, result.stderr
    lines = [line for line in result.stderr.splitlines() if not line.startswith("{")]
    assert lines == [f"{program}: cannot serve metrics on {address}: Address already in use"], (
        result.stderr
    )
    assert "Traceback" not in result.stderr
