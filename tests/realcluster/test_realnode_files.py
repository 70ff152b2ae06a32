"""What a real node is given, checked without running it: the OCI archives and the configs."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
import tomllib
from pathlib import Path
from typing import Any

import pytest

from hybridnet.lab.errors import TestbedError
from hybridnet.lab.realnode_config import (
    CONTAINERD_SOCKET,
    ContainerdSettings,
    KubeletSettings,
    containerd_config,
    kubelet_config,
)
from hybridnet.lab.realnode_images import (
    BUSYBOX_BINARY,
    FileEntry,
    ImageSpec,
    busybox_image,
    write_oci_archive,
)


def _members(archive: Path) -> dict[str, bytes]:
    with tarfile.open(archive) as tar:
        return {
            m.name: tar.extractfile(m).read()  # type: ignore[union-attr]
            for m in tar.getmembers()
            if m.isfile()
        }


def _blob(files: dict[str, bytes], descriptor: dict[str, Any]) -> bytes:
    algorithm, digest = descriptor["digest"].split(":")
    data = files[f"blobs/{algorithm}/{digest}"]
    assert hashlib.sha256(data).hexdigest() == digest
    assert len(data) == descriptor["size"]
    return data


def test_an_oci_archive_is_a_layout_whose_digests_all_check_out(tmp_path: Path) -> None:
    spec = ImageSpec(
        name="hybridnet.test/demo:1",
        entries=[
            FileEntry("bin"),
            FileEntry("bin/tool", b"#!/bin/true\n"),
            FileEntry("bin/alias", symlink_to="tool"),
        ],
        entrypoint=["/bin/tool"],
        env={"PATH": "/bin"},
    )
    digest = write_oci_archive(spec, tmp_path / "demo.tar")
    files = _members(tmp_path / "demo.tar")
    assert json.loads(files["oci-layout"]) == {"imageLayoutVersion": "1.0.0"}
    (entry,) = json.loads(files["index.json"])["manifests"]
    assert entry["digest"] == digest
    assert entry["platform"] == {"architecture": "amd64", "os": "linux"}
    assert entry["annotations"]["io.containerd.image.name"] == "hybridnet.test/demo:1"
    assert entry["annotations"]["org.opencontainers.image.ref.name"] == "1"
    manifest = json.loads(_blob(files, entry))
    config = json.loads(_blob(files, manifest["config"]))
    (layer_descriptor,) = manifest["layers"]
    layer = _blob(files, layer_descriptor)
    assert config["rootfs"]["diff_ids"] == [f"sha256:{hashlib.sha256(layer).hexdigest()}"]
    assert config["config"]["Entrypoint"] == ["/bin/tool"]
    assert config["config"]["Env"] == ["PATH=/bin"]
    with tarfile.open(fileobj=io.BytesIO(layer)) as tar:
        by_name = {m.name: m for m in tar.getmembers()}
        assert by_name["bin"].isdir()
        assert by_name["bin/alias"].issym() and by_name["bin/alias"].linkname == "tool"
        assert tar.extractfile("bin/tool").read() == b"#!/bin/true\n"  # type: ignore[union-attr]
    # The same inputs give the same image.
    assert write_oci_archive(spec, tmp_path / "again.tar") == digest


def test_an_image_name_needs_a_tag(tmp_path: Path) -> None:
    spec = ImageSpec(name="hybridnet.test/demo", entries=[], entrypoint=["/x"])
    with pytest.raises(TestbedError, match="needs a tag"):
        write_oci_archive(spec, tmp_path / "x.tar")


@pytest.mark.skipif(not BUSYBOX_BINARY.is_file(), reason="Debian's busybox-static is missing")
def test_the_busybox_image_links_every_applet_to_the_one_binary(tmp_path: Path) -> None:
    image = busybox_image()
    links = {e.path: e.symlink_to for e in image.entries if e.symlink_to is not None}
    assert links["bin/sh"] == "busybox"
    assert links["usr/bin/env"] == "../../bin/busybox"
    assert links["sbin/ip"] == "../bin/busybox"


def test_containerd_config_carries_the_settings_this_machine_needs() -> None:
    text = containerd_config(
        ContainerdSettings(
            root=Path("/x/root"), runc=Path("/usr/sbin/runc"), sandbox_image="a.test/pause:1"
        )
    )
    config = tomllib.loads(text)
    assert config["version"] == 3
    assert config["root"] == "/x/root"
    assert config["grpc"]["address"] == CONTAINERD_SOCKET
    assert "io.containerd.nri.v1.nri" in config["disabled_plugins"]
    runtime = config["plugins"]["io.containerd.cri.v1.runtime"]
    assert runtime["restrict_oom_score_adj"] is True
    assert runtime["netns_mounts_under_state_dir"] is True
    runc = runtime["containerd"]["runtimes"]["runc"]
    assert runc["options"] == {"BinaryName": "/usr/sbin/runc", "SystemdCgroup": False}
    assert runtime["cni"]["bin_dirs"] == ["/opt/cni/bin"]
    images = config["plugins"]["io.containerd.cri.v1.images"]
    assert images["pinned_images"]["sandbox"] == "a.test/pause:1"


def test_kubelet_config_uses_cgroupfs_under_the_nodes_own_root() -> None:
    config = kubelet_config(
        KubeletSettings(cgroup_root="/hnt000000-node1", client_ca_file=Path("/ca"))
    )
    assert config["cgroupDriver"] == "cgroupfs"
    assert config["cgroupRoot"] == "/hnt000000-node1"
    assert config["failSwapOn"] is False
    assert config["failCgroupV1"] is False
    assert config["containerRuntimeEndpoint"] == f"unix://{CONTAINERD_SOCKET}"
    assert config["authentication"]["x509"]["clientCAFile"] == "/ca"
