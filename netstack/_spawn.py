"""Starting a helper program (slirp4netns, pasta) as a child of the shim.

``subprocess`` would do, but it stays resident in every shim; this is the
small part of it the shim needs, plus two things it does not do:

- the parent-death signal, so a helper ends with a shim that is killed;
- the default SIGPIPE disposition: Python ignores SIGPIPE, an ignored
  signal survives ``execve``, and pasta refuses to start with it ignored
  ("Couldn't install signal handlers").
"""

from __future__ import annotations

import os
import signal
import time

from rctr.core import linux
from rctr.core.proc import close_fds_except

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ["spawn", "read_log", "run_in_child", "end_child"]


def spawn(argv: list[str], log_path: str, keep_fds: tuple[int, ...] = (),
          die_with_parent: bool = True) -> int:
    """Fork and exec ``argv`` with stdin on /dev/null and its output in ``log_path``."""
    err_r, err_w = os.pipe2(os.O_CLOEXEC)
    log_fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600)
    try:
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child
            try:
                _exec_child(argv, log_fd, keep_fds, err_w, die_with_parent)
            except BaseException as exc:  # noqa: BLE001 - reported to the parent
                os.write(err_w, f"{argv[0]}: {getattr(exc, 'strerror', None) or exc}".encode())
            os._exit(127)
    finally:
        os.close(err_w)
        os.close(log_fd)
    try:
        failure = os.read(err_r, 4096).decode(errors="replace")
    finally:
        os.close(err_r)
    if failure:
        os.waitpid(pid, 0)
        raise OSError(failure)
    return pid


def _exec_child(argv: list[str], log_fd: int, keep_fds: tuple[int, ...], err_w: int,
                die_with_parent: bool) -> None:  # pragma: no cover - runs in the child
    for sig in (signal.SIGPIPE, signal.SIGXFSZ, signal.SIGINT, signal.SIGTERM, signal.SIGCHLD):
        signal.signal(sig, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_SETMASK, [])
    if die_with_parent:
        linux.set_pdeathsig(signal.SIGKILL)
    os.setsid()
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.dup2(log_fd, 1)
    os.dup2(log_fd, 2)
    for fd in keep_fds:
        os.set_inheritable(fd, True)
    close_fds_except({*keep_fds, err_w})  # err_w is close-on-exec: it reports a failed exec
    os.execvp(argv[0], argv)


def read_log(path: str, limit: int = 2000) -> str:
    """The end of a helper's output, for an error message."""
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - limit))
            text = f.read().decode(errors="replace")
    except OSError:
        return ""
    lines = [ln for ln in text.splitlines()
             if ln.strip() and "Failed to send" not in ln and "experimental" not in ln]
    return "; ".join(lines[-4:])


def run_in_child(what: str, func: Callable[..., object], *args: object) -> None:
    """Run ``func(*args)`` in a forked child and wait for it; its error as ``OSError(what: …)``.

    For work that moves the calling thread between namespaces (``unshare``,
    ``setns``) or imports what should not stay resident (pyroute2)."""
    err_r, err_w = os.pipe2(os.O_CLOEXEC)
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        code = 0
        try:
            func(*args)
        except BaseException as exc:  # noqa: BLE001 - reported to the parent
            text = str(exc) if isinstance(exc, OSError) else f"{type(exc).__name__}: {exc}"
            os.write(err_w, text.encode()[:4000])
            code = 1
        os._exit(code)
    os.close(err_w)
    try:
        message = b""
        while chunk := os.read(err_r, 4096):
            message += chunk
    finally:
        os.close(err_r)
    _, status = os.waitpid(pid, 0)
    if message or status != 0:
        raise OSError(f"{what}: {message.decode(errors='replace') or 'the child failed'}")


def end_child(pid: int, grace: float = 1.0) -> None:
    """Wait ``grace`` seconds for a child that was told to go, then kill it; reap it."""
    deadline = time.monotonic() + grace
    while True:
        try:
            done, _ = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            return  # reaped already (by the shim's loop)
        if done:
            return
        if time.monotonic() > deadline:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                return
            try:
                os.waitpid(pid, 0)
            except ChildProcessError:
                pass
            return
        time.sleep(0.01)
