"""XDG path policy, decided once at the edge (CLI, daemon entry points).

Libraries take explicit directories; only entry points call these.
"""

from __future__ import annotations

import errno
import os

__all__ = ["runtime_dir", "data_dir", "config_dir", "check_owned"]


def runtime_dir() -> str:
    """``$XDG_RUNTIME_DIR/rctr``, or ``/tmp/rctr-$UID`` (mode 0700) without it."""
    base = os.environ.get("XDG_RUNTIME_DIR")
    if base:
        return os.path.join(base, "rctr")
    return f"/tmp/rctr-{os.getuid()}"


def check_owned(path: str) -> None:
    """Raise PermissionError unless ``path`` belongs to this user: a symlink there, and
    the directory it leads to, alike.

    Without $XDG_RUNTIME_DIR the run dir is /tmp/rctr-UID, a name any user can take
    first (or point a symlink of theirs at): a socket in a directory someone else
    controls lets them stand in for rctrd, to the daemon's clients and to the daemon.
    """
    for st in (os.lstat(path), os.stat(path)):
        if st.st_uid != os.getuid():
            raise PermissionError(
                errno.EPERM, f"it belongs to uid {st.st_uid}, not to this user: remove it, or "
                "choose another directory with XDG_RUNTIME_DIR (XDG_DATA_HOME for the data)", path)


def data_dir() -> str:
    """``$XDG_DATA_HOME/rctr`` (default ``~/.local/share/rctr``): survives reboot."""
    base = os.environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local/share")
    return os.path.join(base, "rctr")


def config_dir() -> str:
    base = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return os.path.join(base, "rctr")
