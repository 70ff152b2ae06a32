"""The bundled plugin: what goes in, bytecode the interpreter accepts, and a clear CNI error on
an interpreter too old for it."""

from __future__ import annotations

import importlib.util
import io
import json
import subprocess
import sys
import zipfile
from pathlib import Path

from hybridnet.daemon import bundle, install


def archive(python: str = "/usr/bin/python3") -> zipfile.ZipFile:
    data = bundle.build(python)
    return zipfile.ZipFile(io.BytesIO(data[data.index(b"\n") + 1 :]))


def test_only_the_plugin_and_its_client_go_in() -> None:
    names = set(archive().namelist())
    assert "__main__.py" in names
    assert "hybridnet/cni/main.py" in names and "hybridnet/rpc/http2.pyc" in names
    assert not [n for n in names if "daemon" in n or "_pb2" in n or "manager" in n]


def test_the_same_sources_give_the_same_bytes() -> None:
    assert bundle.build("/usr/bin/python3") == bundle.build("/usr/bin/python3")


def test_bytecode_is_unchecked_hash_based_for_this_interpreter() -> None:
    pyc = archive().read("hybridnet/cni/main.pyc")
    source = archive().read("hybridnet/cni/main.py")
    assert pyc[:4] == importlib.util.MAGIC_NUMBER
    assert int.from_bytes(pyc[4:8], "little") == 0b01  # hash-based, not checked
    assert pyc[8:16] == importlib.util.source_hash(source)


def test_an_interpreter_too_old_answers_with_cni_error_json(tmp_path: Path) -> None:
    """The entry point, as an old Python would run it (its version faked: the guard is the
    first thing it does)."""
    plugin = install.install_plugin(bundle.default_interpreter(), tmp_path)
    probe = (
        "import runpy, sys; sys.version_info = (3, 8, 10, 'final', 0); "
        f"runpy.run_path({str(plugin)!r}, run_name='__main__')"
    )
    done = subprocess.run(
        [sys.executable, "-I", "-S", "-c", probe],
        input=b'{"cniVersion": "0.4.0", "name": "n", "type": "hybridnet"}',
        env={"CNI_COMMAND": "ADD"},
        capture_output=True,
        check=False,
    )
    assert done.returncode == 1 and b"Traceback" not in done.stderr
    error = json.loads(done.stdout)
    assert error["cniVersion"] == "0.4.0" and error["code"] == 999
    assert "3.10 or later" in error["msg"] and "3.8" in error["details"]
