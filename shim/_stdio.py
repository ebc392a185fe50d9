"""The container's stdio as the shim holds it: pipes, or a pty master.

Without a tty the container gets three pipes (or /dev/null for stdin) and
the shim keeps the other ends.  With a tty the runtime makes the pty inside
the container and sends the master back (runc's console socket); until then
the container's fds 0-2 are /dev/null, as with runc.
"""

from __future__ import annotations

import os

from ._io import STDERR, STDOUT

__all__ = ["Stdio", "set_winsize"]


class Stdio:
    """``child`` are the fds the runtime gives the init (closed here after create);
    ``outputs`` maps the shim's read ends to stream numbers; ``stdin`` is the
    shim's write end (the master with a tty), or None."""

    def __init__(self, tty: bool, stdin: bool) -> None:
        self.tty = tty
        self.outputs: dict[int, int] = {}
        self.stdin: int | None = None
        self.master: int | None = None
        self._opened: list[int] = []
        # The container's stdin, stdout and stderr; empty once create has passed them on.
        self.child: tuple[int, ...]
        null = self._keep(os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC))
        if tty:
            self.child = (null, null, null)
            return
        child_in = null
        if stdin:
            child_in, self.stdin = self._pipe()
        out_r, out_w = self._pipe()
        err_r, err_w = self._pipe()
        self.outputs = {out_r: STDOUT, err_r: STDERR}
        self.child = (child_in, out_w, err_w)

    def _keep(self, fd: int) -> int:
        self._opened.append(fd)
        return fd

    def _pipe(self) -> tuple[int, int]:
        r, w = os.pipe2(os.O_CLOEXEC)
        self._opened += (r, w)
        return r, w

    def set_master(self, master: int, width: int, height: int) -> None:
        os.set_inheritable(master, False)
        os.set_blocking(master, False)
        set_winsize(master, width, height)
        self.master = self.stdin = master
        self.outputs = {master: STDOUT}
        self._opened.append(master)

    def close_child_ends(self) -> None:
        """After create: only the container may hold its ends, so EOF means it is done."""
        for fd in set(self.child):
            if fd in self._opened:
                self._opened.remove(fd)
                os.close(fd)
        self.child = ()
        for fd in (*self.outputs, *([self.stdin] if self.stdin is not None else [])):
            os.set_blocking(fd, False)

    def close(self, fd: int) -> None:
        """Close one of the shim's ends (an output at EOF, stdin on close_stdin)."""
        if fd in self._opened:
            self._opened.remove(fd)
            os.close(fd)

    def close_all(self) -> None:
        for fd in self._opened:
            try:
                os.close(fd)
            except OSError:
                pass
        self._opened.clear()


def set_winsize(fd: int, width: int, height: int) -> None:
    """TIOCSWINSZ on the master; the kernel sends SIGWINCH to the foreground group."""
    import fcntl
    import struct
    import termios

    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", height, width, 0, 0))
