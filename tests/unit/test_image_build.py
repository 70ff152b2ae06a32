"""The image build's parts that need no root: the recipe read from the Containerfile, the cache
keys, the wheel platforms, and the OCI layout written from a small tree and read back."""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

import pytest

from hack.image import build, oci, recipe, rootfs
from hack.image.errors import ImageBuildError
from tests.image_layout import read_archive

FINAL_STAGE = """\
FROM docker.io/library/debian:bookworm-slim AS wheel
RUN true
FROM docker.io/library/debian:bookworm-slim
ARG DEBIAN_PACKAGES="python3 nftables"
# a comment
ENV A=1 \\
    B="two words"
LABEL x=y
CMD ["run", "--this"]
"""


def test_the_repositorys_containerfile_is_the_image_the_local_build_makes() -> None:
    """What the local build does its own way (RUN) still matches: the venv where the local
    build makes it, the wheel installed into it, and PATH leading to its console scripts."""
    image = recipe.load()
    assert image.suite == "bookworm"
    assert {"python3", "python3-venv", "nftables", "iproute2", "kmod"} <= set(image.packages)
    env = dict(image.env)
    assert env["PATH"].split(":")[0] == f"{recipe.VENV}/bin"
    assert env["HYBRIDNET_PLUGIN_PYTHON"] == "/usr/bin/python3"
    install_debian, install_wheel = image.runs
    assert "--no-install-recommends $DEBIAN_PACKAGES" in install_debian
    assert install_wheel.startswith(f"python3 -m venv {recipe.VENV} ")
    assert f"{recipe.VENV}/bin/pip install --no-cache-dir /tmp/dist/hybridnet-" in install_wheel
    assert image.cmd == ("hybridnet-ctl", "--help") and image.entrypoint == ()


def test_the_final_stage_is_read_with_continuations_quotes_and_comments() -> None:
    parsed = recipe.parse(FINAL_STAGE)
    assert parsed.packages == ("python3", "nftables")
    assert parsed.env == (("A", "1"), ("B", "two words"))
    assert parsed.labels == (("x", "y"),) and parsed.cmd == ("run", "--this")
    assert parsed.runs == () and parsed.workdir == "/"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (("CMD", "USER nobody\nCMD"), "does not know Containerfile USER"),
        (('ARG DEBIAN_PACKAGES="python3 nftables"', "ARG OTHER=1"), "exactly one ARG"),
        (("bookworm-slim\nARG", "bookworm\nARG"), "debian:<suite>-slim"),
        (('CMD ["run", "--this"]', "CMD run --this"), "CMD must be a JSON list"),
        (("ENV A=1", "ENV A"), "expected KEY=VALUE"),
    ],
)
def test_a_final_stage_the_local_build_cannot_follow_is_refused(
    change: tuple[str, str], message: str
) -> None:
    with pytest.raises(ImageBuildError, match=message):
        recipe.parse(FINAL_STAGE.replace(*change))


def test_wheel_platforms_are_the_manylinux_tags_this_glibc_runs() -> None:
    platforms = rootfs.wheel_platforms("glibc 2.36", "x86_64")
    assert platforms[0] == "manylinux_2_36_x86_64"
    assert platforms.index("manylinux_2_17_x86_64") + 1 == platforms.index("manylinux2014_x86_64")
    assert platforms[-2:] == ["manylinux_2_5_x86_64", "manylinux1_x86_64"]
    with pytest.raises(ImageBuildError, match="not glibc"):
        rootfs.wheel_platforms("musl 1.2", "x86_64")


def _repo_copy(tmp_path: Path) -> Path:
    copy = tmp_path / "repo"
    for relative in build.package_files():
        (copy / relative).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(recipe.REPO / relative, copy / relative)
    shutil.copytree(recipe.REPO / "deploy", copy / "deploy")
    return copy


