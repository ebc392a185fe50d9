"""What the shim zygote and the daemon that uses it must agree on.

The zygote (``rctr.shim._zygote``) forks shims for the daemon
(``rctr.daemon._shimctl``).  Like the rest of their contract this is data,
not shared behaviour: one JSON line each way and an fd, over a unix socket,
and a token saying which code in which namespaces answers.
"""

from __future__ import annotations

import hashlib
import os
import sys

__all__ = ["MAX_MESSAGE", "code_token"]

TYPE_CHECKING = False
if TYPE_CHECKING:
    # The messages' shapes, for the checker (import them under TYPE_CHECKING too).
    from typing import TypedDict

    class ZygoteReady(TypedDict):
        """The zygote's line on its ready fd."""

        pid: int
        token: str

    class SpawnRequest(TypedDict):
        """daemon -> zygote, with the shim's ready fd attached (SCM_RIGHTS)."""

        dir: str
        token: str

    class SpawnAnswer(TypedDict, total=False):
        """zygote -> daemon: one of ok (the shim is forked), stale, or error."""

        ok: bool
        stale: bool
        error: str

MAX_MESSAGE = 65536  # bytes of a request or an answer, at most
_PACKAGES = ("shim", "core", "rootless", "netstack")  # the code a forked shim runs


def code_token() -> str:
    """What must match between a zygote and the daemon that uses it.

    The interpreter, the source of the packages a shim runs (a reinstall may
    keep sizes and times, so their content) and the user and mount namespaces
    (a rebuilt pause process changes them)."""
    import rctr

    digest = hashlib.sha256(sys.executable.encode())
    for base in rctr.__path__:
        for package in _PACKAGES:
            folder = os.path.join(base, package)
            try:
                names = sorted(n for n in os.listdir(folder) if n.endswith(".py"))
            except OSError:
                continue
            for name in names:
                with open(os.path.join(folder, name), "rb") as f:
                    digest.update(f"{package}/{name}\n".encode() + f.read())
    for ns in ("user", "mnt"):
        st = os.stat(f"/proc/self/ns/{ns}")
        digest.update(f"{ns}:{st.st_dev}:{st.st_ino}\n".encode())
    return digest.hexdigest()[:32]
