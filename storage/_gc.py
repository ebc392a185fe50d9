"""Collecting what a crash or a removal left behind.

Work in progress lives under tmp/ with the owner's pid at the end of its name
(``blob-…-PID``, ``.layer-…-PID``): an entry whose process is gone is garbage.
Blobs and layers no image refers to are garbage for ``prune``.  Layer files
belong to subordinate ids, so they are removed from inside the user namespace.
"""

from __future__ import annotations

import os
import shutil

from ._build import remove_layer
from ._images import ImageIndex
from ._layout import StoreLayout

__all__ = ["collect_tmp", "prune"]


def _owner_alive(name: str) -> bool:
    tail = name.rsplit("-", 1)[-1]
    if not tail.isdigit():
        return False
    try:
        os.kill(int(tail), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _remove(path: str) -> None:
    try:
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path)
        else:
            os.unlink(path)
    except PermissionError:
        remove_layer(path)  # owned by subordinate ids: remove from inside


def collect_tmp(layout: StoreLayout) -> list[str]:
    """Remove tmp/ entries whose owning process is gone; return their names."""
    try:
        names = os.listdir(layout.tmp)
    except FileNotFoundError:
        return []
    removed = []
    for name in names:
        if not _owner_alive(name):
            _remove(os.path.join(layout.tmp, name))
            removed.append(name)
    return removed


def prune(layout: StoreLayout, index: ImageIndex) -> dict[str, int]:
    """Remove blobs and layers that no image in the index refers to."""
    images = index.list()
    wanted_blobs: set[str] = set()
    wanted_chains: set[str] = set()
    for image in images:
        wanted_blobs.update([image["manifest"], image["config"]])
        wanted_blobs.update(layer["digest"] for layer in image["layers"])
        wanted_chains.update(c[7:] for c in image["chain_ids"])
    counts = {"blobs": 0, "layers": 0}
    if os.path.isdir(layout.blobs):
        for name in os.listdir(layout.blobs):
            if "sha256:" + name not in wanted_blobs:
                os.unlink(os.path.join(layout.blobs, name))
                counts["blobs"] += 1
    if os.path.isdir(layout.layers):
        for driver in os.listdir(layout.layers):
            for name in os.listdir(os.path.join(layout.layers, driver)):
                if name not in wanted_chains:
                    _remove(os.path.join(layout.layers, driver, name))
                    counts["layers"] += 1
    return counts