def test_the_image_key_follows_the_sources_and_the_debian_key_only_the_packages(
    tmp_path: Path,
) -> None:
    repo = _repo_copy(tmp_path)
    image = recipe.load(repo / "deploy" / "Containerfile")
    before = build.image_key(image, repo), build.base_key(image)
    (repo / "hybridnet" / "__pycache__").mkdir(exist_ok=True)
    (repo / "hybridnet" / "__pycache__" / "x.pyc").write_bytes(b"not a source")
    assert (build.image_key(image, repo), build.base_key(image)) == before
    (repo / "hybridnet" / "cni" / "main.py").write_text("# changed\n", encoding="utf-8")
    after = build.image_key(image, repo), build.base_key(image)
    assert after[0] != before[0] and after[1] == before[1]
    more = recipe.parse(
        (repo / "deploy" / "Containerfile").read_text().replace("kmod", "kmod procps")
    )
    assert build.base_key(more) != build.base_key(image)
    assert build.image_key(more, repo) != after[0]


def test_a_tree_becomes_a_layer_and_an_archive_with_every_digest_right(tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    (tree / "opt" / "app" / "bin").mkdir(parents=True)
    (tree / "dev" / "pts").mkdir(parents=True)
    (tree / "dev" / "shm-file").write_text("runtime's")
    tool = tree / "opt" / "app" / "bin" / "tool"
    tool.write_text("#!/bin/sh\n")
    tool.chmod(0o755)
    os.link(tool, tree / "opt" / "app" / "bin" / "same-tool")
    (tree / "opt" / "app" / "bin" / "python3").symlink_to("/usr/bin/python3")
    layer = oci.write_layer(
        tree, oci.whole_tree(tree), tmp_path / "layer.tar.gz", "test", excluded=("dev",)
    )
    assert layer.digest == "sha256:" + hashlib.sha256(layer.path.read_bytes()).hexdigest()
    config = oci.ImageConfig(
        env=[("PATH", "/opt/app/bin")], cmd=["tool"], entrypoint=[], workdir="/", labels={}
    )
    archive = tmp_path / "image.oci.tar"
    digest = oci.write_archive(archive, [layer], config, "docker.io/library/t:1", "2020-01-01Z")
    image = read_archive(archive)
    assert image.index_entry["digest"] == digest
    assert image.index_entry["annotations"] == {
        "io.containerd.image.name": "docker.io/library/t:1",
        "org.opencontainers.image.ref.name": "docker.io/library/t:1",
    }
    assert image.config["config"]["Cmd"] == ["tool"]
    assert "Entrypoint" not in image.config["config"]
    assert image.config["history"] == [{"created": "2020-01-01Z", "created_by": "test"}]
    (entries,) = image.layers
    assert "dev" in entries and not [name for name in entries if name.startswith("dev/")]
    first, second = entries["opt/app/bin/same-tool"], entries["opt/app/bin/tool"]  # tar order
    assert first.isfile() and first.mode == 0o755
    assert second.islnk() and second.linkname == "opt/app/bin/same-tool"
    assert entries["opt/app/bin/python3"].linkname == "/usr/bin/python3"
    assert {entry.uname for entry in entries.values()} == {""}
    assert not list(tmp_path.glob("*.partial"))


def test_a_layer_member_that_is_not_there_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ImageBuildError, match="opt/missing is not in"):
        oci.write_layer(tmp_path, ["opt/missing"], tmp_path / "layer.tar.gz", "test")


def test_the_cache_keeps_the_current_entry_the_one_before_and_those_in_use(
    tmp_path: Path,
) -> None:
    now = 1_000_000.0
    ages = {"current": 0, "before": 60, "in-use": build.IN_USE_FOR - 60}
    ages |= {"old": 20_000, "older": 30_000}
    for name, age in ages.items():
        entry = tmp_path / f"hybridnet-{name}.oci.tar"
        entry.write_bytes(b"")
        os.utime(entry, (now - age, now - age))
    build.prune(tmp_path, "hybridnet-*.oci.tar", tmp_path / "hybridnet-current.oci.tar", now)
    kept = sorted(p.name.split("-", 1)[1].split(".")[0] for p in tmp_path.iterdir())
    assert kept == ["before", "current", "in-use"]
