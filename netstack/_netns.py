"""A network namespace that a file holds, as ``ip netns add`` makes one.

The namespace is created by a forked child (``unshare`` would move the
caller, and the shim must stay in the host's namespace to listen for
published ports) and bind-mounted onto a file, so it lives without a
process: the runtime joins it by path, slirp4netns and pasta open it by
path, and ``container:NAME`` shares it.  The bind mount lives in the mount
namespace of the pause process, like the layer mounts.
"""

from __future__ import annotations

import os

from rctr.core import linux

from ._spawn import run_in_child

__all__ = ["create_netns", "remove_netns", "is_netns"]

def create_netns(path: str) -> None:
    """A new network namespace with ``lo`` up, held by a bind mount on ``path``."""
    fd = os.open(path, os.O_RDONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o444)
    os.close(fd)
    try:
        run_in_child(f"creating the network namespace {path}", _hold_new_netns, path)
    except OSError:
        try:
            os.unlink(path)
        except OSError:
            pass
        raise


def _hold_new_netns(path: str) -> None:  # pragma: no cover - runs in the child
    linux.unshare(linux.CLONE_NEWNET)
    linux.loopback_up()
    linux.mount("/proc/self/ns/net", path, None, linux.MS_BIND)  # single-threaded


def is_netns(path: str) -> bool:
    """Whether ``path`` holds a namespace (a bind mount of nsfs), not just the empty file."""
    try:
        return linux.fs_type(path) == linux.NSFS_MAGIC
    except OSError:
        return False


def remove_netns(path: str) -> None:
    """Unmount and remove ``path``; the namespace ends with its last user."""
    for _ in range(4):
        try:
            linux.umount(path, linux.MNT_DETACH)
        except OSError:
            break
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
