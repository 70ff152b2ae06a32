"""The plugin starts fast: nothing heavy is imported, and VERSION does not even load grpc."""

from __future__ import annotations

import json
import subprocess
import sys

HEAVY = ["kubernetes", "pyroute2", "hybridnet.store", "hybridnet.manager", "hybridnet.daemon"]

PROBE = """
import io, json, sys
from hybridnet.cni import main
out = io.StringIO()
main.run({"CNI_COMMAND": sys.argv[1]}, b'{"cniVersion": "1.1.0", "name": "n", "type": "t",'
         b' "socket": "/nonexistent.sock"}', out, io.StringIO())
print(json.dumps(sorted(sys.modules)))
"""


def loaded_after(command: str) -> list[str]:
    done = subprocess.run(
        [sys.executable, "-c", PROBE, command], capture_output=True, text=True, check=True
    )
    modules: list[str] = json.loads(done.stdout.splitlines()[-1])
    return modules


def test_version_loads_no_grpc_and_nothing_heavy() -> None:
    modules = loaded_after("VERSION")
    assert not [m for m in modules if m.split(".")[0] in {"grpc", "google"}]
    assert not [m for m in modules if any(m == h or m.startswith(h + ".") for h in HEAVY)]


def test_status_loads_grpc_but_nothing_heavy() -> None:
    modules = loaded_after("STATUS")
    assert "grpc" in modules
    assert not [m for m in modules if any(m == h or m.startswith(h + ".") for h in HEAVY)]
