"""The shim's listening unix sockets: attach.sock, console.sock and the zygote's."""

from __future__ import annotations

import os
import socket

__all__ = ["listen_unix"]


def listen_unix(path: str, backlog: int) -> socket.socket:
    """Listen on ``path`` (a stale socket there is replaced), mode 0600 from the start."""
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    old_umask = os.umask(0o177)
    try:
        sock.bind(path)
    except BaseException:
        sock.close()
        raise
    finally:
        os.umask(old_umask)
    sock.listen(backlog)
    return sock
