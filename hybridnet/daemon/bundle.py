"""Package the CNI plugin as one self-contained executable file: a Python zip application.

The runtime execs the plugin for every CNI call, on the node, outside any virtual environment.
The archive holds only what the plugin imports (``hybridnet.cni`` and the light gRPC client in
``hybridnet.rpc``, which need nothing beyond the standard library) as source plus bytecode
compiled for the interpreter it will run under, and its first line starts that interpreter with
``-I -S``: no site-packages, no PYTHON* variables, no bytecode to compile at each call. A
different interpreter version still works; it just compiles the sources each time.
"""

from __future__ import annotations

import importlib.util
import io
import marshal
import os
import sys
import zipfile
from pathlib import Path

import hybridnet
from hybridnet.rpc.codes import INTERNAL

PACKAGE_ROOT = Path(hybridnet.__file__).parent
PLUGIN_SOURCES = ("__init__.py", "cni/*.py", "rpc/*.py")
EXCLUDED = ("rpc/daemon_pb2*.py",)
"""The generated protobuf/grpcio code is the daemon's; the plugin has its own light client."""
MINIMUM_PYTHON = (3, 10)
MAIN = b"""\
import sys
if sys.version_info < %r:
    import json
    try:
        version = json.loads(sys.stdin.read())["cniVersion"]
    except Exception:
        version = "1.0.0"
    sys.stdout.write(json.dumps({"cniVersion": version, "code": %d,
        "msg": "the hybridnet CNI plugin needs Python %%d.%%d or later" %% %r,
        "details": "%%s is Python %%d.%%d" %% ((sys.executable,) + tuple(sys.version_info[:2]))})
        + "\\n")
    sys.exit(1)
from hybridnet.cni.main import main
sys.exit(main())
""" % (MINIMUM_PYTHON, INTERNAL, MINIMUM_PYTHON)
"""The archive's entry point. Written for any Python 3, so that an interpreter too old for the
plugin still answers with CNI error JSON instead of a traceback."""
_FIXED_TIME = (2020, 1, 1, 0, 0, 0)
"""Every entry gets the same timestamp, so equal sources give byte-identical plugins."""


def plugin_sources() -> list[Path]:
    """The files of the hybridnet package that go into the plugin, relative to the package."""
    chosen: set[Path] = set()
    for pattern in PLUGIN_SOURCES:
        chosen.update(path.relative_to(PACKAGE_ROOT) for path in PACKAGE_ROOT.glob(pattern))
    for pattern in EXCLUDED:
        chosen.difference_update(
            path.relative_to(PACKAGE_ROOT) for path in PACKAGE_ROOT.glob(pattern)
        )
    return sorted(chosen)


PLUGIN_PYTHON_ENV = "HYBRIDNET_PLUGIN_PYTHON"
"""Names the node's interpreter where this one is not the node's: in the container image (which
sets it to /usr/bin/python3), this interpreter is the image's /usr/bin/python3.11, a path a
node with another Python version does not have."""


def default_interpreter() -> str:
    """The interpreter ``$HYBRIDNET_PLUGIN_PYTHON`` names, else this one outside any virtual
    environment (the plugin needs no packages)."""
    return os.environ.get(PLUGIN_PYTHON_ENV) or str(Path(sys.executable).resolve())


MAX_SHEBANG = 127
"""The kernel reads at most this much of a ``#!`` line (older kernels; newer allow 255)."""


def build(interpreter: str) -> bytes:
    """The plugin executable: ``#!<interpreter> -IS`` and the zip archive."""
    shebang = f"#!{interpreter} -IS\n"
    if not interpreter.startswith("/") or any(c.isspace() for c in interpreter):
        raise ValueError(f"--python must be an absolute path without spaces: {interpreter!r}")
    if len(shebang) > MAX_SHEBANG:
        raise ValueError(f"--python path too long for a #! line: {interpreter!r}")
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as bundle:
        _add(bundle, "__main__.py", MAIN)
        for relative in plugin_sources():
            source = (PACKAGE_ROOT / relative).read_bytes()
            name = f"hybridnet/{relative.as_posix()}"
            _add(bundle, name, source)
            _add(bundle, name + "c", _bytecode(source, name))
    return shebang.encode() + archive.getvalue()


def _add(bundle: zipfile.ZipFile, name: str, data: bytes) -> None:
    entry = zipfile.ZipInfo(name, _FIXED_TIME)
    entry.compress_type = zipfile.ZIP_DEFLATED
    entry.external_attr = 0o644 << 16
    bundle.writestr(entry, data)


def _bytecode(source: bytes, name: str) -> bytes:
    """A .pyc that is valid whatever the zip entry times say: hash-based and unchecked (PEP 552),
    for this interpreter's version. Another version ignores it and compiles the source."""
    code = compile(source, name, "exec", dont_inherit=True, optimize=0)
    unchecked_hash = (1).to_bytes(4, "little")
    return (
        importlib.util.MAGIC_NUMBER
        + unchecked_hash
        + importlib.util.source_hash(source)
        + marshal.dumps(code)
    )
