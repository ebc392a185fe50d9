"""Copying a hijacked attach or exec connection to and from the terminal.

The output is pumped on the calling (main) thread, so SIGWINCH handlers run
there and resize the container's pty; stdin is pumped on a daemon thread and
half-closes the connection at its end, so the container sees EOF while its
output keeps flowing.  With a tty the local terminal is in raw mode for the
whole session and restored on every way out, and the detach keys
(``ctrl-p,ctrl-q`` by default) end the session without stopping anything.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from collections.abc import Callable

from ._client import STDERR, Hijacked, iter_frames
from ._context import CLIError

# For the type checker only (start-up imports: see _run_fastpath).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, BinaryIO

__all__ = ["DEFAULT_DETACH_KEYS", "DetachMatcher", "RawTerminal", "Session", "parse_detach_keys",
           "terminal_size"]

DEFAULT_DETACH_KEYS = "ctrl-p,ctrl-q"


def parse_detach_keys(spec: str) -> bytes:
    """Docker's syntax: comma-separated ``ctrl-<x>`` or single characters."""
    out = bytearray()
    for key in spec.split(","):
        key = key.strip()
        if len(key) == 1:
            out.append(ord(key))
        elif key.lower().startswith("ctrl-") and len(key) == 6:
            c = key[5].lower()
            if "a" <= c <= "z":
                out.append(ord(c) - ord("a") + 1)
            elif c in "@[\\]^_":
                out.append(ord(c) - ord("@") if c != "@" else 0)
            else:
                raise CLIError(f"invalid detach keys {spec!r}: unknown key {key!r}")
        else:
            raise CLIError(f"invalid detach keys {spec!r}: unknown key {key!r}")
    if not out:
        raise CLIError(f"invalid detach keys {spec!r}")
    return bytes(out)


class DetachMatcher:
    """Holds back a partial detach sequence; forwards it if the sequence breaks."""

    def __init__(self, keys: bytes) -> None:
        self.keys = keys
        self.held = b""

    def feed(self, data: bytes) -> tuple[bytes, bool]:
        """(bytes to send, whether the full sequence was typed)."""
        out = bytearray()
        for byte in data:
            candidate = self.held + bytes([byte])
            if self.keys.startswith(candidate):
                self.held = candidate
                if candidate == self.keys:
                    self.held = b""
                    return bytes(out), True
            else:
                out += self.held
                self.held = b""
                if self.keys.startswith(bytes([byte])):
                    self.held = bytes([byte])
                else:
                    out.append(byte)
        return bytes(out), False


class RawTerminal:
    """Raw mode on ``fd`` while inside; restored however the block ends."""

    def __init__(self, fd: int, enabled: bool) -> None:
        self.fd = fd
        self.enabled = enabled
        self.saved: Any = None

    def __enter__(self) -> RawTerminal:
        if self.enabled and os.isatty(self.fd):
            import termios
            import tty

            self.saved = termios.tcgetattr(self.fd)
            tty.setraw(self.fd)
        return self

    def __exit__(self, *exc: object) -> None:
        if self.saved is not None:
            import termios

            termios.tcsetattr(self.fd, termios.TCSADRAIN, self.saved)
            self.saved = None


def terminal_size() -> tuple[int, int] | None:
    """(height, width) of the terminal on stdout, else stdin; None if neither is one."""
    for fd in (1, 0):
        try:
            size = os.get_terminal_size(fd)
            return size.lines, size.columns
        except OSError:
            continue
    return None


def _stdin_reader() -> Callable[[], bytes]:
    try:
        fd = sys.stdin.fileno()
    except (AttributeError, ValueError, OSError):
        buffer = sys.stdin.buffer
        # A buffered reader (read1: what has arrived, without waiting for 64 KiB), which
        # typeshed types as BinaryIO.
        return lambda: buffer.read1(65536)  # type: ignore[union-attr]  # see above
    return lambda: os.read(fd, 65536)


class Session:
    """One attach: ``conn`` both ways, until the output ends or the user detaches."""

    def __init__(self, conn: Hijacked, tty: bool, stdin: bool, detach_keys: bytes | None = None,
                 resize: Callable[[int, int], None] | None = None, out: BinaryIO | None = None,
                 err: BinaryIO | None = None, read_stdin: Callable[[], bytes] | None = None) -> None:
        self.conn, self.tty, self.stdin = conn, tty, stdin
        self.detach_keys, self.resize, self.read_stdin = detach_keys, resize, read_stdin
        self.out = out if out is not None else sys.stdout.buffer
        self.err = err if err is not None else sys.stderr.buffer
        self.detached = False

    def send_size(self) -> None:
        size = terminal_size()
        if self.tty and self.resize is not None and size is not None:
            try:
                self.resize(*size)
            except Exception:  # a failed resize must not end the session
                pass

    def run(self) -> bool:
        """Pump until the output ends; True if the user detached."""
        if self.stdin:
            threading.Thread(target=self._pump_stdin, name="stdin", daemon=True).start()
        old = None
        if self.tty and self.resize is not None and threading.current_thread() is \
                threading.main_thread():
            old = signal.signal(signal.SIGWINCH, lambda *_: self.send_size())
        try:
            self._pump_output()
        finally:
            if old is not None:
                signal.signal(signal.SIGWINCH, old)
        return self.detached

    def _pump_output(self) -> None:
        if self.tty:
            while chunk := self.conn.read():
                self.out.write(chunk)
                self.out.flush()
            return
        for kind, payload in iter_frames(self.conn.read):
            target = self.err if kind == STDERR else self.out
            target.write(payload)
            target.flush()

    def _pump_stdin(self) -> None:
        read = self.read_stdin or _stdin_reader()
        matcher = DetachMatcher(self.detach_keys) if self.tty and self.detach_keys else None
        try:
            while data := read():
                if matcher is not None:
                    data, detach = matcher.feed(data)
                    if data:
                        self.conn.send(data)
                    if detach:
                        self.detached = True
                        self.conn.close()
                        return
                else:
                    self.conn.send(data)
        except OSError:
            return  # the connection is gone: the output side ends the session
        self.conn.close_write()
