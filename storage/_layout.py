"""The store's on-disk layout, defined once.

    ROOT/                         ($XDG_DATA_HOME/rctr/storage)
      blobs/sha256/HEX            content by digest, verified before it is renamed in
      layers/DRIVER/CHAINHEX/     one extracted layer per chain id, shared by every image
      images.json                 the image index (ids, names, manifests), written atomically
      tmp/                        downloads and extractions in progress; emptied at start

Names starting with a dot are half-made or half-deleted and are never loaded.
"""

from __future__ import annotations

import os
import re

from rctr.core.errors import InvalidArgument

__all__ = ["StoreLayout", "check_digest"]

_DIGEST_RE = re.compile(r"^sha256:[0-9a-f]{64}$")


def check_digest(digest: str) -> str:
    """A digest we store: ``sha256:`` and 64 lowercase hex digits, nothing else."""
    if not isinstance(digest, str) or not _DIGEST_RE.match(digest):
        raise InvalidArgument(f"invalid digest {digest!r}: expected sha256:<64 hex digits>")
    return digest


class StoreLayout:
    def __init__(self, root: str) -> None:
        self.root = root
        self.blobs = os.path.join(root, "blobs", "sha256")
        self.layers = os.path.join(root, "layers")
        self.tmp = os.path.join(root, "tmp")
        self.images_index = os.path.join(root, "images.json")

    def ensure(self) -> None:
        for d in (self.root, self.blobs, self.layers, self.tmp):
            os.makedirs(d, mode=0o700, exist_ok=True)

    def blob(self, digest: str) -> str:
        return os.path.join(self.blobs, check_digest(digest)[len("sha256:"):])

    def layer(self, driver: str, chain_id: str) -> str:
        return os.path.join(self.layers, driver, check_digest(chain_id)[len("sha256:"):])
