"""rctr.storage: images and layers for an ordinary user.

``Store`` is the facade: blobs by digest, the image index, pulling from
registries, loading from and saving to files, and the drivers that turn an
image into directories on disk (vfs) or mounts (overlay, fuse-overlayfs, fusepy).
Container RW layers come next (issue 3 is in progress).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from ._blobs import BlobStore, DigestMismatch
from ._choose import choose_driver
from ._commit import commit_image, merge_config, overlay_changes, parse_changes, vfs_changes
from ._extract import LayerStats, apply_layer
from ._gc import collect_tmp, prune
from ._images import ImageIndex, ImageRecord, chain_ids
from ._layout import StoreLayout
from ._load import (Prepare, import_rootfs, is_oci_archive, load_docker_archive, load_oci_archive,
                    load_oci_layout)
from ._overlay import FuseOverlayDriver, FusepyDriver, Mount, OverlayDriver, perform_mount
from ._push import PushProgress, push
from ._reference import Reference, familiar, parse_reference
from ._registry import AuthStore, PullProgress, RegistryClient, pull
from ._rw import DRIVERS, RWLayers
from ._save import save_oci
from ._vfs import VfsDriver

__all__ = ["Store", "DigestMismatch", "Reference", "familiar", "parse_reference", "chain_ids", "perform_mount",
           "AuthStore", "RegistryClient", "apply_layer", "LayerStats", "DRIVERS", "merge_config",
           "parse_changes", "ImageRecord", "Mount", "Prepare", "PullProgress", "PushProgress"]


class Store:
    """The store under ``root`` ($XDG_DATA_HOME/rctr/storage by default)."""

    def __init__(self, root: str, *, insecure_registries: Iterable[str] = (),
                 registry_mirrors: Mapping[str, Sequence[str]] | None = None) -> None:
        self.layout = StoreLayout(root)
        # The daemon's settings (rctr.toml [registries]) for every client this store makes.
        self.insecure_registries = tuple(insecure_registries)
        self.registry_mirrors = dict(registry_mirrors or {})
        self.blobs = BlobStore(self.layout)
        self.images = ImageIndex(self.layout)
        self.vfs = VfsDriver(self.layout, self.blobs)
        self.overlay = OverlayDriver(self.layout, self.blobs)
        self.fuse_overlayfs = FuseOverlayDriver(self.layout, self.blobs)
        self.fusepy = FusepyDriver(self.layout, self.blobs)
        self.rw = RWLayers(self.layout, {"vfs": self.vfs, "overlay": self.overlay,
                                         "fuse-overlayfs": self.fuse_overlayfs,
                                         "fusepy": self.fusepy})

    @classmethod
    def default(cls) -> Store:
        from rctr.core.paths import data_dir

        return cls(os.path.join(data_dir(), "storage"))

    def driver(self, name: str | None = None) -> str:
        """The storage driver to use: ``name``, $RCTR_STORAGE_DRIVER, remembered, or probed."""
        return choose_driver(self.layout, name)

    def registry_client(self, auth: AuthStore | None = None) -> RegistryClient:
        """A client with this store's insecure registries and mirrors (and ``auth``, else the
        user's credential files); retries and timeout are :class:`RegistryClient`'s defaults."""
        return RegistryClient(auth=auth if auth is not None else AuthStore(),
                              insecure=self.insecure_registries, mirrors=self.registry_mirrors)

    def pull(self, ref: str, *, platform: str | None = None,
             client: RegistryClient | None = None,
             progress: PullProgress | None = None,
             prepare: Prepare | None = None) -> ImageRecord:
        """Pull ``ref`` from its registry (its mirrors first); blobs already here are not
        fetched again.  ``prepare(record)`` runs before the image is indexed: what it
        raises leaves no image."""
        return pull(client or self.registry_client(), parse_reference(ref),
                    self.blobs, self.images, platform=platform, progress=progress,
                    prepare=prepare)

    def push(self, local: str, remote: str | None = None, *,
             client: RegistryClient | None = None,
             progress: PushProgress | None = None) -> dict[str, object]:
        """Push the image ``local`` (as ``remote`` if given) to its registry."""
        return push(client or self.registry_client(), local, remote or local,
                    self.blobs, self.images, progress)

    def extract(self, ref_or_id: str, driver: str,
                on_layer: Callable[[str], None] | None = None) -> None:
        """Extract the image's missing layers for ``driver`` now (a pull does, so that its
        progress shows the work and the first container starts at once); ``on_layer``
        hears each layer's digest before its extraction."""
        self.rw.drivers[driver].prepare(self.images.get(ref_or_id), on_layer)

    def tag(self, source: str, target: str) -> None:
        """Give the image ``source`` names the additional name ``target``."""
        self.images.add(self.images.get(source), [target])

    def collect_garbage(self) -> list[str]:
        """Remove what crashed pulls and extractions left under tmp/ (call at start)."""
        return collect_tmp(self.layout)

    def remove_image(self, ref_or_id: str, force: bool = False) -> list[str]:
        return self.images.remove(ref_or_id, force)

    def prune(self) -> dict[str, int]:
        """Remove blobs and layers no image refers to (``rctr image prune``)."""
        return prune(self.layout, self.images)

    def import_rootfs(self, tar_path: str, name: str | None = None,
                      cmd: list[str] | None = None) -> ImageRecord:
        """``rctr import``: an image of one layer from a rootfs tarball."""
        return import_rootfs(tar_path, self.blobs, self.images, name, cmd=cmd)

    def commit(self, container_id: str, image: str, driver: str, *, config: dict[str, Any],
               created_by: str, name: str | None = None, comment: str = "", author: str = "",
               prepare: Prepare | None = None) -> ImageRecord:
        """``docker commit``: a new image of ``image`` plus the changes in the container's
        RW layer, run config ``config``; see ``_commit``.  Runs where the files' ids are the
        container's (the daemon, in the user namespace; else a helper there)."""
        record = self.images.get(image)
        base = self.rw.path(container_id)
        where = os.path.dirname(self.layout.root)

        def run() -> ImageRecord:
            if driver == "vfs":
                changes = vfs_changes(os.path.join(base, "rootfs"),
                                      self.vfs.layer_path(record["chain_ids"][-1]))
            else:
                changes = overlay_changes(os.path.join(base, "upper"))
            return commit_image(self.blobs, self.images, record, changes,
                                container_id=container_id, created_by=created_by,
                                config=config, name=name, comment=comment, author=author,
                                prepare=prepare, where=where)

        if os.geteuid() == 0:
            return run()
        from rctr.core.userns import run_in_userns

        committed: ImageRecord = run_in_userns(run, mount_ns=False)  # run()'s record
        return committed

    def save(self, refs: list[str], out: str) -> None:
        """Save images as an OCI layout: a directory, or an oci-archive if ``out`` ends in .tar."""
        save_oci(refs, self.blobs, self.images, out)

    def load(self, path: str, name: str | None = None,
             prepare: Prepare | None = None) -> list[ImageRecord]:
        """Load an OCI layout directory, an oci-archive or a docker-archive tarball; each
        image is checked whole (and seen by ``prepare``) before any is indexed."""
        if not os.access(path, os.R_OK):
            from rctr.core.errors import NotFound

            raise NotFound(f"cannot read {path}: no such file, or not readable by you")
        if os.path.isdir(path):
            return load_oci_layout(path, self.blobs, self.images, name=name, prepare=prepare)
        if is_oci_archive(path):
            return load_oci_archive(path, self._tmp(), self.blobs, self.images, name=name,
                                    prepare=prepare)
        return load_docker_archive(path, self.blobs, self.images, prepare=prepare)

    def _tmp(self) -> str:
        self.layout.ensure()
        return self.layout.tmp

