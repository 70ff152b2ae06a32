"""The two file systems of the image: Debian's (mmdebstrap) and the virtual environment (pip).

The Debian root file system is what ``debian:<suite>-slim`` is: mmdebstrap's ``minbase``
variant with the slim image's dpkg path excludes (no manuals, documentation beyond copyright
files, or translations), here with the Containerfile's packages added and without
recommended packages (the Containerfile's ``--no-install-recommends``). mmdebstrap reaches
Debian's mirrors the way apt does on this machine; ``HYBRIDNET_IMAGE_MIRROR`` (apt source
lines or mirror URLs, separated by ``|``) replaces its default, deb.debian.org with the
updates and security suites.

The virtual environment is made by the image's own python3, inside that root file system
(``chroot``), and pip there installs the wheel and its dependencies from a directory of wheels
that pip on this machine downloaded for the image's interpreter (CPython version, glibc,
architecture): the image needs no network, and this machine's pip configuration (index, CA
bundle) is the one used.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from hack.image.errors import ImageBuildError
from hack.image.recipe import VENV, Recipe

VARIANT = "minbase"
SLIM_EXCLUDES = (
    "path-exclude=/usr/share/doc/*",
    "path-include=/usr/share/doc/*/copyright",
    "path-exclude=/usr/share/man/*",
    "path-exclude=/usr/share/groff/*",
    "path-exclude=/usr/share/info/*",
    "path-exclude=/usr/share/lintian/*",
    "path-exclude=/usr/share/linda/*",
    "path-exclude=/usr/share/locale/*",
)
MERGED_USR_HOOK = "/usr/share/mmdebstrap/hooks/merged-usr"
"""mmdebstrap's own hook making /bin, /lib and /sbin links into /usr before anything is
unpacked, so that ``usr-is-merged`` satisfies init-system-helpers instead of ``usrmerge``
(which pulls in the whole of perl, ~50 MB the slim image does not have)."""
APT_OPTIONS = ('APT::Install-Recommends "false"', 'Acquire::Languages "none"')
MIRROR_ENV = "HYBRIDNET_IMAGE_MIRROR"
LEFT_BY_THE_BUILD = (
    "etc/hostname",  # this machine's name and resolver, copied in by mmdebstrap for apt:
    "etc/resolv.conf",  # the container runtime provides its own
    "var/cache/apt/pkgcache.bin",
    "var/cache/apt/srcpkgcache.bin",
    "var/cache/debconf/config.dat-old",
    "var/cache/debconf/templates.dat-old",
    "var/lib/dpkg/status-old",
    "var/lib/dpkg/diversions-old",
)
CHROOT_ENV = {
    "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
    "HOME": "/root",
    "LANG": "C.UTF-8",
    "PIP_DISABLE_PIP_VERSION_CHECK": "1",
    "PIP_NO_CACHE_DIR": "1",
}
"""The whole environment of commands run inside the root file system: nothing of this
machine's (its PIP_* settings name paths that do not exist there)."""
WHEELS_IN_ROOT = "tmp/wheels"
SUPPORTED_MACHINES = {"x86_64": "amd64"}


def mirrors() -> list[str]:
    """mmdebstrap's mirror arguments: none (its default) unless ``HYBRIDNET_IMAGE_MIRROR``."""
    configured = os.environ.get(MIRROR_ENV, "")
    return [entry.strip() for entry in configured.split("|") if entry.strip()]


def mmdebstrap_argv(recipe: Recipe, target: Path) -> list[str]:
    """The mmdebstrap command that makes the Debian root file system in ``target``."""
    argv = ["mmdebstrap", "--mode=root", f"--variant={VARIANT}", "--format=directory"]
    argv.append(f"--hook-dir={MERGED_USR_HOOK}")
    argv.append("--include=" + ",".join(recipe.packages))
    argv += [f"--aptopt={option}" for option in APT_OPTIONS]
    argv += [f"--dpkgopt={option}" for option in SLIM_EXCLUDES]
    return [*argv, recipe.suite, str(target), *mirrors()]


