"""Starting rctrd on demand, once, however many CLIs ask at the same moment.

There is no system daemon to rely on: the first ``rctr`` that finds the
default socket dead starts the per-user daemon.  An exclusive ``flock`` on
``<rundir>/rctrd-start.lock`` serialises the CLIs; each one re-checks the
socket after taking the lock, so a crowd starts exactly one daemon (the
daemon holds a lock of its own too, a second line of defence).

Where systemd listens on the socket for rctrd (``rctrd.socket``, see
docs/systemd.md), the socket answers from the start: the CLI just connects and
systemd starts the daemon; nothing here runs.  A daemon that refuses its
settings (rctr.toml, ``RCTR_*``) exits with ``EX_CONFIG`` and one log line
saying which: that line becomes the CLI's error.
"""

from __future__ import annotations

import errno
import fcntl
import os
import socket
import sys
import time
from collections.abc import Callable

from rctr.core.errors import EX_CONFIG
from rctr.core.paths import check_owned

# For the type checker only (start-up imports: see _run_fastpath).
TYPE_CHECKING = False
if TYPE_CHECKING:
    import subprocess
    from typing import Protocol

    class Process(Protocol):
        """What ``ensure_running`` needs of the daemon it started: ``Popen.poll``."""

        def poll(self) -> int | None: ...

__all__ = [
    "DaemonStartFailed",
    "default_socket",
    "stop_daemon",
    "ensure_running",
    "log_tail",
    "socket_alive",
    "spawn_daemon",
]

SOCKET_NAME = "rctr.sock"
LOCK_NAME = "rctrd-start.lock"
LOG_NAME = "rctrd.log"
START_TIMEOUT = 15.0
# Connecting to a dead socket fails with one of these: start the daemon.
_DOWN = {errno.ENOENT, errno.ECONNREFUSED}


class DaemonStartFailed(Exception):
    """The daemon did not answer ``/_ping`` in time; ``log`` is the end of rctrd.log."""

    def __init__(self, message: str, log: str) -> None:
        super().__init__(message)
        self.log = log


def default_socket(rundir: str) -> str:
    return os.path.join(rundir, SOCKET_NAME)


def socket_alive(path: str) -> bool:
    """True if something accepts connections on ``path``; False if nothing does.

    Other errors (EACCES, …) are raised: starting a daemon would not help.
    """
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.connect(path)
    except OSError as exc:
        if exc.errno in _DOWN:
            return False
        raise
    finally:
        sock.close()
    return True


def spawn_daemon(rundir: str) -> subprocess.Popen[bytes]:
    """``python -m rctr.daemon``, detached: its own session, no terminal, a log file."""
    import subprocess

    from rctr.core import launch

    log = os.open(os.path.join(rundir, LOG_NAME),
                  os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600)
    # Not systemd's socket-activation variables: they name fds of this process only.
    env = {k: v for k, v in os.environ.items() if not k.startswith("LISTEN_")}
    try:
        return subprocess.Popen(
            launch.argv("daemon"), stdin=subprocess.DEVNULL,
            stdout=log, stderr=log, start_new_session=True, close_fds=True, cwd="/", env=env)
    finally:
        os.close(log)


def stop_daemon(rundir: str, timeout: float = 15.0) -> bool:
    """SIGTERM the rctrd that ``rundir/rctrd.pid`` names and wait for it; True once none runs."""
    import signal

    import psutil

    try:
        with open(os.path.join(rundir, "rctrd.pid")) as fh:
            proc = psutil.Process(int(fh.read().strip()))
        cmdline = proc.cmdline()
    except (OSError, ValueError, psutil.Error):
        return True  # no pid file, or its process is gone
    if "rctr.daemon" not in cmdline and not ("system" in cmdline and "service" in cmdline):
        return True  # the pid was reused by something else
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout)  # its listening socket closes with it
    except psutil.TimeoutExpired:
        return False
    return True


def log_tail(rundir: str, lines: int = 20) -> str:
    try:
        with open(os.path.join(rundir, LOG_NAME), "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 16384))
            data = f.read().decode("utf-8", "replace")
    except OSError:
        return ""
    return "\n".join(data.splitlines()[-lines:])


def ensure_running(rundir: str, *, ping: Callable[[], bool],
                   spawn: Callable[[str], Process | None] = spawn_daemon,
                   timeout: float = START_TIMEOUT) -> bool:
    """Make sure a daemon serves ``<rundir>/rctr.sock``; True if this call started it.

    ``ping`` answers whether the daemon says "OK" on ``/_ping``; ``spawn``
    starts one and returns a ``Popen``-like object (or None), injectable for tests.
    """
    path = default_socket(rundir)
    os.makedirs(rundir, mode=0o700, exist_ok=True)
    check_owned(rundir)  # before the first request: a socket there may be anyone's
    if socket_alive(path):
        return False
    fd = os.open(os.path.join(rundir, LOCK_NAME), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        started = not socket_alive(path)  # else another CLI won the race
        log_start = _log_size(rundir)
        proc = spawn(rundir) if started else None
        if not _wait_ready(ping, proc, timeout):
            if proc is not None and proc.poll() == EX_CONFIG:
                raise _settings_error(rundir)
            raise DaemonStartFailed(
                f"rctrd did not answer on {path} within {timeout:g} s", log_tail(rundir))
        if started:
            for line in start_warnings(rundir, log_start):
                sys.stderr.write(f"{line}\n")
        return started
    finally:
        os.close(fd)  # releases the lock


def _log_size(rundir: str) -> int:
    try:
        return os.path.getsize(os.path.join(rundir, LOG_NAME))
    except OSError:
        return 0


def start_warnings(rundir: str, offset: int) -> list[str]:
    """The warnings a daemon logged while it started (from ``offset`` of its log): the
    CLI that started it repeats them, or nobody would see them (say, lost containers)."""
    try:
        with open(os.path.join(rundir, LOG_NAME), "rb") as f:
            f.seek(offset)
            text = f.read(1 << 16).decode(errors="replace")
    except OSError:
        return []
    prefix = "rctrd: warning: "
    return ["rctr: " + line.removeprefix("rctrd: ") for line in text.splitlines()
            if line.startswith(prefix)]


def _settings_error(rundir: str) -> Exception:
    """The daemon's last log line (``rctrd: cannot start: FILE: [table] key ...``), as one
    line of the CLI's own."""
    from ._context import CLIError

    lines = log_tail(rundir, 5).splitlines()
    last = lines[-1].removeprefix("rctrd: ") if lines else "cannot start: a bad setting"
    return CLIError(last.replace("cannot start: ", "cannot start rctrd: ", 1))


def _wait_ready(ping: Callable[[], bool], proc: Process | None, timeout: float) -> bool:
    """Poll ``/_ping`` until "OK", the deadline, or the daemon's exit."""
    deadline = time.monotonic() + timeout
    delay = 0.01
    while True:
        if ping():
            return True
        if proc is not None and proc.poll() is not None:
            return ping()
        if time.monotonic() >= deadline:
            return False
        time.sleep(delay)
        delay = min(delay * 2, 0.2)
