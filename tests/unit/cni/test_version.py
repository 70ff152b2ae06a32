"""VERSION through the executable, for every configuration version the runtime may speak."""

from __future__ import annotations

import json
import subprocess

import pytest

from hybridnet.cni import versions
from tests.unit.cni.conftest import plugin_executable


def version_of(stdin: bytes) -> tuple[int, dict[str, object]]:
    done = subprocess.run(
        [str(plugin_executable())],
        input=stdin,
        env={"CNI_COMMAND": "VERSION"},
        capture_output=True,
        check=False,
    )
    return done.returncode, json.loads(done.stdout)


@pytest.mark.parametrize("version", versions.SUPPORTED)
def test_version_echoes_the_requested_version(version: str) -> None:
    exit_code, document = version_of(json.dumps({"cniVersion": version}).encode())
    assert exit_code == 0
    assert document == {"cniVersion": version, "supportedVersions": list(versions.SUPPORTED)}


@pytest.mark.parametrize("stdin", [b"", b"{}", b'{"cniVersion": "0.1.0"}', b'{"cniVersion": 3}'])
def test_version_without_a_usable_request_answers_the_latest(stdin: bytes) -> None:
    exit_code, document = version_of(stdin)
    assert exit_code == 0 and document["cniVersion"] == versions.LATEST


def test_version_with_garbage_is_a_decode_error() -> None:
    exit_code, document = version_of(b"{nope")
    assert exit_code == 1 and document["code"] == 6
