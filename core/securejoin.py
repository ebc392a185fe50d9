"""Resolve a path inside a root directory without ever leaving it.

Like runc's securejoin: every symlink met on the way is resolved as if the
root were ``/``, and ``..`` stops at the root.  The result is a host path
that names something inside ``root`` at the time of the call (the caller
creates or mounts on it right away, in a mount namespace no one else uses).
"""

from __future__ import annotations

import errno
import os
import stat

__all__ = ["secure_join"]

_MAX_LINKS = 255


def secure_join(root: str, unsafe: str) -> str:
    root = os.path.abspath(root)
    pending = [p for p in unsafe.split("/") if p not in ("", ".")]
    pending.reverse()
    resolved: list[str] = []
    links = 0
    while pending:
        part = pending.pop()
        if part == "..":
            if resolved:
                resolved.pop()
            continue
        candidate = os.path.join(root, *resolved, part)
        try:
            st = os.lstat(candidate)
        except FileNotFoundError:
            resolved.append(part)
            continue
        if not stat.S_ISLNK(st.st_mode):
            resolved.append(part)
            continue
        links += 1
        if links > _MAX_LINKS:
            raise OSError(errno.ELOOP, "too many levels of symbolic links", unsafe)
        target = os.readlink(candidate)
        if target.startswith("/"):
            resolved = []
        new = [p for p in target.split("/") if p not in ("", ".")]
        pending.extend(reversed(new))
    return os.path.join(root, *resolved)
