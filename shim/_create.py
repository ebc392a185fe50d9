"""Running the runtime's ``create`` for the shim, in a forked child.

The child (the "creator") puts the container's stdio on fds 0-2, closes
every other fd and then either calls rctr's runtime in-process (no
interpreter start-up) or execs crun/runc.  A child rather than the shim
itself, for three reasons:

- the container init is forked from it before it execs, and would otherwise
  hold copies of every shim fd (the ready fd among them, so the daemon would
  not see its end) until ``start``;
- signal dispositions: Python ignores SIGPIPE and SIGXFSZ, and an ignored
  signal survives ``execve``; the creator restores the defaults, as
  ``subprocess`` does, so the container starts with them;
- the runtime's modules are imported in the creator only, so they never
  take up memory in the long-lived shim.

The init is reparented to the shim (the nearest subreaper) when the
runtime's intermediate process exits.
"""

from __future__ import annotations

import json
import os
import select
import signal
import socket

from rctr.core.proc import close_fds_except

from ._request import ShimConfig
from ._statedir import CONSOLE_SOCK, PID, RUNTIME_LOG
from ._sockets import listen_unix
from ._stdio import Stdio

__all__ = ["CreateFailed", "create_container"]

CREATE_TIMEOUT = 300.0  # seconds; the runtime itself bounds each setup step at 120


class CreateFailed(Exception):
    """The runtime could not create the container; ``hint`` says what to do, if known."""

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint


def create_container(cfg: ShimConfig, state_dir: str, stdio: Stdio) -> int:
    """Create the container (parked on exec.fifo) and return its init's pid."""
    mine = theirs = listener = None
    if cfg.tty and cfg.runtime == "rctr":
        mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    elif cfg.tty:
        listener = listen_unix(os.path.join(state_dir, CONSOLE_SOCK), 1)
    result_r, result_w = os.pipe2(os.O_CLOEXEC)
    try:
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the creator
            _creator(cfg, state_dir, stdio, result_w, theirs.fileno() if theirs else None)
        os.close(result_w)
        result_w = -1
        if theirs is not None:
            theirs.close()
        master = _wait_creator(cfg, pid, listener)
        error = _read_all(result_r)
        status = _reap(pid)
        if error or status != 0:
            raise _failure(cfg, state_dir, stdio, error, status)
        if mine is not None:
            master = _receive_master(mine)
        if cfg.tty:
            if master is None:
                raise CreateFailed(f"{cfg.runtime} create sent no terminal to the console socket")
            stdio.set_master(master, cfg.width, cfg.height)
    finally:
        for sock in (mine, listener):
            if sock is not None:
                sock.close()
        os.close(result_r)
        if result_w >= 0:
            os.close(result_w)
    return _read_pid(os.path.join(state_dir, PID))


def _wait_creator(cfg: ShimConfig, pid: int, listener: socket.socket | None) -> int | None:
    """Wait for the creator to exit, taking the pty master from the console socket meanwhile."""
    import time

    master = None
    pidfd = os.pidfd_open(pid)
    deadline = time.monotonic() + CREATE_TIMEOUT
    try:
        while True:
            watch = [pidfd] + ([listener] if listener is not None and master is None else [])
            left = deadline - time.monotonic()
            ready, _, _ = select.select(watch, [], [], max(0.0, left))
            if listener is not None and listener in ready:
                conn, _ = listener.accept()
                with conn:
                    conn.settimeout(10)
                    master = _receive_master(conn)
            if pidfd in ready:
                if listener is not None and master is None and \
                        select.select([listener], [], [], 0)[0]:
                    continue  # a master sent just before the runtime exited
                return master
            if not ready:
                os.kill(pid, signal.SIGKILL)
                _reap(pid)
                raise CreateFailed(f"{cfg.runtime} create did not finish in {CREATE_TIMEOUT:.0f}s")
    finally:
        os.close(pidfd)


def _receive_master(sock: socket.socket) -> int | None:
    sock.settimeout(10)
    try:
        _, fds, _, _ = socket.recv_fds(sock, 4096, 1)
    except OSError:
        return None
    return fds[0] if fds else None


