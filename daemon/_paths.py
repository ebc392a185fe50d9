"""Where the daemon keeps things, decided once before it joins the user namespace.

Inside the namespace ``getuid()`` is 0, so nothing may be derived from the
uid afterwards: everything is computed here first and passed down.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from rctr.core.paths import check_owned, data_dir, runtime_dir

__all__ = ["DaemonPaths"]


@dataclass(frozen=True)
class DaemonPaths:
    rundir: str    # $XDG_RUNTIME_DIR/rctr: socket, pause, shims (gone at reboot)
    datadir: str   # $XDG_DATA_HOME/rctr: store, container records, volumes

    @classmethod
    def default(cls) -> DaemonPaths:
        return cls(runtime_dir(), data_dir())

    @property
    def socket(self) -> str:
        return os.path.join(self.rundir, "rctr.sock")

    @property
    def lock(self) -> str:
        return os.path.join(self.rundir, "rctrd.lock")

    @property
    def zygote_socket(self) -> str:
        return os.path.join(self.rundir, "shim-zygote.sock")

    @property
    def runtime_root(self) -> str:
        return os.path.join(self.rundir, "runtime")

    @property
    def shims(self) -> str:
        return os.path.join(self.rundir, "s")

    @property
    def infra_netns(self) -> str:
        """The user networks' bridges live in this namespace (rctr.netstack's _links)."""
        return os.path.join(self.rundir, "netns", "infra")

    @property
    def networks(self) -> str:
        return os.path.join(self.datadir, "networks")

    @property
    def containers(self) -> str:
        return os.path.join(self.datadir, "containers")

    @property
    def volumes(self) -> str:
        return os.path.join(self.datadir, "volumes")

    @property
    def storage(self) -> str:
        return os.path.join(self.datadir, "storage")

    def shim_dir(self, container_id: str) -> str:
        # Short: the shim's sockets live here, and a socket path has 108 bytes at most.
        return os.path.join(self.shims, container_id[:32])

    def container_dir(self, container_id: str) -> str:
        return os.path.join(self.containers, container_id)

    def ensure(self) -> None:
        for top in (self.rundir, self.datadir):
            os.makedirs(top, mode=0o700, exist_ok=True)
            check_owned(top)
            # makedirs leaves an existing directory's mode alone, and whatever made it
            # first (the store's makedirs of a subdirectory, an older rctr) used the
            # umask's 0755: other users must not even list the containers' ids.
            if os.stat(top).st_mode & 0o077:
                os.chmod(top, 0o700)
        for path in (self.shims, self.runtime_root, self.containers, self.volumes):
            os.makedirs(path, mode=0o700, exist_ok=True)
