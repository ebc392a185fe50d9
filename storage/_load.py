"""Bringing images into the store from files: OCI layouts and docker-archive tarballs.

Every blob is copied through the blob store, so its digest is checked on the
way in; the index entry is written last.
"""

from __future__ import annotations

import hashlib
import json
import os
import tarfile

from rctr.core.arch import go_arch
from rctr.core.errors import InvalidArgument

from ._blobs import BlobStore
from ._images import ImageIndex, chain_ids
from ._layout import check_digest

__all__ = ["load_oci_layout", "load_docker_archive", "import_rootfs", "host_platform", "MEDIA_TYPES"]

MEDIA_TYPES = {
    "oci_index": "application/vnd.oci.image.index.v1+json",
    "oci_manifest": "application/vnd.oci.image.manifest.v1+json",
    "docker_list": "application/vnd.docker.distribution.manifest.list.v2+json",
    "docker_manifest": "application/vnd.docker.distribution.manifest.v2+json",
    "oci_config": "application/vnd.oci.image.config.v1+json",
    "oci_layer_tar": "application/vnd.oci.image.layer.v1.tar",
}
_INDEX_TYPES = (MEDIA_TYPES["oci_index"], MEDIA_TYPES["docker_list"])
def host_platform() -> str:
    return f"linux/{go_arch()}"


def _json(data: bytes, what: str) -> dict:  # type: ignore[type-arg]
    try:
        obj = json.loads(data)
    except ValueError as exc:
        raise InvalidArgument(f"{what} is not valid JSON: {exc}") from None
    if not isinstance(obj, dict):
        raise InvalidArgument(f"{what} must be a JSON object")
    return obj


def choose_manifest(index: dict, platform: str | None) -> dict:  # type: ignore[type-arg]
    """The manifest descriptor of an index matching ``platform`` (default: this host's)."""
    want = platform or host_platform()
    want_os, _, want_arch = want.partition("/")
    want_arch, _, want_variant = want_arch.partition("/")
    candidates = index.get("manifests") or []
    for desc in candidates:
        p = desc.get("platform") or {}
        if p.get("os") == want_os and p.get("architecture") == want_arch and \
                (not want_variant or p.get("variant") == want_variant):
            return desc  # type: ignore[no-any-return]
    offered = ", ".join(f"{(d.get('platform') or {}).get('os')}/"
                        f"{(d.get('platform') or {}).get('architecture')}" for d in candidates)
    raise InvalidArgument(f"no image for platform {want} (the index offers: {offered or 'none'})",
                          hint="pick one with --platform")


def _register(blobs: BlobStore, index: ImageIndex, manifest_digest: str, manifest: dict,  # type: ignore[type-arg]
              names: list[str]) -> dict:  # type: ignore[type-arg]
    config_digest = manifest.get("config", {}).get("digest")
    if not config_digest:
        raise InvalidArgument(f"manifest {manifest_digest} has no config")
    config = _json(blobs.read(config_digest), f"image config {config_digest}")
    diff_ids = (config.get("rootfs") or {}).get("diff_ids") or []
    layers = manifest.get("layers") or []
    if len(diff_ids) != len(layers):
        raise InvalidArgument(f"image config {config_digest} lists {len(diff_ids)} diff ids "
                              f"for {len(layers)} layers")
    record = {
        "id": config_digest, "manifest": manifest_digest, "config": config_digest,
        "layers": [{"digest": d["digest"], "mediaType": d.get("mediaType", ""),
                    "size": d.get("size", 0)} for d in layers],
        "diff_ids": diff_ids, "chain_ids": chain_ids(diff_ids),
        "platform": f"{config.get('os', 'linux')}/{config.get('architecture', '')}",
        "created": config.get("created", ""),
    }
    index.add(record, names)
    return record


