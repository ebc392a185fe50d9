"""Writing images out of the store: an OCI image layout, as a directory or a tar.

Blobs are copied byte for byte, so a save then a load keeps every digest.
Beside the layout goes Docker's ``manifest.json`` (config and layers by
their paths under ``blobs/``, and the tags), as ``docker save`` writes it
since Docker 25: one archive that loads as OCI and as a docker-archive,
also into an older Docker (its load decompresses layers itself).
"""

from __future__ import annotations

import io
import json
import os
import tarfile

from ._blobs import BlobStore
from ._images import ImageIndex, ImageRecord
from ._load import Descriptor
from ._reference import familiar

__all__ = ["save_oci"]

_MANIFEST = "application/vnd.oci.image.manifest.v1+json"


def _index(images: list[ImageRecord], blobs: BlobStore) -> bytes:
    manifests: list[Descriptor] = []
    for image in images:
        raw = blobs.read(image["manifest"])
        media_type = json.loads(raw).get("mediaType") or _MANIFEST
        for name in image["names"] or [""]:  # no name: one entry, not annotated
            desc: Descriptor = {"mediaType": media_type, "digest": image["manifest"],
                                "size": len(raw)}
            if name:
                desc["annotations"] = {"org.opencontainers.image.ref.name": name}
            manifests.append(desc)
    return json.dumps({"schemaVersion": 2, "manifests": manifests}, indent=2).encode()


def _docker_manifest(images: list[ImageRecord]) -> bytes:
    """Docker's ``manifest.json``: one entry per image, its tags in Docker's short form."""
    def path(digest: str) -> str:
        return f"blobs/sha256/{digest[7:]}"

    entries = [{"Config": path(image["config"]),
                "RepoTags": [familiar(n) for n in image["names"] if "@" not in n],
                "Layers": [path(layer["digest"]) for layer in image["layers"]]}
               for image in images]
    return json.dumps(entries, indent=2).encode()


def _blob_digests(image: ImageRecord) -> list[str]:
    return [image["manifest"], image["config"], *(layer["digest"] for layer in image["layers"])]


def save_oci(refs: list[str], blobs: BlobStore, index: ImageIndex, out: str) -> None:
    """Save the images ``refs`` name as an OCI layout (``out`` a directory, or a ``.tar``)."""
    images = [index.get(ref) for ref in refs]
    digests = list(dict.fromkeys(d for image in images for d in _blob_digests(image)))
    files = {"oci-layout": json.dumps({"imageLayoutVersion": "1.0.0"}).encode(),
             "index.json": _index(images, blobs),
             "manifest.json": _docker_manifest(images)}
    if out.endswith(".tar"):
        tmp = f"{out}.tmp-{os.getpid()}"
        with tarfile.open(tmp, "w", format=tarfile.PAX_FORMAT) as tar:
            for name, data in files.items():
                info = tarfile.TarInfo(name)
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
            for digest in digests:
                tar.add(blobs.path(digest), arcname=f"blobs/sha256/{digest[7:]}")
        os.rename(tmp, out)
        return
    os.makedirs(os.path.join(out, "blobs", "sha256"), exist_ok=True)
    for digest in digests:
        target = os.path.join(out, "blobs", "sha256", digest[7:])
        if not os.path.exists(target):
            with blobs.open(digest) as src, open(target, "wb") as dst:
                while chunk := src.read(1 << 20):
                    dst.write(chunk)
    for name, data in files.items():
        with open(os.path.join(out, name), "wb") as f:
            f.write(data)
