"""Publishing an image from the store to a registry (``rctr push``).

Blobs go first (those the registry has are skipped), the manifest last, so
the tag never names a manifest whose blobs are missing.  The manifest is
pushed byte for byte: its digest stays the one the store knows.

``progress(digest, done, total, skipped)`` hears each blob: byte counts while
it uploads, then once more with ``done == total`` (``skipped`` when the
registry had it already and nothing was sent).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from typing import BinaryIO

from ._blobs import BlobStore
from ._images import ImageIndex
from ._reference import parse_reference
from ._registry import RegistryClient

__all__ = ["push", "PushProgress"]

PushProgress = Callable[[str, int, int, bool], None]  # (digest, done, total, skipped)


def push(client: RegistryClient, local: str, remote: str, blobs: BlobStore,
         index: ImageIndex, progress: PushProgress | None = None) -> dict[str, object]:
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
            source = _Counting(f, _reporter(progress, digest, size)) if progress else f
            pushed = client.push_blob(ref, digest, source, size)
        sent, skipped = sent + pushed, skipped + (not pushed)
        if progress:
            progress(digest, size, size, not pushed)
    digest = client.put_manifest(ref, raw, media_type)
    index.add(image, [f"{ref.name}@{digest}"])  # Docker's RepoDigests after a push
    return {"digest": digest, "blobs_sent": sent, "blobs_skipped": skipped}


def _reporter(progress: PushProgress, digest: str, size: int) -> Callable[[int], None]:
    return lambda done: progress(digest, done, size, False)


class _Counting:
    """A file that reports how many bytes were read from it (http.client reads in blocks)."""

    def __init__(self, f: BinaryIO, report: Callable[[int], None]) -> None:
        self.f, self.report, self.done = f, report, 0

    def read(self, n: int = -1) -> bytes:
        data = self.f.read(n)
        self.done += len(data)
        if data:
            self.report(self.done)
        return data

    def seek(self, offset: int, whence: int = 0) -> int:
        """Start again (the client rewinds a body it must send anew, after an auth challenge)."""
        self.done = self.f.seek(offset, whence)
        return self.done
