"""Showing a daemon's JSON progress stream (pull, push, load, import).

The messages are Docker's ``jsonmessage``: ``{"status", "id", "progress",
"progressDetail"}``, ``{"stream"}`` text, ``{"aux"}`` results and
``{"error", "errorDetail"}``.  On a terminal each layer id owns one line,
redrawn in place with ANSI cursor moves, as docker does; elsewhere only the
state changes are printed, one plain line each, so logs stay readable.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable

from ._client import APIError

# For the type checker only (start-up imports: see _run_fastpath).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, TextIO

__all__ = ["Progress", "StreamResult", "show_stream"]

# A message with one of these statuses and a progress bar is a tick: plain
# output skips it.
_TICKS = {"Downloading", "Extracting", "Pushing", "Uploading", "Loading layer", "Importing"}


class StreamResult:
    """What a stream carried besides its display: results and status texts."""

    def __init__(self) -> None:
        self.aux: list[dict[str, Any]] = []
        self.statuses: list[str] = []
        self.streams: list[str] = []


class Progress:
    """Renders messages one at a time; ``tty`` chooses in-place redraws."""

    def __init__(self, out: TextIO, tty: bool) -> None:
        self.out = out
        self.tty = tty
        self.lines: dict[str, int] = {}

    @staticmethod
    def text(msg: dict[str, Any], bar: bool) -> str:
        parts = []
        if msg.get("id"):
            parts.append(f"{msg['id']}: ")
        parts.append(str(msg.get("status") or ""))
        if bar and msg.get("progress"):
            parts.append(" " + str(msg["progress"]))
        return "".join(parts)

    def show(self, msg: dict[str, Any]) -> None:
        if "stream" in msg:
            self.lines.clear()
            self.out.write(str(msg["stream"]))
        elif "status" in msg:
            if self.tty:
                self._redraw(msg)
            elif not (msg.get("progress") and msg.get("status") in _TICKS):
                self.out.write(self.text(msg, bar=False) + "\n")
        self.out.flush()

    def _redraw(self, msg: dict[str, Any]) -> None:
        text = self.text(msg, bar=True)
        key = msg.get("id")
        if not key:
            self.lines.clear()
            self.out.write(text + "\n")
        elif key not in self.lines:
            self.lines[key] = len(self.lines)
            self.out.write(text + "\n")
        else:
            up = len(self.lines) - self.lines[key]
            self.out.write(f"\x1b[{up}A\r\x1b[2K{text}\x1b[{up}B\r")


def show_stream(messages: Iterable[Any], out: TextIO | None = None, *,
                tty: bool | None = None, quiet: bool = False) -> StreamResult:
    """Display (unless ``quiet``) and collect a stream; its ``error`` raises APIError."""
    out = sys.stdout if out is None else out
    if tty is None:
        tty = out.isatty()
    progress = Progress(out, tty)
    result = StreamResult()
    for msg in messages:
        if not isinstance(msg, dict):
            continue
        if msg.get("error") or msg.get("errorDetail"):
            detail = msg.get("errorDetail") or {}
            raise APIError(0, str(msg.get("error") or detail.get("message") or detail))
        if isinstance(msg.get("aux"), dict):
            result.aux.append(msg["aux"])
        if msg.get("status"):
            result.statuses.append(str(msg["status"]))
        if "stream" in msg:
            result.streams.append(str(msg["stream"]))
        if not quiet:
            progress.show(msg)
    return result