def debian_rootfs(recipe: Recipe, target: Path, log: Path) -> None:
    """Make the Debian root file system (mmdebstrap's output goes to ``log``)."""
    if shutil.which("mmdebstrap") is None:
        raise ImageBuildError("mmdebstrap is not installed (Debian package mmdebstrap; make deps)")
    with log.open("wb") as output:
        done = subprocess.run(
            mmdebstrap_argv(recipe, target), stdout=output, stderr=subprocess.STDOUT, check=False
        )
    if done.returncode != 0:
        tail = log.read_text(errors="replace").splitlines()[-15:]
        raise ImageBuildError(
            f"mmdebstrap failed (exit {done.returncode}); the end of {log}:\n" + "\n".join(tail)
        )
    for leftover in LEFT_BY_THE_BUILD:
        (target / leftover).unlink(missing_ok=True)
    for log_dir in ("var/log/apt",):
        for entry in (target / log_dir).glob("*"):
            entry.unlink()


def copy_tree(source: Path, target: Path) -> None:
    """A copy keeping owners, modes, links and device nodes (which a plain file copy opens)."""
    _run(["cp", "-a", "--reflink=auto", str(source), str(target)], "copying the root file system")


def in_root(root: Path, argv: Sequence[str], what: str) -> str:
    """Run ``argv`` inside ``root`` with :data:`CHROOT_ENV`; return its standard output."""
    chroot = shutil.which("chroot") or "/usr/sbin/chroot"
    return _run([chroot, str(root), *argv], what, env=CHROOT_ENV)


def _run(argv: Sequence[str], what: str, env: dict[str, str] | None = None) -> str:
    done = subprocess.run(list(argv), capture_output=True, text=True, check=False, env=env)
    if done.returncode != 0:
        command = " ".join(argv)
        raise ImageBuildError(
            f"{what} failed (exit {done.returncode}): {command}\n{done.stderr.strip()[-3000:]}"
        )
    return done.stdout


INTERPRETER_FACTS = (
    "import json, os, platform, sys; print(json.dumps({"
    "'version': '%d.%d' % sys.version_info[:2], "
    "'glibc': os.confstr('CS_GNU_LIBC_VERSION'), 'machine': platform.machine()}))"
)


def wheel_platforms(glibc: str, machine: str) -> list[str]:
    """The platform tags a wheel may have to run on this glibc and machine, newest first: the
    manylinux tags down to glibc 2.5 and their legacy aliases (PEP 600), as pip itself would
    accept them there."""
    name, _, version = glibc.partition(" ")
    major, _, minor = version.partition(".")
    if name != "glibc" or major != "2" or not minor.isdigit():
        raise ImageBuildError(f"the image's C library is {glibc!r}, not glibc 2.x")
    legacy = {17: "manylinux2014", 12: "manylinux2010", 5: "manylinux1"}
    platforms = []
    for glibc_minor in range(int(minor), 4, -1):
        platforms.append(f"manylinux_2_{glibc_minor}_{machine}")
        if glibc_minor in legacy:
            platforms.append(f"{legacy[glibc_minor]}_{machine}")
    return platforms


def download_wheels(root: Path, project_wheel: Path, wheelhouse: Path) -> None:
    """The project's wheel and wheels of all its dependencies for the interpreter in ``root``,
    fetched by pip on this machine (binary wheels only: nothing is compiled)."""
    facts = json.loads(in_root(root, ["python3", "-c", INTERPRETER_FACTS], "asking python3"))
    if facts["machine"] not in SUPPORTED_MACHINES:
        raise ImageBuildError(f"the image's machine {facts['machine']} is not supported")
    version = str(facts["version"])
    argv = [sys.executable, "-m", "pip", "download", "--quiet", "--only-binary=:all:"]
    argv += ["--python-version", version, "--implementation", "cp"]
    argv += ["--abi", f"cp{version.replace('.', '')}"]
    for platform_tag in wheel_platforms(str(facts["glibc"]), str(facts["machine"])):
        argv += ["--platform", platform_tag]
    _run([*argv, "--dest", str(wheelhouse), str(project_wheel)], "pip download")


def install_venv(root: Path, wheelhouse: Path, project_wheel_name: str) -> str:
    """Make the virtual environment in ``root`` and install the wheels into it, offline; return
    ``pip freeze`` of the result."""
    inside = root / WHEELS_IN_ROOT
    shutil.copytree(wheelhouse, inside)
    try:
        in_root(root, ["python3", "-m", "venv", VENV], "python3 -m venv")
        pip = f"{VENV}/bin/pip"
        wheel = f"/{WHEELS_IN_ROOT}/{project_wheel_name}"
        install = [pip, "install", "--no-index", "--find-links", f"/{WHEELS_IN_ROOT}", wheel]
        in_root(root, install, "pip install")
        in_root(root, [pip, "check"], "pip check")
        return in_root(root, [pip, "freeze", "--all"], "pip freeze")
    finally:
        shutil.rmtree(inside)
