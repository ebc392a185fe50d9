"""The line protocol between the runtime and the processes it forks.

Two pipes, one per direction; each message is one line ``WORD [payload]``.
A pipe's end of file means the other side died, which is how a parent learns
that a child failed without a message, and how a child learns that the
runtime that drove it went away.
"""

from __future__ import annotations

import os
import select

__all__ = ["Channel", "ChannelClosed", "channel_pair"]


class ChannelClosed(Exception):
    """The other side closed its end (it exited or crashed)."""


class Channel:
    def __init__(self, rfd: int, wfd: int) -> None:
        self.rfd = rfd
        self.wfd = wfd
        self._buf = b""

    def send(self, word: str, payload: str = "") -> None:
        line = f"{word} {payload}".rstrip().replace("\n", " ") + "\n"
        data = line.encode()
        while data:
            data = data[os.write(self.wfd, data):]

    def recv(self, timeout: float | None = None) -> tuple[str, str]:
        while b"\n" not in self._buf:
            if timeout is not None:
                ready, _, _ = select.select([self.rfd], [], [], timeout)
                if not ready:
                    raise TimeoutError("no answer from the container process")
            chunk = os.read(self.rfd, 4096)
            if not chunk:
                raise ChannelClosed()
            self._buf += chunk
        line, self._buf = self._buf.split(b"\n", 1)
        word, _, payload = line.decode().partition(" ")
        return word, payload

    def expect(self, word: str, timeout: float | None = None) -> str:
        got, payload = self.recv(timeout)
        if got == "error":
            raise ChildError(payload)
        if got != word:
            raise ChildError(f"protocol error: expected {word!r}, got {got!r}")
        return payload

    def close(self) -> None:
        for fd in (self.rfd, self.wfd):
            try:
                os.close(fd)
            except OSError:
                pass


class ChildError(Exception):
    """The child reported an error (its one-line message is the text)."""


def channel_pair() -> tuple[Channel, Channel]:
    """(parent side, child side); after fork each side closes the other's."""
    a_r, a_w = os.pipe()
    b_r, b_w = os.pipe()
    return Channel(a_r, b_w), Channel(b_r, a_w)
