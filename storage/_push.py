"""Publishing an image from the store to a registry (``rctr push``).

Blobs go first (those the registry has are skipped), the manifest last, so
the tag never names a manifest whose blobs are missing.  The manifest is
pushed byte for byte: its digest stays the one the store knows.
"""

from __future__ import annotations

import json
import os

from ._blobs import BlobStore
from ._images import ImageIndex
from ._reference import parse_reference
from ._registry import RegistryClient

__all__ = ["push"]


def push(client: RegistryClient, local: str, remote: str, blobs: BlobStore,
         index: ImageIndex, progress=None) -> dict[str, object]:  # type: ignore[no-untyped-def]
    """Push the image named ``local`` as ``remote``; returns the digest and blob counts."""
    image = index.get(local)
    ref = parse_reference(remote)
    raw = blobs.read(image["manifest"])
    media_type = json.loads(raw).get("mediaType") or "application/vnd.oci.image.manifest.v1+json"
    sent = skipped = 0
    for digest in [image["config"], *(layer["digest"] for layer in image["layers"])]:
        path = blobs.path(digest)
        size = os.path.getsize(path)
        with open(path, "rb") as f:
            if client.push_blob(ref, digest, f, size):
                sent += 1
            else:
                skipped += 1
        if progress:
            progress(digest, size, size)
    digest = client.put_manifest(ref, raw, media_type)
    return {"digest": digest, "blobs_sent": sent, "blobs_skipped": skipped}
