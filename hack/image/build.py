"""Build ``hybridnet:<version>`` as an OCI archive, cached by what goes into it.

Two layers, each cached under its own key in ``~/.cache/hybridnet/image``
(``HYBRIDNET_IMAGE_CACHE``):

- the Debian layer, keyed by the suite and the Containerfile's package list (and how
  mmdebstrap is run): made once (measured on 2 cores: 30 s idle, 80 s with the other core
  busy and more);
- the application layer (the virtual environment), keyed by the Debian layer, pyproject.toml,
  README.md (the wheel's description) and every file of the package: remade when the code
  changes (25 s idle, 80 s loaded).

The archive's key adds the image config read from the Containerfile. An archive already in
the cache is returned at once. Dependency versions are whatever PyPI serves when the
application layer is made; ``hybridnet-<version>-<key>.freeze`` beside the archive records
them.
"""

from __future__ import annotations

import dataclasses
import datetime
import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
import tomllib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from hack.image import oci, rootfs
from hack.image.errors import ImageBuildError
from hack.image.recipe import REPO, VENV, Recipe, load

CACHE_ENV = "HYBRIDNET_IMAGE_CACHE"
DEFAULT_CACHE = Path.home() / ".cache" / "hybridnet" / "image"
BASE_RECIPE = 1
"""Bump when the Debian layer is made differently, so that no old one is reused."""
APP_RECIPE = 1
"""Bump when the application layer or the archive is made differently."""
REPOSITORY = "docker.io/library/hybridnet"
"""The full name of ``hybridnet:<version>``: what a pod's ``image: hybridnet:0.1.0`` means to
the kubelet and containerd, and a short name podman resolves in its own storage."""
KEEP = 2
"""Archives (and Debian layers) kept in the cache however old: the current one and the one
before."""
IN_USE_FOR = 2 * 3600
"""Seconds since its last use during which an entry is kept too: another checkout's build (a
worktree, a test run) may be about to load the archive it was handed."""
SOURCES = ("pyproject.toml", "README.md")
PACKAGE = "hybridnet"


@dataclasses.dataclass(frozen=True)
class Image:
    """A built image: the archive and what it is called."""

    archive: Path
    name: str
    manifest_digest: str
    from_cache: bool


def version(repo: Path = REPO) -> str:
    """The project's version, from pyproject.toml: the image's tag."""
    with (repo / "pyproject.toml").open("rb") as handle:
        return str(tomllib.load(handle)["project"]["version"])


def _hash(document: object) -> str:
    return hashlib.sha256(json.dumps(document, sort_keys=True).encode()).hexdigest()[:20]


def package_files(repo: Path = REPO) -> list[Path]:
    """The files the wheel is built from, relative to the repository, sorted."""
    files = [Path(name) for name in SOURCES]
    for path in sorted((repo / PACKAGE).rglob("*")):
        relative = path.relative_to(repo)
        if path.is_file() and "__pycache__" not in relative.parts and path.suffix != ".pyc":
            files.append(relative)
    return files


def base_key(recipe: Recipe) -> str:
    """The Debian layer's key: the suite, the packages and the mmdebstrap command line."""
    return _hash(
        {
            "recipe": BASE_RECIPE,
            "suite": recipe.suite,
            "packages": sorted(recipe.packages),
            "mmdebstrap": rootfs.mmdebstrap_argv(recipe, Path("/target")),
        }
    )


def app_key(recipe: Recipe, repo: Path = REPO) -> str:
    """The application layer's key: the Debian layer's and every file the wheel is built from."""
    digest = hashlib.sha256()
    for relative in package_files(repo):
        digest.update(f"{relative.as_posix()}\0".encode())
        digest.update(hashlib.sha256((repo / relative).read_bytes()).digest())
    return _hash({"recipe": APP_RECIPE, "base": base_key(recipe), "sources": digest.hexdigest()})


def image_key(recipe: Recipe, repo: Path = REPO) -> str:
    """The archive's key: both layers' and the rest of the Containerfile's final stage."""
    config = dataclasses.asdict(recipe) | {"packages": None, "suite": None}
    return _hash({"app": app_key(recipe, repo), "config": config, "version": version(repo)})


class Progress:
    """One line per step on stderr, with the seconds since the build started."""

    def __init__(self) -> None:
        self.started = time.monotonic()

    def __call__(self, message: str) -> None:
        elapsed = time.monotonic() - self.started
        print(f"image [{elapsed:6.1f}s] {message}", file=sys.stderr, flush=True)


