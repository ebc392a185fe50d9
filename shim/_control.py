"""The ``control`` FIFO: one JSON object per line, from the daemon to the shim.

    {"op": "close_stdin"}
    {"op": "resize", "width": W, "height": H}
"""

from __future__ import annotations

import json

from rctr.core.errors import InvalidArgument

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import TypedDict

    class Command(TypedDict, total=False):
        """A parsed line: ``op``, and for a resize its checked ``width`` and ``height``."""

        op: str
        width: int
        height: int

__all__ = ["ControlParser", "CLOSE_STDIN", "RESIZE"]

CLOSE_STDIN, RESIZE = "close_stdin", "resize"
_MAX_LINE = 4096  # a longer line is garbage, not a command


class ControlParser:
    """Bytes from the FIFO in, commands out; a bad line is an error for that line only."""

    def __init__(self) -> None:
        self._buf = b""

    def feed(self, data: bytes) -> list[Command | InvalidArgument]:
        self._buf += data
        out: list[Command | InvalidArgument] = []
        *lines, self._buf = self._buf.split(b"\n")
        if len(self._buf) > _MAX_LINE:
            self._buf = b""
            out.append(InvalidArgument("control: line too long, dropped"))
        for line in lines:
            if line.strip():
                out.append(_parse(line))
        return out


def _parse(line: bytes) -> Command | InvalidArgument:
    try:
        cmd: Command = json.loads(line)
    except ValueError:
        return InvalidArgument(f"control: not JSON: {line[:200]!r}")
    if not isinstance(cmd, dict):
        return InvalidArgument(f"control: not an object: {line[:200]!r}")
    op = cmd.get("op")
    if op == CLOSE_STDIN:
        return cmd
    if op == RESIZE:
        w, h = cmd.get("width"), cmd.get("height")
        if isinstance(w, int) and isinstance(h, int) and 0 < w < 65536 and 0 < h < 65536:
            return cmd
        return InvalidArgument(f"control: resize needs width and height in 1..65535: {cmd}")
    return InvalidArgument(f"control: unknown op {op!r}")
