"""The committed gRPC code is what ``make proto`` generates from proto/ (it cannot go stale)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
GENERATED = ["daemon_pb2.py", "daemon_pb2.pyi", "daemon_pb2_grpc.py"]


def test_generated_code_is_current(tmp_path: Path) -> None:
    subprocess.run(
        [
            sys.executable,
            "-m",
            "grpc_tools.protoc",
            "-Iproto",
            f"--python_out={tmp_path}",
            f"--pyi_out={tmp_path}",
            f"--grpc_python_out={tmp_path}",
            "proto/hybridnet/rpc/daemon.proto",
        ],
        cwd=ROOT,
        check=True,
    )
    for name in GENERATED:
        fresh = (tmp_path / "hybridnet/rpc" / name).read_text()
        committed = (ROOT / "hybridnet/rpc" / name).read_text()
        if fresh != committed:
            pytest.fail(f"hybridnet/rpc/{name} is stale: run `make proto`")
