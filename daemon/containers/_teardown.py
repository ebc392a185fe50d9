"""What a container holds while it runs or exists, and its release.

While it runs: a shim (and the container under it), a mounted root, a network
namespace, its addresses.  While it exists: its RW layer, directories and volumes.
A stop releases the first (``after_exit``), a remove the second (``collect``); both
are also what ``reconcile`` does with the remains of a daemon that died midway.
"""

from __future__ import annotations

import os
import shutil
import signal
import time
from typing import cast

from rctr import netstack
from rctr.core import linux
from rctr.core.errors import NotFound

from .. import _container_network
from .._shimctl import Shim
from . import _usernets
from ._context import Container, Context

__all__ = ["after_exit", "collect", "drop_shim_dir", "end_shim", "mount_rootfs", "unmount_rootfs"]


def mount_rootfs(c: Container) -> str:
    """Mount the container's root, unless it is; where it is."""
    target = c.record.rootfs
    if not os.path.ismount(target):
        from rctr.storage import Mount, perform_mount

        # The record keeps storage's description as the JSON it was written as.
        perform_mount(cast(Mount, c.record.rw_mount))
    return target


def unmount_rootfs(c: Container) -> None:
    target = c.record.rootfs
    for _ in range(5):
        if not os.path.ismount(target):
            return
        try:
            linux.umount(target, linux.MNT_DETACH)
        except OSError:
            return


def after_exit(ctx: Context, c: Container) -> None:
    """Release what the stopped container held while it ran (under its lock)."""
    c.execs.clear()
    ctx.runtime.delete(c.id)
    unmount_rootfs(c)
    # The shim takes its network down; a shim that died leaves the namespace mounted.
    drop_netns(ctx.paths.shim_dir(c.id))
    on = list(c.record.networks)
    c.record.network_settings = _container_network.cleared(c.record)
    _usernets.refresh_hosts(ctx, on)


def collect(ctx: Context, container_id: str, volumes: list[str] | None) -> None:
    """Remove what a container owned, once its record is gone."""
    end_shim(Shim(ctx.paths.shim_dir(container_id)))  # a remove cut short, mid-kill
    merged = os.path.join(ctx.store.rw.path(container_id), "merged")
    while os.path.ismount(merged):
        try:
            linux.umount(merged, linux.MNT_DETACH)
        except OSError:
            break
    try:
        ctx.store.rw.remove(container_id)
    except Exception:  # noqa: BLE001
        pass
    drop_shim_dir(ctx.paths.shim_dir(container_id))
    shutil.rmtree(ctx.paths.container_dir(container_id), ignore_errors=True)
    for name in volumes or []:
        if not any(m.get("Name") == name for c in ctx.all() for m in c.record.mounts):
            try:
                ctx.volumes.remove(name)
            except NotFound:
                pass


def end_shim(shim: Shim) -> bool:
    """End a live shim and everything under it: its container (the init first, which
    takes the pid namespace with it), then, if it does not exit by itself, the shim.
    False if no shim ran."""
    proc = shim.process()
    if proc is None:
        return False
    init = shim.init()
    if init is not None:
        init.signal(signal.SIGKILL)
    deadline = time.monotonic() + 5
    while proc.alive() and time.monotonic() < deadline:
        time.sleep(0.05)
    if proc.alive():
        _kill_tree(proc.pid)
    return True


def _kill_tree(pid: int) -> None:
    import psutil

    try:
        tree = psutil.Process(pid).children(recursive=True)
    except psutil.Error:
        tree = []
    for p in [psutil.Process(pid), *tree]:
        try:
            p.kill()
        except psutil.Error:
            pass


def drop_netns(shim_dir: str) -> None:
    path = os.path.join(shim_dir, "netns")
    if netstack.is_netns(path):
        netstack.remove_netns(path)


def drop_shim_dir(shim_dir: str) -> None:
    """Remove a shim directory, with the network namespace a dead shim left mounted in it."""
    drop_netns(shim_dir)
    shutil.rmtree(shim_dir, ignore_errors=True)
