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

__all__ = ["create_netns", "remove_netns", "is_netns"]

def create_netns(path: str) -> None:
    """A new network namespace with ``lo`` up, held by a bind mount on ``path``."""
    fd = os.open(path, os.O_RDONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o444)
    os.close(fd)
    err_r, err_w = os.pipe2(os.O_CLOEXEC)
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        try:
            linux.unshare(linux.CLONE_NEWNET)
            linux.loopback_up()
            linux.mount("/proc/self/ns/net", path, None, linux.MS_BIND)  # single-threaded
        except BaseException as exc:  # noqa: BLE001 - reported to the parent
            os.write(err_w, str(exc).encode()[:4000])
            os._exit(1)
        os._exit(0)
    os.close(err_w)
    try:
        message = os.read(err_r, 4096).decode(errors="replace")
    finally:
        os.close(err_r)
    _, status = os.waitpid(pid, 0)
    if message or status != 0:
        try:
            os.unlink(path)
        except OSError:
            pass
        raise OSError(f"creating the network namespace {path}: {message or 'the child failed'}")


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
