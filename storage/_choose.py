"""Choosing the storage driver: the fastest that works here, checked once and remembered.

The check mounts for real, in a throw-away user and mount namespace: overlayfs
with ``userxattr`` (Linux >= 5.11), then fuse-overlayfs (the program and a
usable /dev/fuse), else vfs, which always works.  The answer is written to
ROOT/driver; a user's choice (``RCTR_STORAGE_DRIVER``, or the ``driver``
argument from a flag or the config file) wins over it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile

from rctr.core.atomic import write_atomic
from rctr.core.errors import InvalidArgument
from rctr.core.userns import run_in_userns

from ._layout import StoreLayout
from ._rw import DRIVERS

__all__ = ["choose_driver", "probe_driver"]


def _try_mount(kind: str, base: str) -> bool:
    lower, upper, work, merged = (os.path.join(base, d) for d in ("l", "u", "w", "m"))
    for d in (lower, upper, work, merged):
        os.mkdir(d)
    opts = f"lowerdir={lower},upperdir={upper},workdir={work}"

    def attempt() -> bool:
        from rctr.core import linux

        if kind == "overlay":
            linux.mount("overlay", merged, "overlay", 0, opts + ",userxattr")
        else:
            subprocess.run(["fuse-overlayfs", "-o", opts, merged], check=True,
                           capture_output=True, timeout=20)
        linux.umount(merged, linux.MNT_DETACH)
        return True

    def attempt_and_clean() -> bool:
        # overlayfs leaves work/work at mode 000: only root in the namespace removes it.
        try:
            return attempt()
        finally:
            shutil.rmtree(base, ignore_errors=True)

    try:
        return bool(run_in_userns(attempt_and_clean))
    except Exception:
        return False


def probe_driver(tmp_root: str) -> str:
    """The best driver that really mounts here."""
    os.makedirs(tmp_root, mode=0o700, exist_ok=True)
    for kind in ("overlay", "fuse-overlayfs"):
        if kind == "fuse-overlayfs" and not shutil.which("fuse-overlayfs"):
            continue
        base = tempfile.mkdtemp(prefix=f".probe-{kind}-", dir=tmp_root)
        try:
            if _try_mount(kind, base):
                return kind
        finally:
            shutil.rmtree(base, ignore_errors=True)
    return "vfs"


def choose_driver(layout: StoreLayout, driver: str | None = None) -> str:
    """The user's driver if given, else the remembered one, else probe and remember."""
    wanted = driver or os.environ.get("RCTR_STORAGE_DRIVER")
    if wanted:
        if wanted not in DRIVERS:
            raise InvalidArgument(f"unknown storage driver {wanted!r}",
                                  hint=f"choose one of {', '.join(DRIVERS)}")
        return wanted
    remembered = os.path.join(layout.root, "driver")
    try:
        with open(remembered) as f:
            name = f.read().strip()
        if name in DRIVERS:
            return name
    except FileNotFoundError:
        pass
    layout.ensure()
    name = probe_driver(layout.tmp)
    write_atomic(remembered, name.encode() + b"\n", 0o600)
    return name
