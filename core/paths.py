"""XDG path policy, decided once at the edge (CLI, daemon entry points).

Libraries take explicit directories; only entry points call these.
"""

from __future__ import annotations

import os

__all__ = ["runtime_dir", "data_dir", "config_dir"]


def runtime_dir() -> str:
    """``$XDG_RUNTIME_DIR/rctr``, or ``/tmp/rctr-$UID`` (mode 0700) without it."""
    base = os.environ.get("XDG_RUNTIME_DIR")
    if base:
        return os.path.join(base, "rctr")
    return f"/tmp/rctr-{os.getuid()}"


def data_dir() -> str:
    """``$XDG_DATA_HOME/rctr`` (default ``~/.local/share/rctr``): survives reboot."""
    base = os.environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local/share")
    return os.path.join(base, "rctr")


def config_dir() -> str:
    base = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return os.path.join(base, "rctr")
