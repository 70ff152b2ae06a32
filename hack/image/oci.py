"""OCI image layout, written here: layers from directories, then config, manifest and index.

No registry and no image tool are involved: a layer is a gzip-compressed tar of part of a root
file system, named by the sha256 of its compressed bytes (the blob digest) and listed in the
config by the sha256 of its uncompressed tar (the diff ID); the archive is the image layout
(``oci-layout``, ``index.json``, ``blobs/sha256/...``) in an uncompressed tar, which ``podman
load`` and ``ctr images import`` read.
"""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import io
import json
import tarfile
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

from hack.image.errors import ImageBuildError

if TYPE_CHECKING:
    from _typeshed import ReadableBuffer

LAYER_MEDIA_TYPE = "application/vnd.oci.image.layer.v1.tar+gzip"
CONFIG_MEDIA_TYPE = "application/vnd.oci.image.config.v1+json"
MANIFEST_MEDIA_TYPE = "application/vnd.oci.image.manifest.v1+json"
INDEX_MEDIA_TYPE = "application/vnd.oci.image.index.v1+json"
CONTAINERD_NAME = "io.containerd.image.name"
REF_NAME = "org.opencontainers.image.ref.name"


@dataclasses.dataclass(frozen=True)
class Layer:
    """A compressed layer in a file, with the two digests the image needs."""

    path: Path
    digest: str
    size: int
    diff_id: str
    created_by: str

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self) | {"path": str(self.path)}

    @classmethod
    def from_json(cls, document: Mapping[str, Any]) -> Layer:
        return cls(
            path=Path(document["path"]),
            digest=str(document["digest"]),
            size=int(document["size"]),
            diff_id=str(document["diff_id"]),
            created_by=str(document["created_by"]),
        )


class _Hashing(io.RawIOBase):
    """A write-only stream that hashes and counts what passes through to ``sink``."""

    def __init__(self, sink: BinaryIO | gzip.GzipFile) -> None:
        super().__init__()
        self.sink = sink
        self.sha256 = hashlib.sha256()
        self.size = 0

    def writable(self) -> bool:
        return True

    def write(self, data: ReadableBuffer) -> int:
        chunk = bytes(data)
        self.sha256.update(chunk)
        self.size += len(chunk)
        self.sink.write(chunk)
        return len(chunk)

    def digest(self) -> str:
        return f"sha256:{self.sha256.hexdigest()}"


def _member_filter(tarinfo: tarfile.TarInfo) -> tarfile.TarInfo | None:
    """Device nodes and FIFOs stay out (the runtime makes /dev); owners go by number only."""
    if tarinfo.ischr() or tarinfo.isblk() or tarinfo.isfifo():
        return None
    tarinfo.uname = tarinfo.gname = ""
    return tarinfo


def write_layer(
    root: Path, members: Iterable[str], out: Path, created_by: str, excluded: Sequence[str] = ()
) -> Layer:
    """Write the paths ``members`` (relative to ``root``, each with what is under it) as one
    layer to ``out``. Entries under a path of ``excluded`` are left out; the path itself stays
    (an empty /dev). Hardlinks inside the layer stay hardlinks."""
    skipped = tuple(path.strip("/") for path in excluded)

    def keep(tarinfo: tarfile.TarInfo) -> tarfile.TarInfo | None:
        if any(tarinfo.name.startswith(f"{prefix}/") for prefix in skipped):
            return None
        return _member_filter(tarinfo)

    with out.open("wb") as raw:
        compressed = _Hashing(raw)
        with gzip.GzipFile(fileobj=compressed, mode="wb", compresslevel=6, mtime=0) as zipped:
            uncompressed = _Hashing(zipped)
            with tarfile.open(fileobj=uncompressed, mode="w|", format=tarfile.PAX_FORMAT) as tar:
                for member in sorted(members):
                    source = root / member
                    if not source.exists() and not source.is_symlink():
                        raise ImageBuildError(f"layer member {member} is not in {root}")
                    tar.add(source, arcname=member, filter=keep)
    return Layer(
        path=out,
        digest=compressed.digest(),
        size=compressed.size,
        diff_id=uncompressed.digest(),
        created_by=created_by,
    )


def whole_tree(root: Path) -> list[str]:
    """Every top-level entry of ``root``: the members of a layer holding all of it."""
    return sorted(entry.name for entry in root.iterdir())


