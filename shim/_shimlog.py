"""The shim's own log, ``shim-log.json``: one JSON object per line.

The shim's stdio is /dev/null (it outlives whoever started it), so its
problems go here, in the same shape as runc's ``--log-format json``.
"""

from __future__ import annotations

import json
import os

from ._io import rfc3339_nano

__all__ = ["ShimLog"]


class ShimLog:
    def __init__(self, path: str) -> None:
        self.path = path

    def write(self, level: str, msg: str) -> None:
        """Append one line; a log that cannot be written is not worth dying for."""
        line = json.dumps({"level": level, "msg": msg, "time": rfc3339_nano()}) + "\n"
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600)
        except OSError:
            return
        try:
            os.write(fd, line.encode())
        except OSError:
            pass
        finally:
            os.close(fd)

    def error(self, msg: str) -> None:
        self.write("error", msg)

    def warning(self, msg: str) -> None:
        self.write("warning", msg)
