"""Making one layer directory, inside the user's user namespace, for any driver.

Only there can an image's owners be given to the user's subordinate ids (and
only there can those files be removed again).  The layer is built under
tmp/ and renamed into place, so a crash leaves nothing a later pull trusts.
"""

from __future__ import annotations

import os
import shutil
import subprocess

from rctr.core.userns import default_id_maps, run_in_userns

from ._extract import apply_layer

__all__ = ["build_layer", "copy_tree", "remove_layer", "warn_overflow"]


def build_layer(blob: str, target: str, tmp_root: str, *, whiteouts: str,
                parent: str | None = None, into: str = "") -> list[str]:
    """Build ``target``: a copy of ``parent`` (or nothing) with ``blob`` applied at ``into``.

    Returns the files whose owners were outside the user's range (stored as 65534).
    """
    uid_maps, gid_maps = default_id_maps()
    max_uid = max(m["containerID"] + m["size"] - 1 for m in uid_maps)
    max_gid = max(m["containerID"] + m["size"] - 1 for m in gid_maps)

    def build() -> list[str]:
        tmp = os.path.join(tmp_root, f".layer-{os.path.basename(target)[:12]}-{os.getpid()}")
        if parent:
            # cp -a keeps owners, modes, links and xattrs, and we are root here.
            subprocess.run(["cp", "-a", parent, tmp], check=True, capture_output=True)
        else:
            os.makedirs(os.path.join(tmp, into), mode=0o755)
        try:
            with open(blob, "rb") as f:
                stats = apply_layer(f, os.path.join(tmp, into), whiteouts=whiteouts,
                                    id_ok=lambda u, g: u <= max_uid and g <= max_gid)
            os.rename(tmp, target)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return list(stats.overflow_owners)

    overflow: list[str] = run_in_userns(build, maps=(uid_maps, gid_maps))  # build()'s result
    return overflow


def copy_tree(source: str, target: str) -> None:
    """Copy a layer with its owners (vfs RW layers), from inside the user namespace."""
    def copy() -> None:
        subprocess.run(["cp", "-a", source, target], check=True, capture_output=True)

    run_in_userns(copy)


def remove_layer(target: str) -> None:
    """Remove a layer directory; its files belong to subordinate ids, so from inside."""
    if os.path.isdir(target):
        run_in_userns(lambda: shutil.rmtree(target))


def warn_overflow(overflow: list[str]) -> None:
    """One warning for all the files whose owners could not be kept."""
    if overflow:
        import sys

        sys.stderr.write(
            f"warning: {len(overflow)} file(s) are owned by ids outside your subordinate "
            f"range and were stored as 65534, e.g. {overflow[0]}; give your user a larger "
            "range in /etc/subuid and /etc/subgid to keep their owners\n")
