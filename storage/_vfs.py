"""The vfs driver: each layer is a full copy of its parent plus its own changes.

Slow and big, but it needs nothing from the kernel beyond a user namespace,
so it works everywhere.  Layers are made inside the user's user namespace
(``run_in_userns``): an image file owned by uid N lands on the host as the
N-th subordinate id, and only there can the user remove it again.
"""

from __future__ import annotations

import os
import shutil
import subprocess

from rctr.core.errors import InvalidArgument
from rctr.core.userns import default_id_maps, run_in_userns

from ._blobs import BlobStore
from ._extract import apply_layer
from ._layout import StoreLayout

__all__ = ["VfsDriver"]


def _max_id(mappings: list[dict[str, int]]) -> int:
    return max(m["containerID"] + m["size"] - 1 for m in mappings)


class VfsDriver:
    name = "vfs"

    def __init__(self, layout: StoreLayout, blobs: BlobStore) -> None:
        self.layout = layout
        self.blobs = blobs

    def layer_path(self, chain_id: str) -> str:
        return self.layout.layer(self.name, chain_id)

    def prepare(self, image: dict) -> str:  # type: ignore[type-arg]
        """Extract every layer of ``image`` that is missing; return the top layer's path."""
        self.layout.ensure()
        os.makedirs(os.path.join(self.layout.layers, self.name), mode=0o700, exist_ok=True)
        uid_maps, gid_maps = default_id_maps()
        max_uid, max_gid = _max_id(uid_maps), _max_id(gid_maps)
        overflow: list[str] = []
        parent = None
        for layer, chain_id in zip(image["layers"], image["chain_ids"], strict=True):
            target = self.layer_path(chain_id)
            if not os.path.isdir(target):
                blob = self.blobs.path(layer["digest"])
                result = run_in_userns(
                    lambda b=blob, p=parent, t=target: _make_layer(  # type: ignore[misc]
                        b, p, t, self.layout.tmp, max_uid, max_gid),
                    maps=(uid_maps, gid_maps))
                overflow += result["overflow"]
            parent = target
        if overflow:
            import sys

            sys.stderr.write(
                f"warning: {len(overflow)} file(s) are owned by ids outside your subordinate "
                f"range and were stored as 65534, e.g. {overflow[0]}; give your user a larger "
                "range in /etc/subuid and /etc/subgid to keep their owners\n")
        if parent is None:
            raise InvalidArgument(f"image {image['id']} has no layers")
        return parent

    def remove(self, chain_id: str) -> None:
        target = self.layer_path(chain_id)
        if os.path.isdir(target):
            run_in_userns(lambda: shutil.rmtree(target))


def _make_layer(blob: str, parent: str | None, target: str, tmp_root: str,
                max_uid: int, max_gid: int) -> dict:  # type: ignore[type-arg]
    """Runs in the user namespace: copy the parent, apply the diff, rename into place."""
    tmp = os.path.join(tmp_root, f".vfs-{os.path.basename(target)[:12]}-{os.getpid()}")
    if parent:
        # cp -a keeps owners, modes, links and xattrs, and we are root here.
        subprocess.run(["cp", "-a", parent, tmp], check=True, capture_output=True)
    else:
        os.mkdir(tmp, 0o755)
    try:
        with open(blob, "rb") as f:
            stats = apply_layer(f, tmp, whiteouts="delete",
                                id_ok=lambda u, g: u <= max_uid and g <= max_gid)
        os.rename(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return {"overflow": list(stats.overflow_owners), "files": stats.files}
