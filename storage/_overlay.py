"""The overlay driver: kernel overlayfs mounted inside the user's user namespace.

Linux >= 5.11 lets a user namespace mount overlayfs with ``userxattr``: the
layers keep their whiteouts as 0:0 character devices and opaque directories
as ``user.overlay.opaque`` (design brief, section 5).  Each layer is extracted
once, on its own, into ``layers/overlay/CHAINHEX/diff``; a container's view is
an overlay of those diffs with its own upper directory.

The driver never mounts by itself: ``mount_for`` returns the mount as data (the
shape of an OCI ``mounts`` entry), and the process in the right mount
namespace performs it.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import TypedDict

from rctr.core import launch

from ._blobs import BlobStore
from ._build import build_layer, warn_overflow
from ._images import ImageRecord
from ._layout import StoreLayout

__all__ = ["OverlayDriver", "FuseOverlayDriver", "FusepyDriver", "Mount", "perform_mount"]


class Mount(TypedDict):
    """A mount as data: the shape of an OCI ``mounts`` entry."""

    type: str
    source: str
    destination: str
    options: list[str]


class OverlayDriver:
    name = "overlay"
    layers_name = "overlay"  # the layer form on disk; fuse-overlayfs reads the same one

    def __init__(self, layout: StoreLayout, blobs: BlobStore) -> None:
        self.layout = layout
        self.blobs = blobs

    def diff_path(self, chain_id: str) -> str:
        return os.path.join(self.layout.layer(self.layers_name, chain_id), "diff")

    def prepare(self, image: ImageRecord,
                on_layer: Callable[[str], None] | None = None) -> list[str]:
        """Extract every missing layer; return the diff directories, lowest first."""
        self.layout.ensure()
        os.makedirs(os.path.join(self.layout.layers, self.layers_name), mode=0o700, exist_ok=True)
        diffs: list[str] = []
        overflow: list[str] = []
        for layer, chain_id in zip(image["layers"], image["chain_ids"], strict=True):
            target = self.layout.layer(self.layers_name, chain_id)
            if not os.path.isdir(target):
                if on_layer is not None:
                    on_layer(layer["digest"])  # about to extract it (a pull's progress)
                overflow += build_layer(self.blobs.path(layer["digest"]), target,
                                        self.layout.tmp, whiteouts="overlay", into="diff")
            diffs.append(self.diff_path(chain_id))
        warn_overflow(overflow)
        return diffs

    # Kernel overlayfs needs userxattr in a user namespace; the FUSE ones take no such option.
    extra_options: tuple[str, ...] = ("userxattr",)

    def mount_for(self, diffs: list[str], upper: str, work: str, target: str) -> Mount:
        """The mount of ``diffs`` (lowest first) with a writable ``upper``, as data."""
        lower = ":".join(reversed(diffs))  # overlayfs lists the top layer first
        return {"type": self.name, "source": self.name, "destination": target,
                "options": [f"lowerdir={lower}", f"upperdir={upper}", f"workdir={work}",
                            *self.extra_options]}


class FuseOverlayDriver(OverlayDriver):
    """fuse-overlayfs over the overlay driver's layers, for kernels that refuse
    overlayfs in a user namespace (before 5.11).  Its mount is a process."""

    name = "fuse-overlayfs"
    extra_options = ()


class FusepyDriver(OverlayDriver):
    """The overlay driver's layers served by ``rctr.storage._fusepy``, an overlay
    filesystem in Python on fusepy, where neither of the above works.  Its mount
    is a process too."""

    name = "fusepy"
    extra_options = ()


_MOUNT_PROGRAMS = {
    "fuse-overlayfs": (["fuse-overlayfs"],
                       "check /dev/fuse and the fuse-overlayfs package; "
                       "run `rctr doctor` for details"),
    # the filesystem process daemonizes once the mount is up, and exits when it goes
    "fusepy": (launch.argv("fusepy"),
               "check /dev/fuse and libfuse 2 (Debian's libfuse2), which fusepy loads; "
               "run `rctr doctor` for details"),
}


def perform_mount(m: Mount) -> None:
    """Perform a mount the drivers described, in the calling process's namespaces."""
    if m["type"] in _MOUNT_PROGRAMS:
        import subprocess

        program, hint = _MOUNT_PROGRAMS[m["type"]]
        try:
            r = subprocess.run([*program, "-o", ",".join(m["options"]), m["destination"]],
                               capture_output=True, text=True, timeout=60)
        except subprocess.TimeoutExpired:
            r = subprocess.CompletedProcess([], 1, "", "timed out waiting for the mount")
        if r.returncode != 0:
            from rctr.core.errors import Unavailable

            raise Unavailable(f"{m['type']} failed: {r.stderr.strip()}", hint=hint)
        return
    from rctr.core import linux
    from rctr.core.mountopts import parse_options

    flags, _, data = parse_options(m["options"])
    linux.mount(m["source"], m["destination"], m["type"], flags, data or None)
