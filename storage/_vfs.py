"""The vfs driver: each layer is a full copy of its parent plus its own changes.

Slow and big, but it needs nothing from the kernel beyond a user namespace,
so it works everywhere.  Layers are made inside the user's user namespace
(``run_in_userns``): an image file owned by uid N lands on the host as the
N-th subordinate id, and only there can the user remove it again.
"""

from __future__ import annotations

import os
from collections.abc import Callable

from rctr.core.errors import InvalidArgument

from ._blobs import BlobStore
from ._build import build_layer, remove_layer, warn_overflow
from ._images import ImageRecord
from ._layout import StoreLayout

__all__ = ["VfsDriver"]


class VfsDriver:
    name = "vfs"

    def __init__(self, layout: StoreLayout, blobs: BlobStore) -> None:
        self.layout = layout
        self.blobs = blobs

    def layer_path(self, chain_id: str) -> str:
        return self.layout.layer(self.name, chain_id)

    def prepare(self, image: ImageRecord,
                on_layer: Callable[[str], None] | None = None) -> str:
        """Extract every layer of ``image`` that is missing; return the top layer's path."""
        self.layout.ensure()
        os.makedirs(os.path.join(self.layout.layers, self.name), mode=0o700, exist_ok=True)
        overflow: list[str] = []
        parent = None
        for layer, chain_id in zip(image["layers"], image["chain_ids"], strict=True):
            target = self.layer_path(chain_id)
            if not os.path.isdir(target):
                if on_layer is not None:
                    on_layer(layer["digest"])  # about to extract it (a pull's progress)
                overflow += build_layer(self.blobs.path(layer["digest"]), target,
                                        self.layout.tmp, whiteouts="delete", parent=parent)
            parent = target
        warn_overflow(overflow)
        if parent is None:
            raise InvalidArgument(f"image {image['id']} has no layers")
        return parent

    def remove(self, chain_id: str) -> None:
        remove_layer(self.layer_path(chain_id))