def _read_all(fd: int) -> bytes:
    """What the creator wrote before it exited: read without waiting for the end of
    file, which comes only when the init (forked with a copy) execs."""
    os.set_blocking(fd, False)
    data = b""
    try:
        while chunk := os.read(fd, 65536):
            data += chunk
    except BlockingIOError:
        pass
    return data


def _reap(pid: int) -> int:
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


def _read_pid(path: str) -> int:
    try:
        with open(path, "rb") as f:
            return int(f.read().strip())
    except (OSError, ValueError) as exc:
        raise CreateFailed(f"the runtime wrote no usable pid file {path}: {exc}") from None


def _failure(cfg: ShimConfig, state_dir: str, stdio: Stdio, error: bytes,
             status: int) -> CreateFailed:
    """The best message we have: the creator's own report, the runtime's log, its stderr."""
    if error:
        try:
            report = json.loads(error)
            return CreateFailed(str(report["error"]), report.get("hint"))
        except (ValueError, KeyError, TypeError):
            pass
    message = _last_log_error(os.path.join(state_dir, RUNTIME_LOG))
    if not message:
        message = _pending_stderr(stdio)
    what = f"exited with status {status}" if status >= 0 else f"was killed by signal {-status}"
    return CreateFailed(message or f"{cfg.runtime} create {what}")


def _last_log_error(path: str) -> str | None:
    """The last error in crun's or runc's ``--log-format json`` log."""
    message = None
    try:
        with open(path, "rb") as f:
            for line in f:
                try:
                    entry = json.loads(line)
                except ValueError:
                    continue
                if isinstance(entry, dict) and entry.get("level") in ("error", "fatal"):
                    message = str(entry.get("msg") or message)
    except OSError:
        return None
    return message


def _pending_stderr(stdio: Stdio) -> str | None:
    for fd, stream in stdio.outputs.items():
        if stream == 2:
            os.set_blocking(fd, False)
            try:
                return os.read(fd, 4096).decode(errors="replace").strip() or None
            except OSError:
                return None
    return None


# -- the creator (runs in the forked child; never returns) -----------------------------------


def _creator(cfg: ShimConfig, state_dir: str, stdio: Stdio, result_w: int,
             console_fd: int | None) -> None:  # pragma: no cover - runs in the child
    try:
        for signum in (signal.SIGPIPE, signal.SIGXFSZ):
            signal.signal(signum, signal.SIG_DFL)
        for target, fd in enumerate(stdio.child):
            os.dup2(fd, target)
        close_fds_except({result_w} | ({console_fd} if console_fd is not None else set()))
        pid_file = os.path.join(state_dir, PID)
        if cfg.runtime == "rctr":
            from rctr.rootless import Runtime

            Runtime(cfg.runtime_root).create(cfg.id, cfg.bundle, pid_file=pid_file,
                                             console_fd=console_fd)
            os._exit(0)
        argv = [cfg.runtime_path, "--root", cfg.runtime_root,
                "--log", os.path.join(state_dir, RUNTIME_LOG), "--log-format", "json",
                "create", "--bundle", cfg.bundle, "--pid-file", pid_file]
        if cfg.tty:
            argv += ["--console-socket", os.path.join(state_dir, CONSOLE_SOCK)]
        os.execv(cfg.runtime_path, argv + [cfg.id])
    except BaseException as exc:  # noqa: B036 - everything goes back to the shim
        _report(result_w, exc)
    os._exit(1)


def _report(fd: int, exc: BaseException) -> None:  # pragma: no cover - runs in the child
    if isinstance(exc, OSError) and exc.filename:
        message = f"{exc.strerror}: {exc.filename}"
    else:
        message = str(getattr(exc, "message", "") or exc) or type(exc).__name__
    data = json.dumps({"error": message, "hint": getattr(exc, "hint", None)}).encode()
    try:
        while data:
            data = data[os.write(fd, data):]
    except OSError:
        pass

