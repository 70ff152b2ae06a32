"""Compile the tree's C helpers (tests/netns/*.c) with the system compiler, at test time.

Nothing compiled is committed. A build lands in a cache outside the repository, named by a
hash of its source and compiler arguments, so an unchanged source is compiled once per machine
and a changed one is rebuilt; it is moved into place with an atomic rename, so concurrent test
runs never see half a file.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

COMPILER = "cc"
DEBIAN_PACKAGES = ("gcc", "libc6-dev")
CACHE_DIR = Path.home() / ".cache" / "hybridnet" / "uml"
WARNINGS = ("-O2", "-Wall", "-Wextra", "-std=gnu11")


class NativeBuildError(Exception):
    """A C helper could not be built: no compiler, no headers, or the source did not compile."""


def build_shared_library(source: Path, cache_dir: Path = CACHE_DIR) -> Path:
    return _build(source, [*WARNINGS, "-shared", "-fPIC"], ["-ldl"], ".so", cache_dir)


def build_program(source: Path, cache_dir: Path = CACHE_DIR) -> Path:
    return _build(source, list(WARNINGS), ["-ldl"], "", cache_dir)


def _install_hint() -> str:
    packages = " ".join(DEBIAN_PACKAGES)
    return f"install the Debian packages {packages} (apt-get install -y {packages}; make deps does)"


def _build(
    source: Path, flags: list[str], libraries: list[str], suffix: str, cache_dir: Path
) -> Path:
    key = hashlib.sha256(
        b"\0".join([source.read_bytes(), *(arg.encode() for arg in flags + libraries)])
    ).hexdigest()[:16]
    target = cache_dir / f"{source.stem}-{key}{suffix}"
    if target.exists():
        return target
    compiler = shutil.which(COMPILER)
    if compiler is None:
        raise NativeBuildError(
            f"cannot build {source.name}: no C compiler ({COMPILER!r} is not on PATH); "
            + _install_hint()
        )
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise NativeBuildError(f"cannot build {source.name}: no build cache: {error}") from None
    with tempfile.TemporaryDirectory(dir=cache_dir, prefix=".build-") as staging:
        staged = Path(staging) / target.name
        argv = [compiler, *flags, "-o", str(staged), str(source), *libraries]
        result = subprocess.run(argv, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise NativeBuildError(
                f"cannot build {source.name}: {' '.join(argv)} exited {result.returncode}; "
                f"if headers are missing, {_install_hint()}\n{result.stderr.strip()}"
            )
        os.replace(staged, target)
    return target
