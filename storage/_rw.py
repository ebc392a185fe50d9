"""Container RW layers: one per container, over the image's layers, for any driver.

    ROOT/containers/ID/upper, work   overlay, fuse-overlayfs and fusepy: the writable half
    ROOT/containers/ID/rootfs        vfs: a full copy of the image's top layer
    ROOT/containers/ID/merged        where the rootfs is mounted, in the pause namespace

``create`` returns the mount as data; whoever runs in the right mount
namespace performs it with ``perform_mount`` and undoes it with umount.
"""

from __future__ import annotations

import os

from rctr.core.errors import AlreadyExists, InvalidArgument
from rctr.core.ids import check_id

from ._build import copy_tree, remove_layer
from ._images import ImageRecord
from ._layout import StoreLayout
from ._overlay import Mount, OverlayDriver
from ._vfs import VfsDriver

__all__ = ["RWLayers", "DRIVERS"]

DRIVERS = ("overlay", "fuse-overlayfs", "fusepy", "vfs")


class RWLayers:
    def __init__(self, layout: StoreLayout, drivers: dict[str, VfsDriver | OverlayDriver]) -> None:
        self.layout = layout
        self.drivers = drivers
        self.root = os.path.join(layout.root, "containers")

    def path(self, container_id: str) -> str:
        return os.path.join(self.root, check_id(container_id))

    def create(self, container_id: str, image: ImageRecord, driver: str) -> Mount:
        """Make the container's RW layer; return the mount of its rootfs at ``merged``."""
        if driver not in self.drivers:
            raise InvalidArgument(f"unknown storage driver {driver!r} (known: {', '.join(DRIVERS)})")
        base = self.path(container_id)
        os.makedirs(self.root, mode=0o700, exist_ok=True)
        try:
            os.mkdir(base, 0o700)
        except FileExistsError:
            raise AlreadyExists(f"container {container_id} already has a RW layer") from None
        try:
            merged = os.path.join(base, "merged")
            os.mkdir(merged, 0o755)
            impl = self.drivers[driver]
            if isinstance(impl, VfsDriver):  # the driver named "vfs"
                rootfs = os.path.join(base, "rootfs")
                copy_tree(impl.prepare(image), rootfs)
                return {"type": "bind", "source": rootfs, "destination": merged,
                        "options": ["rbind"]}
            diffs = impl.prepare(image)
            upper, work = os.path.join(base, "upper"), os.path.join(base, "work")
            os.mkdir(upper, 0o755)
            os.mkdir(work, 0o700)
            return impl.mount_for(diffs, upper, work, merged)
        except BaseException:
            remove_layer(base)
            raise

    def remove(self, container_id: str) -> None:
        """Remove the RW layer (it must be unmounted); files of subuids go from inside."""
        remove_layer(self.path(container_id))
