"""Terminals: the pty master travels over a unix socket, as with runc's --console-socket.

The container side opens the pty from the container's own devpts (after
pivot_root, /dev/ptmx is pts/ptmx), makes the slave its controlling terminal
and sends the master away.  Without a console socket, ``run`` and ``exec``
receive the master themselves over a socketpair and copy it to their own
stdio (``relay``).
"""

from __future__ import annotations

import os

TYPE_CHECKING = False
if TYPE_CHECKING:
    import socket

__all__ = ["connect", "setup_container_pty", "receive_master", "relay"]


def connect(console: str | int | None) -> socket.socket:
    """A connected socket to send the master over: a path to connect to, or an inherited fd."""
    import socket

    if console is None:
        raise OSError(22, "process.terminal is true but no --console-socket was given")
    if isinstance(console, int):
        return socket.socket(fileno=console)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    try:
        sock.connect(console)
    except OSError as exc:
        sock.close()
        raise OSError(exc.errno, f"console socket: {exc.strerror}", console) from None
    return sock


def setup_container_pty(sock: socket.socket, bind_console: bool = True) -> None:
    import socket

    master, slave = os.openpty()
    if bind_console:
        from rctr.core import linux

        name = os.ttyname(slave)
        if not os.path.exists("/dev/console"):
            os.close(os.open("/dev/console", os.O_CREAT | os.O_WRONLY | os.O_CLOEXEC, 0o600))
        linux.mount(name, "/dev/console", None, linux.MS_BIND)
    socket.send_fds(sock, [b"/dev/ptmx"], [master])
    sock.close()
    os.close(master)
    os.login_tty(slave)


def receive_master(sock: socket.socket) -> int:
    import socket

    _, fds, _, _ = socket.recv_fds(sock, 1024, 1)
    sock.close()
    if not fds:
        raise OSError(5, "the container sent no terminal")
    return fds[0]


def _copy(src: int, dst: int) -> bool:
    try:
        data = os.read(src, 65536)
    except OSError:
        return False
    if not data:
        return False
    while data:
        data = data[os.write(dst, data):]
    return True


def relay(master: int, pidfd: int) -> None:
    """Copy our stdin to the pty and the pty to our stdout until the process exits."""
    import select
    import signal
    import termios
    import tty

    stdin_tty = os.isatty(0)
    saved = termios.tcgetattr(0) if stdin_tty else None

    def resize(*_: object) -> None:
        try:
            size = os.get_terminal_size(0)
            import fcntl
            import struct

            fcntl.ioctl(master, termios.TIOCSWINSZ,
                        struct.pack("HHHH", size.lines, size.columns, 0, 0))
        except OSError:
            pass

    if stdin_tty:
        tty.setraw(0)
        resize()
        signal.signal(signal.SIGWINCH, resize)
    try:
        watch = [master, pidfd, 0]
        while True:
            ready, _, _ = select.select(watch, [], [])
            if master in ready and not _copy(master, 1):
                watch.remove(master)
            if 0 in ready and not _copy(0, master):
                watch.remove(0)
            if pidfd in ready:
                while master in watch and select.select([master], [], [], 0)[0]:
                    if not _copy(master, 1):
                        break
                return
    finally:
        if saved is not None:
            termios.tcsetattr(0, termios.TCSADRAIN, saved)
