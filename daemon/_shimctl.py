"""The daemon's side of the shim contract (see shim/): launch, wait, read exits.

A shim lives in ``<rundir>/s/ID[:32]``.  The daemon writes ``shim.json``,
starts the shim with a ready pipe and waits for ``{"pid": N}`` (or an error).
Shims are forked by the user's shim zygote (``rctr.shim._zygote``), which
the daemon starts on first use and which outlives it like the shims do; if
no zygote can serve, the shim is started as its own interpreter.
The container's exit reaches the daemon as the ``exit`` FIFO closing, after
``exit.json`` was written; a restarted daemon reads the same files.
"""

from __future__ import annotations

import array
import json
import os
import select
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable
from typing import Any

from rctr.core import launch
from rctr.core.atomic import write_json_atomic
from rctr.core.errors import FailedPrecondition, Unavailable
from rctr.core.proc import Process
from rctr.core.zygote import MAX_MESSAGE, code_token

from ._logs import format_time

__all__ = ["Shim", "ShimError", "Zygote", "ZygoteRefused", "ZygoteStale", "spawn_via"]

_READY_TIMEOUT = 60.0
_ZYGOTE_READY_TIMEOUT = 30.0


class ShimError(FailedPrecondition):
    """The runtime could not create the container (bad command, bad mount...)."""