@dataclasses.dataclass(frozen=True)
class ImageConfig:
    """How the image starts, as the OCI config's ``config`` object says it."""

    env: Sequence[tuple[str, str]]
    cmd: Sequence[str]
    entrypoint: Sequence[str]
    workdir: str
    labels: Mapping[str, str]


def _json_bytes(document: Mapping[str, Any]) -> bytes:
    return json.dumps(document, sort_keys=True, separators=(",", ":")).encode()


def _digest(data: bytes) -> str:
    return f"sha256:{hashlib.sha256(data).hexdigest()}"


def config_document(layers: Sequence[Layer], config: ImageConfig, created: str) -> dict[str, Any]:
    """The image config: platform, run settings, the layers' diff IDs and their history."""
    run: dict[str, Any] = {
        "Env": [f"{key}={value}" for key, value in config.env],
        "WorkingDir": config.workdir,
        "Labels": dict(config.labels),
    }
    if config.cmd:
        run["Cmd"] = list(config.cmd)
    if config.entrypoint:
        run["Entrypoint"] = list(config.entrypoint)
    return {
        "created": created,
        "architecture": "amd64",
        "os": "linux",
        "config": run,
        "rootfs": {"type": "layers", "diff_ids": [layer.diff_id for layer in layers]},
        "history": [{"created": created, "created_by": layer.created_by} for layer in layers],
    }


def write_archive(
    out: Path, layers: Sequence[Layer], config: ImageConfig, name: str, created: str
) -> str:
    """Write the image layout tar to ``out`` (via a temporary name); return the manifest digest.

    ``name`` is the full reference (``docker.io/library/hybridnet:0.1.0``): containerd takes it
    from ``io.containerd.image.name``; ``org.opencontainers.image.ref.name`` carries it too,
    which podman uses as the image's name."""
    config_bytes = _json_bytes(config_document(layers, config, created))
    manifest = _json_bytes(
        {
            "schemaVersion": 2,
            "mediaType": MANIFEST_MEDIA_TYPE,
            "config": {
                "mediaType": CONFIG_MEDIA_TYPE,
                "digest": _digest(config_bytes),
                "size": len(config_bytes),
            },
            "layers": [
                {"mediaType": LAYER_MEDIA_TYPE, "digest": layer.digest, "size": layer.size}
                for layer in layers
            ],
        }
    )
    manifest_digest = _digest(manifest)
    index = _json_bytes(
        {
            "schemaVersion": 2,
            "mediaType": INDEX_MEDIA_TYPE,
            "manifests": [
                {
                    "mediaType": MANIFEST_MEDIA_TYPE,
                    "digest": manifest_digest,
                    "size": len(manifest),
                    "platform": {"architecture": "amd64", "os": "linux"},
                    "annotations": {CONTAINERD_NAME: name, REF_NAME: name},
                }
            ],
        }
    )
    partial = out.with_name(out.name + ".partial")
    with tarfile.open(partial, "w", format=tarfile.PAX_FORMAT) as tar:
        _add_bytes(tar, "oci-layout", _json_bytes({"imageLayoutVersion": "1.0.0"}))
        _add_bytes(tar, "index.json", index)
        _add_directory(tar, "blobs")
        _add_directory(tar, "blobs/sha256")
        for layer in layers:
            _add_file(tar, _blob_name(layer.digest), layer.path)
        _add_bytes(tar, _blob_name(_digest(config_bytes)), config_bytes)
        _add_bytes(tar, _blob_name(manifest_digest), manifest)
    partial.replace(out)
    return manifest_digest


def _blob_name(digest: str) -> str:
    algorithm, _, hexdigest = digest.partition(":")
    return f"blobs/{algorithm}/{hexdigest}"


def _entry(name: str, kind: bytes, size: int = 0) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.size = size
    info.mode = 0o755 if kind == tarfile.DIRTYPE else 0o644
    return info


def _add_directory(tar: tarfile.TarFile, name: str) -> None:
    tar.addfile(_entry(name, tarfile.DIRTYPE))


def _add_bytes(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    tar.addfile(_entry(name, tarfile.REGTYPE, len(data)), io.BytesIO(data))


def _add_file(tar: tarfile.TarFile, name: str, path: Path) -> None:
    with path.open("rb") as source:
        tar.addfile(_entry(name, tarfile.REGTYPE, path.stat().st_size), source)
