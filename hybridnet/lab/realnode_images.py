"""Container images without a registry: OCI image archives written here, byte by byte.

A real node's containerd runs pods only from images it holds, and the lab has no registry to
pull from. So the images the real-cluster tier needs are made from files already on the
machine: the pause binary compiled from the kubernetes module's ``pause.c`` (the sandbox
image) and Debian's static busybox (the test pods' image). Each is one uncompressed layer;
:func:`write_oci_archive` lays out the OCI image layout (``oci-layout``, ``index.json``,
blobs for the layer, the config and the manifest) in a tar that ``ctr images import`` reads.
Pods then use ``imagePullPolicy: Never``.

Everything is deterministic (fixed mtimes and owners, sorted entries): the same inputs give
the same digests, so an image imported twice is the same image.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import posixpath
import subprocess
import tarfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from hybridnet.lab.errors import TestbedError

LAYER_MEDIA_TYPE = "application/vnd.oci.image.layer.v1.tar"
CONFIG_MEDIA_TYPE = "application/vnd.oci.image.config.v1+json"
MANIFEST_MEDIA_TYPE = "application/vnd.oci.image.manifest.v1+json"
INDEX_MEDIA_TYPE = "application/vnd.oci.image.index.v1+json"
PAUSE_IMAGE = "hybridnet.test/pause:v1.34.4"
"""The sandbox image's name (containerd's ``pinned_images.sandbox``): not registry.k8s.io's
image, so it does not pretend to be one."""
BUSYBOX_IMAGE = "hybridnet.test/busybox:1.35"
BUSYBOX_BINARY = Path("/bin/busybox")
"""Debian's busybox-static (make deps installs it)."""


@dataclasses.dataclass(frozen=True)
class FileEntry:
    """One entry of a layer: a regular file (``data``), a directory, or a symlink."""

    path: str
    data: bytes | None = None
    mode: int = 0o755
    symlink_to: str | None = None


@dataclasses.dataclass(frozen=True)
class ImageSpec:
    """What goes into an image: its full name, its one layer, and how it starts."""

    name: str
    entries: Sequence[FileEntry]
    entrypoint: Sequence[str]
    cmd: Sequence[str] = ()
    env: Mapping[str, str] = dataclasses.field(default_factory=dict)


def _layer_tar(entries: Sequence[FileEntry]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for entry in sorted(entries, key=lambda e: e.path):
            info = tarfile.TarInfo(entry.path.lstrip("/"))
            info.mtime = 0
            info.uid = info.gid = 0
            info.mode = entry.mode
            if entry.symlink_to is not None:
                info.type = tarfile.SYMTYPE
                info.linkname = entry.symlink_to
                tar.addfile(info)
            elif entry.data is None:
                info.type = tarfile.DIRTYPE
                tar.addfile(info)
            else:
                info.size = len(entry.data)
                tar.addfile(info, io.BytesIO(entry.data))
    return buffer.getvalue()


def _digest(data: bytes) -> str:
    return f"sha256:{hashlib.sha256(data).hexdigest()}"


def _json_bytes(document: Mapping[str, Any]) -> bytes:
    return json.dumps(document, sort_keys=True, separators=(",", ":")).encode()


def _descriptor(media_type: str, data: bytes) -> dict[str, Any]:
    return {"mediaType": media_type, "digest": _digest(data), "size": len(data)}


def write_oci_archive(spec: ImageSpec, path: Path) -> str:
    """Write ``spec`` as an OCI image layout in a tar at ``path``; return the manifest digest.

    The index names the image twice: ``io.containerd.image.name`` (the full name, which ``ctr
    images import`` uses) and ``org.opencontainers.image.ref.name`` (the tag, per the spec).
    """
    if ":" not in spec.name.rpartition("/")[2]:
        raise TestbedError(f"image name {spec.name!r} needs a tag")
    layer = _layer_tar(spec.entries)
    config = _json_bytes(
        {
            "architecture": "amd64",
            "os": "linux",
            "config": {
                "Entrypoint": list(spec.entrypoint),
                "Cmd": list(spec.cmd) or None,
                "Env": [f"{k}={v}" for k, v in spec.env.items()],
                "WorkingDir": "/",
            },
            "rootfs": {"type": "layers", "diff_ids": [_digest(layer)]},
        }
    )
    manifest = _json_bytes(
        {
            "schemaVersion": 2,
            "mediaType": MANIFEST_MEDIA_TYPE,
            "config": _descriptor(CONFIG_MEDIA_TYPE, config),
            "layers": [_descriptor(LAYER_MEDIA_TYPE, layer)],
        }
    )
    manifest_descriptor = _descriptor(MANIFEST_MEDIA_TYPE, manifest)
    manifest_descriptor["platform"] = {"architecture": "amd64", "os": "linux"}
    manifest_descriptor["annotations"] = {
        "io.containerd.image.name": spec.name,
        "org.opencontainers.image.ref.name": spec.name.rpartition(":")[2],
    }
    index = _json_bytes(
        {"schemaVersion": 2, "mediaType": INDEX_MEDIA_TYPE, "manifests": [manifest_descriptor]}
    )
    files = {
        "oci-layout": _json_bytes({"imageLayoutVersion": "1.0.0"}),
        "index.json": index,
        **{f"blobs/sha256/{_digest(b)[7:]}": b for b in (layer, config, manifest)},
    }
    entries = [FileEntry("blobs"), FileEntry("blobs/sha256")]
    entries += [FileEntry(name, data, mode=0o644) for name, data in files.items()]
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".partial")
    temporary.write_bytes(_layer_tar(entries))
    temporary.replace(path)
    return str(manifest_descriptor["digest"])


def pause_image(pause_binary: Path) -> ImageSpec:
    """The sandbox image: ``/pause`` alone, which holds the pod's namespaces and reaps."""
    return ImageSpec(
        name=PAUSE_IMAGE,
        entries=[FileEntry("pause", pause_binary.read_bytes())],
        entrypoint=["/pause"],
    )


def busybox_image(busybox: Path = BUSYBOX_BINARY) -> ImageSpec:
    """The test pods' image: static busybox with a link per applet, ``/tmp`` and ``/etc``."""
    if not busybox.is_file():
        raise TestbedError(f"{busybox} is missing (Debian's busybox-static; make deps)")
    listed = subprocess.run(
        [str(busybox), "--list-full"], capture_output=True, text=True, check=True
    ).stdout.split()
    entries = [FileEntry(d) for d in ("bin", "sbin", "usr", "usr/bin", "usr/sbin", "etc")]
    entries.append(FileEntry("tmp", mode=0o1777))
    entries.append(FileEntry("bin/busybox", busybox.read_bytes()))
    for applet in listed:
        if applet != "bin/busybox":
            target = posixpath.relpath("bin/busybox", posixpath.dirname(applet))
            entries.append(FileEntry(applet, symlink_to=target))
    entries.append(FileEntry("etc/passwd", b"root:x:0:0:root:/:/bin/sh\n", mode=0o644))
    entries.append(FileEntry("etc/group", b"root:x:0:\n", mode=0o644))
    return ImageSpec(
        name=BUSYBOX_IMAGE,
        entries=entries,
        entrypoint=["/bin/sh"],
        env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"},
    )
