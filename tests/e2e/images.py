"""Tiny OCI images written without a daemon: one tar layer, a config and a manifest."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"


@dataclass(frozen=True)
class Descriptor:
    media_type: str
    digest: str
    size: int

    def as_json(self) -> dict[str, object]:
        return {"mediaType": self.media_type, "digest": self.digest, "size": self.size}


def _write_blob(layout: Path, media_type: str, content: bytes) -> Descriptor:
    digest = hashlib.sha256(content).hexdigest()
    blob = layout / "blobs" / "sha256" / digest
    blob.parent.mkdir(parents=True, exist_ok=True)
    blob.write_bytes(content)
    return Descriptor(media_type, f"sha256:{digest}", len(content))


def _layer_tar(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, content in sorted(files.items()):
            info = tarfile.TarInfo(name)
            info.size = len(content)
            info.mode = 0o644
            info.mtime = 0
            tar.addfile(info, io.BytesIO(content))
    return buffer.getvalue()


def write_oci_image(layout: Path, tag: str, files: dict[str, bytes]) -> str:
    """Add an image holding `files` to the OCI layout `layout` under `tag`; return its digest.

    The content is deterministic, so the same files give the same manifest digest.
    """
    layout.mkdir(parents=True, exist_ok=True)
    (layout / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')
    tar = _layer_tar(files)
    layer = _write_blob(layout, OCI_LAYER, gzip.compress(tar, mtime=0))
    config = {
        "architecture": "amd64",
        "os": "linux",
        "config": {"Cmd": ["/hello.txt"]},
        "rootfs": {"type": "layers", "diff_ids": [f"sha256:{hashlib.sha256(tar).hexdigest()}"]},
    }
    config_descriptor = _write_blob(layout, OCI_CONFIG, json.dumps(config).encode())
    manifest = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": config_descriptor.as_json(),
        "layers": [layer.as_json()],
    }
    manifest_descriptor = _write_blob(layout, OCI_MANIFEST, json.dumps(manifest).encode())
    index_path = layout / "index.json"
    manifests: list[dict[str, Any]] = (
        json.loads(index_path.read_text())["manifests"] if index_path.exists() else []
    )
    manifests = [
        entry
        for entry in manifests
        if entry.get("annotations", {}).get("org.opencontainers.image.ref.name") != tag
    ]
    manifests.append(
        {
            **manifest_descriptor.as_json(),
            "annotations": {"org.opencontainers.image.ref.name": tag},
        }
    )
    index_path.write_text(json.dumps({"schemaVersion": 2, "manifests": manifests}))
    return manifest_descriptor.digest