class Shim:
    def __init__(self, directory: str) -> None:
        self.dir = directory

    def path(self, name: str) -> str:
        return os.path.join(self.dir, name)

    # -- launch ------------------------------------------------------------------------------

    def launch(self, settings: dict[str, Any], zygote: Zygote | None = None) -> dict[str, Any]:
        """Start the shim; its ready message (``{"pid", "network"}``) once the container exists."""
        os.makedirs(self.dir, mode=0o700, exist_ok=True)
        write_json_atomic(self.path("shim.json"), settings, 0o600, sync=False)
        rfd, wfd = os.pipe2(os.O_CLOEXEC)
        kill: Callable[[], None] = self._kill_shim
        try:
            if zygote is None or not zygote.spawn(self.dir, wfd):
                proc = _start(launch.argv("shim", self.dir, "--ready-fd", str(wfd)), wfd)
                kill = proc.kill
                # The shim lives on by itself; reap it in the background if it ends under us.
                _reap_later(proc)
        finally:
            os.close(wfd)
        try:
            reply = _read_ready(rfd, _READY_TIMEOUT, kill, "the shim")
        finally:
            os.close(rfd)
        if reply is None:
            raise Unavailable("the shim exited before the container was created",
                              hint="see shim-log.json in the container's shim directory")
        if "error" in reply:
            raise ShimError(reply["error"], hint=reply.get("hint"))
        return reply

    def _kill_shim(self) -> None:
        proc = self.process()
        if proc is not None:
            proc.signal(signal.SIGKILL)

    # -- facts -------------------------------------------------------------------------------

    def process(self) -> Process | None:
        """The shim itself, if it still runs."""
        try:
            with open(self.path("shim.pid")) as f:
                record = json.load(f)
            proc = Process(int(record["pid"]), int(record["start_time"]))
        except (OSError, ValueError, KeyError, TypeError):
            return None
        return proc if proc.alive() else None

    def init(self) -> Process | None:
        """The container's init, by pid and start time, if it still runs."""
        try:
            with open(self.path("pid")) as f:
                pid = int(f.read().strip())
            with open(self.path("starttime")) as f:
                start = int(f.read().strip())
        except (OSError, ValueError):
            return None
        proc = Process(pid, start)
        return proc if proc.alive() else None

    def exit_status(self) -> dict[str, Any] | None:
        try:
            with open(self.path("exit.json")) as f:
                status: dict[str, Any] = json.load(f)
                return status
        except (OSError, ValueError):
            return None

    def wait_exit(self, stop: threading.Event | None = None,
                  check: Callable[[], str | None] | None = None) -> dict[str, Any]:
        """Block until the container exits; its exit record (synthesised if the shim died).

        ``check`` is asked about once a second while the container runs; a reason it gives
        back ends the wait early with ``{"broken": reason}``.
        """
        status = self.exit_status()
        if status is not None:
            return status
        try:
            fd = os.open(self.path("exit"), os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError:
            fd = -1
        try:
            poller = select.poll()
            if fd >= 0:
                poller.register(fd, select.POLLHUP | select.POLLIN)
            while True:
                status = self.exit_status()
                if status is None:
                    status = self._wait_fifo(fd, poller)
                if status is None:
                    status = self._given_up(stop, check)
                if status is not None:
                    return status
        finally:
            if fd >= 0:
                os.close(fd)

    def _wait_fifo(self, fd: int, poller: select.poll) -> dict[str, Any] | None:
        """A second for the exit FIFO to close (half a second without one); the exit
        record if it did."""
        if fd < 0:
            time.sleep(0.5)
            return None
        events = poller.poll(1000)
        if events and any(ev & (select.POLLHUP | select.POLLERR) for _, ev in events):
            status = self.exit_status()
            if status is not None:
                return status
            time.sleep(0.05)
        return None

    def _given_up(self, stop: threading.Event | None,
                  check: Callable[[], str | None] | None) -> dict[str, Any] | None:
        """What ends a wait with no exit written: the shim died, a stop, a ``check``'s reason."""
        if self.process() is None:
            status = self.exit_status()
            if status is not None:
                return status
            return {"exit_code": 255, "signal": None, "lost": True,
                    "finished_at": format_time(), "error": "the shim died"}
        if stop is not None and stop.is_set():
            return {"exit_code": -1, "interrupted": True}
        reason = check() if check is not None else None
        if reason:
            return {"broken": reason}
        return None

    # -- talking to it -----------------------------------------------------------------------

    def control(self, message: dict[str, Any]) -> None:
        try:
            fd = os.open(self.path("control"), os.O_WRONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError:
            return  # the shim is gone: nothing to control
        try:
            os.write(fd, json.dumps(message).encode() + b"\n")
        except OSError:
            pass
        finally:
            os.close(fd)

    def attach(self) -> socket.socket:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        try:
            sock.connect(self.path("attach.sock"))
        except OSError as exc:
            sock.close()
            raise Unavailable(f"cannot attach: {exc.strerror}") from None
        return sock


class Zygote:
    """The daemon's handle on the user's shim zygote: started on first use, kept across
    daemon restarts (it lives in the pause process's namespaces, as the shims do), and
    replaced when it runs other code or in other namespaces than this daemon."""

    def __init__(self, sock_path: str, log: Callable[[str], None] | None = None) -> None:
        self.sock_path = sock_path
        self._log = log or (lambda message: None)
        self._lock = threading.Lock()
        self._generation = 0
        self._token: str | None = None
        self._broken = False

    def spawn(self, state_dir: str, ready_fd: int) -> bool:
        """Have the zygote fork a shim on ``state_dir``; False if no zygote can serve."""
        if self._broken:
            return False
        if self._token is None:
            self._token = code_token()
        for _attempt in range(2):
            generation = self._generation
            try:
                spawn_via(self.sock_path, state_dir, ready_fd, self._token)
                return True
            except (ZygoteStale, ConnectionRefusedError, FileNotFoundError):
                if not self._replace(generation):
                    return False
            except (OSError, ZygoteRefused) as exc:
                self._log(f"the shim zygote failed ({exc}); starting the shim directly")
                return False
        return False

    def _replace(self, generation: int) -> bool:
        """Start a new zygote, unless another thread did since ``generation``."""
        with self._lock:
            if self._generation != generation:
                return True
            rfd, wfd = os.pipe2(os.O_CLOEXEC)
            try:
                proc = _start(launch.argv("zygote", self.sock_path, "--ready-fd", str(wfd)), wfd)
            finally:
                os.close(wfd)
            try:
                reply = _read_ready(rfd, _ZYGOTE_READY_TIMEOUT, proc.kill, "the shim zygote")
            finally:
                os.close(rfd)
            _reap_later(proc)
            if reply is None or reply.get("token") != self._token:
                # Nothing a retry would fix (it would not start, or runs other code than
                # this daemon): shims start as their own interpreters from now on.
                self._broken = True
                proc.kill()
                self._log(f"the shim zygote did not start ({reply}); starting shims directly")
                return False
            self._generation += 1
            return True


class ZygoteStale(Exception):
    """The zygote runs other code, or in other namespaces, than the daemon asking it."""


class ZygoteRefused(Exception):
    """The zygote answered that it forked nothing (a bad request, fork failing)."""


def spawn_via(sock_path: str, state_dir: str, ready_fd: int, token: str,
              timeout: float = 10.0) -> None:
    """Ask the zygote on ``sock_path`` for a shim on ``state_dir`` (protocol: shim/_zygote.py).

    Raises OSError if no zygote listens there, ZygoteStale or ZygoteRefused when
    it forked nothing.  Once the request is out, a broken answer is no proof
    that nothing was forked, so it is not an error: the ready fd will tell (a
    shim reports on it; with none, its last copy closes and the reader sees EOF).
    """
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC) as sock:
        sock.settimeout(timeout)
        sock.connect(sock_path)
        message = json.dumps({"dir": state_dir, "token": token}).encode() + b"\n"
        sock.sendmsg([message], [(socket.SOL_SOCKET, socket.SCM_RIGHTS,
                                  array.array("i", [ready_fd]))])
        reply = b""
        try:
            while not reply.endswith(b"\n") and len(reply) < MAX_MESSAGE:
                chunk = sock.recv(MAX_MESSAGE)
                if not chunk:
                    break
                reply += chunk
        except OSError:
            return
    try:
        answer = json.loads(reply)
    except ValueError:
        return
    if not isinstance(answer, dict) or answer.get("ok"):
        return
    if answer.get("stale"):
        raise ZygoteStale(sock_path)
    raise ZygoteRefused(str(answer.get("error", answer)))


def _start(argv: list[str], pass_fd: int) -> subprocess.Popen[bytes]:
    """``argv`` (``launch.argv``'s) in its own session, with ``pass_fd`` and nothing else
    inherited."""
    with open(os.devnull, "r+b") as null:
        return subprocess.Popen(argv, stdin=null, stdout=null, stderr=null,
                                pass_fds=(pass_fd,), cwd="/", start_new_session=True)


def _read_ready(rfd: int, timeout: float, kill: Callable[[], None],
                what: str) -> dict[str, Any] | None:
    """The one JSON line on a ready pipe; None if the writer ended without one."""
    deadline = time.monotonic() + timeout
    data = b""
    while not data.endswith(b"\n"):
        left = deadline - time.monotonic()
        if left <= 0:
            kill()
            raise Unavailable(f"{what} did not report within {timeout:.0f} s")
        ready, _, _ = select.select([rfd], [], [], left)
        if not ready:
            continue
        chunk = os.read(rfd, 65536)
        if not chunk:
            break
        data += chunk
    try:
        reply = json.loads(data)
    except ValueError:
        return None
    return reply if isinstance(reply, dict) else None


def _reap_later(proc: subprocess.Popen[bytes]) -> None:
    threading.Thread(target=proc.wait, name="reap-child", daemon=True).start()
