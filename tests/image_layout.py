"""An OCI image layout archive read back with every digest checked: what the image tests assert on.

Independent of the writer (hack/image/oci.py): the archive is taken apart with tarfile alone,
each blob hashed against its name and its descriptor's size, each layer decompressed and hashed
against the config's diff ID, and the layers' entries listed.
"""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import json
import tarfile
from pathlib import Path
from typing import Any

LAYER_MEDIA_TYPE = "application/vnd.oci.image.layer.v1.tar+gzip"
MANIFEST_MEDIA_TYPE = "application/vnd.oci.image.manifest.v1+json"


@dataclasses.dataclass
class OciImage:
    """The one image of an archive: its index entry, manifest, config and layers' entries."""

    index_entry: dict[str, Any]
    manifest: dict[str, Any]
    config: dict[str, Any]
    layers: list[dict[str, tarfile.TarInfo]]

    def entry(self, name: str) -> tarfile.TarInfo:
        """The topmost layer's entry for ``name`` (which must be in some layer)."""
        for layer in reversed(self.layers):
            if name in layer:
                return layer[name]
        raise AssertionError(f"{name} is in no layer")


class _HashingReader:
    def __init__(self, source: gzip.GzipFile) -> None:
        self.source = source
        self.sha256 = hashlib.sha256()

    def read(self, size: int = -1) -> bytes:
        data = self.source.read(size)
        self.sha256.update(data)
        return data


def _blob(outer: tarfile.TarFile, digest: str, size: int | None = None) -> bytes:
    algorithm, _, hexdigest = digest.partition(":")
    assert algorithm == "sha256", digest
    handle = outer.extractfile(f"blobs/sha256/{hexdigest}")
    assert handle is not None, f"blob {digest} missing"
    data = handle.read()
    assert hashlib.sha256(data).hexdigest() == hexdigest, f"blob {digest} has other contents"
    assert size is None or len(data) == size, f"blob {digest}: {len(data)} bytes, not {size}"
    return data


def _layer(outer: tarfile.TarFile, descriptor: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """The layer's diff ID (sha256 of the uncompressed tar) and its entries by name."""
    assert descriptor["mediaType"] == LAYER_MEDIA_TYPE, descriptor
    _blob(outer, descriptor["digest"], descriptor["size"])  # the compressed bytes' digest
    handle = outer.extractfile(f"blobs/sha256/{descriptor['digest'].partition(':')[2]}")
    assert handle is not None
    with gzip.GzipFile(fileobj=handle) as uncompressed:
        reader = _HashingReader(uncompressed)
        with tarfile.open(fileobj=reader, mode="r|") as layer:  # type: ignore[call-overload]
            entries = {member.name: member for member in layer}
        while reader.read(1 << 20):  # the end-of-archive blocks count too
            pass
    return f"sha256:{reader.sha256.hexdigest()}", entries


def read_archive(path: Path) -> OciImage:
    """The archive's single image, every digest and size checked."""
    with tarfile.open(path) as outer:
        layout = json.loads(_member(outer, "oci-layout"))
        assert layout == {"imageLayoutVersion": "1.0.0"}, layout
        index = json.loads(_member(outer, "index.json"))
        assert index["schemaVersion"] == 2, index
        (entry,) = index["manifests"]
        manifest = json.loads(_blob(outer, entry["digest"], entry["size"]))
        assert manifest["mediaType"] == entry["mediaType"] == MANIFEST_MEDIA_TYPE
        config = json.loads(_blob(outer, manifest["config"]["digest"], manifest["config"]["size"]))
        diff_ids, layers = [], []
        for descriptor in manifest["layers"]:
            diff_id, entries = _layer(outer, descriptor)
            diff_ids.append(diff_id)
            layers.append(entries)
        assert config["rootfs"] == {"type": "layers", "diff_ids": diff_ids}, "diff IDs differ"
    return OciImage(entry, manifest, config, layers)


def _member(outer: tarfile.TarFile, name: str) -> bytes:
    handle = outer.extractfile(name)
    assert handle is not None, f"{name} missing from the archive"
    return handle.read()
