"""The plugin starts fast and stands alone: run from the installed bundle with ``-I -S`` (as its
first line says), every command loads only the standard library and hybridnet's plugin modules,
never grpcio, protobuf or the daemon's code."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from hybridnet.daemon.bundle import default_interpreter
from tests.unit.cni.conftest import plugin_executable

PLUGIN_MODULES = ("hybridnet", "hybridnet.cni", "hybridnet.rpc")
FORBIDDEN = ("hybridnet.rpc.daemon_pb2", "hybridnet.rpc.daemon_pb2_grpc")

PROBE = """
import io, json, sys
sys.path.insert(0, sys.argv[1])
from hybridnet.cni import main
out = io.StringIO()
env = {"CNI_COMMAND": sys.argv[2], "CNI_CONTAINERID": "c1", "CNI_NETNS": "/proc/self/ns/net",
       "CNI_IFNAME": "eth0", "CNI_PATH": "/opt/cni/bin"}
main.run(env, sys.argv[3].encode(), out, io.StringIO())
print(json.dumps(sorted(sys.modules)))
"""


def loaded_by(command: str, plugin: Path, short_dir: Path) -> list[str]:
    config: dict[str, object] = {"cniVersion": "1.1.0", "name": "n", "type": "hybridnet",
              "socket": str(short_dir / "none.sock")}  # fmt: skip
    if command == "CHECK":
        config["prevResult"] = {"cniVersion": "1.1.0", "interfaces": [
            {"name": "eth0", "sandbox": "/proc/self/ns/net"}]}  # fmt: skip
    done = subprocess.run(
        [default_interpreter(), "-I", "-S", "-c", PROBE, str(plugin), command, json.dumps(config)],
        capture_output=True,
        text=True,
        check=True,
    )
    modules: list[str] = json.loads(done.stdout.splitlines()[-1])
    return modules


@pytest.mark.parametrize("command", ["ADD", "DEL", "CHECK", "STATUS", "GC", "VERSION"])
def test_only_the_standard_library_and_the_plugin(command: str, short_dir: Path) -> None:
    modules = loaded_by(command, plugin_executable(), short_dir)
    ours = [m for m in modules if m.split(".")[0] == "hybridnet"]
    assert ours, "the probe did not load the plugin"
    assert [
        m for m in ours if m.rpartition(".")[0] not in PLUGIN_MODULES and m != "hybridnet"
    ] == []
    assert [m for m in ours if m in FORBIDDEN] == []
    foreign = [m for m in modules if m.split(".")[0] not in sys.stdlib_module_names]
    assert sorted(set(foreign) - {"__main__", "hybridnet"} - set(ours)) == []
    if command != "VERSION":
        assert "hybridnet.rpc.client" in ours  # the probe reached the daemon call


def test_the_bundle_runs_outside_any_environment(tmp_path: Path) -> None:
    """Executed directly (its ``#!`` line), with an empty environment besides CNI's."""
    done = subprocess.run(
        [str(plugin_executable())],
        input=b'{"cniVersion": "1.0.0"}',
        env={"CNI_COMMAND": "VERSION"},
        cwd=tmp_path,
        capture_output=True,
        check=True,
    )
    assert json.loads(done.stdout)["cniVersion"] == "1.0.0"