def load_oci_layout(path: str, blobs: BlobStore, index: ImageIndex, *,
                    name: str | None = None, platform: str | None = None) -> list[dict]:  # type: ignore[type-arg]
    """Load every image an OCI image layout directory names (or the one, as ``name``)."""
    def copy(desc: dict) -> bytes:  # type: ignore[type-arg]
        digest = check_digest(desc.get("digest", ""))
        source = os.path.join(path, "blobs", *digest.split(":", 1))
        with open(source, "rb") as f:
            blobs.put(f, digest, desc.get("size"))
        return blobs.read(digest) if desc.get("mediaType", "").endswith("json") else b""

    try:
        with open(os.path.join(path, "index.json"), "rb") as f:
            top = _json(f.read(), "index.json")
    except FileNotFoundError:
        raise InvalidArgument(f"{path} is not an OCI image layout (no index.json)") from None
    loaded = []
    for desc in top.get("manifests") or []:
        ref = (desc.get("annotations") or {}).get("org.opencontainers.image.ref.name", "")
        if desc.get("mediaType") in _INDEX_TYPES:
            desc = choose_manifest(_json(copy(desc), "image index"), platform)
        manifest = _json(copy(desc), f"manifest {desc['digest']}")
        for item in [manifest["config"], *(manifest.get("layers") or [])]:
            copy(item)
        names = [name] if name else ([ref] if ref and (":" in ref or "/" in ref) else [])
        loaded.append(_register(blobs, index, desc["digest"], manifest, names))
    return loaded


def load_docker_archive(tar_path: str, blobs: BlobStore, index: ImageIndex) -> list[dict]:  # type: ignore[type-arg]
    """Load a ``docker save`` tarball: its layers are stored as uncompressed tar blobs."""
    from ._reference import parse_reference

    with tarfile.open(tar_path) as tar:
        def member(name: str):  # type: ignore[no-untyped-def]
            f = tar.extractfile(name)
            if f is None:
                raise InvalidArgument(f"{tar_path}: {name} is missing or not a file")
            return f

        manifest_list = json.loads(member("manifest.json").read())
        loaded = []
        for entry in manifest_list:
            config_raw = member(entry["Config"]).read()
            config_digest = blobs.put_bytes(config_raw)
            layers = []
            for layer_name in entry["Layers"]:
                digest, size = blobs.add(member(layer_name))
                layers.append({"mediaType": MEDIA_TYPES["oci_layer_tar"], "digest": digest,
                               "size": size})
            manifest = {"schemaVersion": 2, "mediaType": MEDIA_TYPES["oci_manifest"],
                        "config": {"mediaType": MEDIA_TYPES["oci_config"],
                                   "digest": config_digest, "size": len(config_raw)},
                        "layers": layers}
            manifest_digest = blobs.put_bytes(json.dumps(manifest, separators=(",", ":")).encode())
            names = [str(parse_reference(t)) for t in entry.get("RepoTags") or []]
            loaded.append(_register(blobs, index, manifest_digest, manifest, names))
        return loaded


def import_rootfs(tar_path: str, blobs: BlobStore, index: ImageIndex, name: str | None = None,
                  *, cmd: list[str] | None = None) -> dict:  # type: ignore[type-arg]
    """``rctr import``: one layer made of a rootfs tarball (plain or gzip), as Docker does it.

    The layer is stored as it came; its diff id is the digest of the uncompressed tar.
    """
    import gzip
    import time

    with open(tar_path, "rb") as f:
        gzipped = f.read(2) == b"\x1f\x8b"
    with open(tar_path, "rb") as f:  # streamed: a rootfs tarball may be large
        layer_digest, size = blobs.add(f)
    if gzipped:
        diff = hashlib.sha256()
        with gzip.open(tar_path, "rb") as f:
            while chunk := f.read(1 << 20):
                diff.update(chunk)
        diff_id = "sha256:" + diff.hexdigest()
    else:
        diff_id = layer_digest  # an uncompressed layer is its own diff
    architecture = host_platform().split("/", 1)[1]
    config = {"architecture": architecture, "os": "linux",
              "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
              "config": {"Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
                         **({"Cmd": cmd} if cmd else {})},
              "rootfs": {"type": "layers", "diff_ids": [diff_id]},
              "history": [{"created_by": f"rctr import {os.path.basename(tar_path)}"}]}
    config_raw = json.dumps(config, separators=(",", ":")).encode()
    config_digest = blobs.put_bytes(config_raw)
    layer_type = MEDIA_TYPES["oci_layer_tar"] + ("+gzip" if gzipped else "")
    manifest = {"schemaVersion": 2, "mediaType": MEDIA_TYPES["oci_manifest"],
                "config": {"mediaType": MEDIA_TYPES["oci_config"], "digest": config_digest,
                           "size": len(config_raw)},
                "layers": [{"mediaType": layer_type, "digest": layer_digest, "size": size}]}
    manifest_digest = blobs.put_bytes(json.dumps(manifest, separators=(",", ":")).encode())
    return _register(blobs, index, manifest_digest, manifest, [name] if name else [])
