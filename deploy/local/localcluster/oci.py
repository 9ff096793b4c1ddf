"""Pack a root filesystem directory as a one-layer OCI image archive, without any registry or tool.

The archive is an OCI image layout (oci-layout, index.json, blobs/sha256/...) in a tar file, which
`ctr images import` reads. The layer is an uncompressed tar, written deterministically: entries in
sorted order, numeric owners only, no atime/ctime, file mtimes kept (Python's .pyc files are
validated against their source's mtime). The same directory therefore always gives the same digests.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import stat
import tarfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

LAYER_MEDIA_TYPE = "application/vnd.oci.image.layer.v1.tar"
CONFIG_MEDIA_TYPE = "application/vnd.oci.image.config.v1+json"
MANIFEST_MEDIA_TYPE = "application/vnd.oci.image.manifest.v1+json"
INDEX_MEDIA_TYPE = "application/vnd.oci.image.index.v1+json"
# containerd names an imported image after this annotation of its index entry
CONTAINERD_NAME_ANNOTATION = "io.containerd.image.name"
REF_NAME_ANNOTATION = "org.opencontainers.image.ref.name"
# Kernel file systems and device nodes belong to the runtime, not to an image: keep the directories empty.
EMPTY_DIRS = ("dev", "proc", "sys")
CHUNK = 1 << 20


@dataclass(frozen=True)
class Blob:
    digest: str  # "sha256:<hex>"
    size: int
    media_type: str

    def descriptor(self, annotations: Mapping[str, str] | None = None) -> dict[str, object]:
        d: dict[str, object] = {"mediaType": self.media_type, "digest": self.digest, "size": self.size}
        if annotations:
            d["annotations"] = dict(annotations)
        return d


@dataclass(frozen=True)
class ImageSpec:
    """What the image config says beside its layer: environment, entrypoint/cmd, labels."""

    env: Sequence[str]
    cmd: Sequence[str] = ()
    entrypoint: Sequence[str] = ()
    working_dir: str = "/"
    labels: Mapping[str, str] | None = None
    user: str | None = None
    created: str = "1970-01-01T00:00:00Z"  # fixed, so the config digest depends on content only


def blob_of(data: bytes, media_type: str) -> Blob:
    return Blob("sha256:" + hashlib.sha256(data).hexdigest(), len(data), media_type)


def canonical_json(doc: object) -> bytes:
    return json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()


def iter_rootfs(rootfs: Path) -> Iterator[tuple[Path, str]]:
    """(path, archive name) of everything in `rootfs` in sorted order, parents before children;
    the contents of /dev, /proc and /sys are left out."""

    def walk(directory: Path, prefix: str) -> Iterator[tuple[Path, str]]:
        for name in sorted(os.listdir(directory)):
            path = directory / name
            arcname = f"{prefix}{name}"
            yield path, arcname
            if path.is_dir() and not path.is_symlink() and arcname not in EMPTY_DIRS:
                yield from walk(path, arcname + "/")

    yield from walk(rootfs, "")


def _normalise(info: tarfile.TarInfo) -> tarfile.TarInfo:
    info.uname = ""
    info.gname = ""
    info.mtime = int(info.mtime)
    return info


def write_layer(rootfs: Path, out: BinaryIO) -> None:
    """Write `rootfs` as an uncompressed, deterministic layer tar to `out`."""
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for path, arcname in iter_rootfs(rootfs):
            mode = path.lstat().st_mode
            if stat.S_ISSOCK(mode) or stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
                continue
            info = _normalise(tar.gettarinfo(str(path), arcname))
            if info.isreg():
                with open(path, "rb") as f:
                    tar.addfile(info, f)
            else:
                tar.addfile(info)


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            h.update(chunk)
    return "sha256:" + h.hexdigest()


def build_config(spec: ImageSpec, diff_id: str) -> dict[str, object]:
    config: dict[str, object] = {"Env": list(spec.env), "WorkingDir": spec.working_dir}
    if spec.cmd:
        config["Cmd"] = list(spec.cmd)
    if spec.entrypoint:
        config["Entrypoint"] = list(spec.entrypoint)
    if spec.labels:
        config["Labels"] = dict(spec.labels)
    if spec.user:
        config["User"] = spec.user
    return {
        "architecture": "amd64",
        "os": "linux",
        "created": spec.created,
        "config": config,
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
        "history": [{"created": spec.created, "created_by": "deploy/local/localcluster/oci.py"}],
    }


def build_manifest(config: Blob, layer: Blob) -> dict[str, object]:
    return {
        "schemaVersion": 2,
        "mediaType": MANIFEST_MEDIA_TYPE,
        "config": config.descriptor(),
        "layers": [layer.descriptor()],
    }


def build_index(manifest: Blob, refs: Sequence[str]) -> dict[str, object]:
    """One index entry per reference (e.g. name:<content-hash> and name:local), same manifest."""
    entries = [
        manifest.descriptor({CONTAINERD_NAME_ANNOTATION: ref, REF_NAME_ANNOTATION: ref.rsplit(":", 1)[1]})
        for ref in refs
    ]
    return {"schemaVersion": 2, "mediaType": INDEX_MEDIA_TYPE, "manifests": entries}


def _add_bytes(tar: tarfile.TarFile, name: str, data: bytes, mode: int = 0o644) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = mode
    tar.addfile(info, io.BytesIO(data))


def _add_dir(tar: tarfile.TarFile, name: str) -> None:
    info = tarfile.TarInfo(name)
    info.type = tarfile.DIRTYPE
    info.mode = 0o755
    tar.addfile(info)


def write_archive(rootfs: Path, spec: ImageSpec, refs: Sequence[str], archive: Path) -> str:
    """Pack `rootfs` into the OCI archive `archive` naming it `refs`; returns the manifest digest."""
    layer_path = archive.with_name(archive.name + ".layer")
    with open(layer_path, "wb") as f:
        write_layer(rootfs, f)
    try:
        layer = Blob(_sha256_file(layer_path), layer_path.stat().st_size, LAYER_MEDIA_TYPE)
        config_bytes = canonical_json(build_config(spec, layer.digest))
        config = blob_of(config_bytes, CONFIG_MEDIA_TYPE)
        manifest_bytes = canonical_json(build_manifest(config, layer))
        manifest = blob_of(manifest_bytes, MANIFEST_MEDIA_TYPE)
        index_bytes = canonical_json(build_index(manifest, refs))
        with tarfile.open(archive, mode="w", format=tarfile.PAX_FORMAT) as tar:
            _add_bytes(tar, "oci-layout", canonical_json({"imageLayoutVersion": "1.0.0"}))
            _add_bytes(tar, "index.json", index_bytes)
            for d in ("blobs", "blobs/sha256"):
                _add_dir(tar, d)
            _add_bytes(tar, f"blobs/sha256/{config.digest[7:]}", config_bytes)
            _add_bytes(tar, f"blobs/sha256/{manifest.digest[7:]}", manifest_bytes)
            info = tarfile.TarInfo(f"blobs/sha256/{layer.digest[7:]}")
            info.size = layer.size
            info.mode = 0o644
            with open(layer_path, "rb") as f:
                tar.addfile(info, f)
    finally:
        layer_path.unlink(missing_ok=True)
    return manifest.digest