@contextmanager
def _locked(cache: Path) -> Iterator[None]:
    """One build at a time per cache (a second waits, then finds the first one's result)."""
    cache.mkdir(parents=True, exist_ok=True)
    with (cache / ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def prune(cache: Path, pattern: str, keep: Path, now: float | None = None) -> None:
    """Remove the entries matching ``pattern`` but ``keep``, the newest others up to
    :data:`KEEP` in all, and those used in the last :data:`IN_USE_FOR` seconds (the mtime,
    which every use touches)."""
    now = time.time() if now is None else now
    entries = sorted(cache.glob(pattern), key=lambda p: p.stat().st_mtime, reverse=True)
    older = [entry for entry in entries if entry != keep][KEEP - 1 :]
    for stale in [entry for entry in older if now - entry.stat().st_mtime > IN_USE_FOR]:
        if stale.is_dir():
            shutil.rmtree(stale)
        else:
            stale.unlink()


def _debian_layer(recipe: Recipe, cache: Path, progress: Progress) -> tuple[Path, oci.Layer]:
    """The Debian root file system and its layer, from the cache or made now."""
    entry = cache / f"base-{base_key(recipe)}"
    record = entry / "layer.json"
    if record.is_file():
        progress(f"Debian layer from the cache ({entry.name})")
        entry.touch()
        layer = oci.Layer.from_json(json.loads(record.read_text()))
        return entry / "rootfs", dataclasses.replace(layer, path=entry / "layer.tar.gz")
    partial = entry.with_name(entry.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir()
    progress(f"mmdebstrap {recipe.suite} ({rootfs.VARIANT}) + {' '.join(recipe.packages)}")
    rootfs.debian_rootfs(recipe, partial / "rootfs", partial / "mmdebstrap.log")
    progress("writing the Debian layer")
    created_by = f"mmdebstrap --variant={rootfs.VARIANT} {recipe.suite} + " + " ".join(
        recipe.packages
    )
    layer = oci.write_layer(
        partial / "rootfs",
        oci.whole_tree(partial / "rootfs"),
        partial / "layer.tar.gz",
        created_by,
        excluded=("dev", "proc", "sys"),
    )
    final = dataclasses.replace(layer, path=entry / "layer.tar.gz")
    (partial / "layer.json").write_text(json.dumps(final.to_json(), indent=2) + "\n")
    partial.rename(entry)
    prune(cache, "base-*", entry)
    return entry / "rootfs", final


def _project_wheel(work: Path, repo: Path) -> Path:
    """The project's wheel, built by this machine's pip from a copy of exactly the hashed
    files (so a build never writes into the checkout)."""
    source = work / "src"
    for relative in package_files(repo):
        (source / relative).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(repo / relative, source / relative)
    wheels = work / "wheels"
    build = [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--wheel-dir"]
    done = subprocess.run(
        [*build, str(wheels), str(source)], capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise ImageBuildError(f"building the wheel failed:\n{done.stderr.strip()[-3000:]}")
    (wheel,) = wheels.glob(f"{PACKAGE}-*.whl")
    return wheel


def _app_layer(
    base_root: Path, work: Path, repo: Path, progress: Progress
) -> tuple[oci.Layer, str]:
    progress("building the wheel")
    wheel = _project_wheel(work, repo)
    root = work / "rootfs"
    progress("copying the Debian root file system")
    rootfs.copy_tree(base_root, root)
    progress("pip download: the dependencies' wheels for the image's python3")
    rootfs.download_wheels(root, wheel, work / "wheels")
    progress(f"python3 -m venv {VENV}; pip install {wheel.name} (offline, in the image)")
    frozen = rootfs.install_venv(root, work / "wheels", wheel.name)
    progress(f"writing the application layer ({VENV})")
    layer = oci.write_layer(
        root,
        [VENV.lstrip("/")],
        work / "app.tar.gz",
        f"python3 -m venv {VENV} && {VENV}/bin/pip install {wheel.name}",
    )
    return layer, frozen


def image_config(recipe: Recipe) -> oci.ImageConfig:
    return oci.ImageConfig(
        env=recipe.env,
        cmd=recipe.cmd,
        entrypoint=recipe.entrypoint,
        workdir=recipe.workdir,
        labels=dict(recipe.labels),
    )


def cache_dir() -> Path:
    return Path(os.environ.get(CACHE_ENV, str(DEFAULT_CACHE)))


def build(cache: Path | None = None, repo: Path = REPO, progress: Progress | None = None) -> Image:
    """The image archive: from the cache when its inputs are unchanged, else built now."""
    if os.geteuid() != 0:
        raise ImageBuildError("the image build runs as root (mmdebstrap --mode=root, chroot)")
    cache = cache or cache_dir()
    progress = progress or Progress()
    recipe = load(repo / "deploy" / "Containerfile")
    tag = version(repo)
    name = f"{REPOSITORY}:{tag}"
    stem = f"hybridnet-{tag}-{image_key(recipe, repo)}"
    archive, record, frozen_list = (cache / f"{stem}{s}" for s in (".oci.tar", ".json", ".freeze"))
    with _locked(cache):
        if record.is_file() and archive.is_file():
            progress(f"{name} from the cache: {archive}")
            for path in (archive, record, frozen_list):
                path.touch()
            digest = json.loads(record.read_text())["manifest_digest"]
            return Image(archive, name, str(digest), from_cache=True)
        for stale in [*cache.glob("work-*"), *cache.glob("*.partial")]:
            shutil.rmtree(stale) if stale.is_dir() else stale.unlink()  # a build that died
        base_root, base_layer = _debian_layer(recipe, cache, progress)
        work = cache / f"work-{stem}"
        work.mkdir()
        try:
            app_layer, frozen = _app_layer(base_root, work, repo, progress)
            progress(f"writing the OCI archive {archive.name}")
            created = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
            digest = oci.write_archive(
                archive, [base_layer, app_layer], image_config(recipe), name, created
            )
        finally:
            shutil.rmtree(work, ignore_errors=True)
        frozen_list.write_text(frozen)
        record.write_text(json.dumps({"name": name, "manifest_digest": digest}, indent=2) + "\n")
        for kept in (archive, frozen_list, record):
            prune(cache, f"hybridnet-*{kept.name.removeprefix(stem)}", kept)
        progress(f"built {name}: {archive} ({archive.stat().st_size >> 20} MiB)")
        return Image(archive, name, digest, from_cache=False)
