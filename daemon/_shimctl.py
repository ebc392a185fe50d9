"""The daemon's side of the shim contract (see shim/): launch, wait, read exits.

A shim lives in ``<rundir>/s/ID[:32]``.  The daemon writes ``shim.json``,
starts the shim with a ready pipe and waits for ``{"pid": N}`` (or an error).
The container's exit reaches the daemon as the ``exit`` FIFO closing, after
``exit.json`` was written; a restarted daemon reads the same files.
"""

from __future__ import annotations

import json
import os
import select
import socket
import subprocess
import sys
import time
from typing import Any

from rctr.core.atomic import write_json_atomic
from rctr.core.errors import FailedPrecondition, Unavailable
from rctr.core.proc import Process

from ._logs import format_time

__all__ = ["Shim", "ShimError"]

_READY_TIMEOUT = 60.0


class ShimError(FailedPrecondition):
    """The runtime could not create the container (bad command, bad mount...)."""


class Shim:
    def __init__(self, directory: str) -> None:
        self.dir = directory

    def path(self, name: str) -> str:
        return os.path.join(self.dir, name)

    # -- launch ------------------------------------------------------------------------------

    def launch(self, settings: dict[str, Any]) -> int:
        """Start the shim; return the container's init pid once the runtime created it."""
        os.makedirs(self.dir, mode=0o700, exist_ok=True)
        write_json_atomic(self.path("shim.json"), settings, 0o600, sync=False)
        rfd, wfd = os.pipe2(os.O_CLOEXEC)
        try:
            with open(os.devnull, "r+b") as null:
                proc = subprocess.Popen(
                    [sys.executable, "-m", "rctr.shim", self.dir, "--ready-fd", str(wfd)],
                    stdin=null, stdout=null, stderr=null, pass_fds=(wfd,), cwd="/",
                    start_new_session=True)
        finally:
            os.close(wfd)
        try:
            reply = self._read_ready(rfd, proc)
        finally:
            os.close(rfd)
        # The shim lives on by itself; reap it in the background if it ends under us.
        _reap_later(proc)
        if "error" in reply:
            raise ShimError(reply["error"], hint=reply.get("hint"))
        return int(reply["pid"])

    @staticmethod
    def _read_ready(rfd: int, proc: subprocess.Popen[bytes]) -> dict[str, Any]:
        deadline = time.monotonic() + _READY_TIMEOUT
        data = b""
        while not data.endswith(b"\n"):
            left = deadline - time.monotonic()
            if left <= 0:
                proc.kill()
                raise Unavailable("the shim did not report within a minute")
            ready, _, _ = select.select([rfd], [], [], left)
            if not ready:
                continue
            chunk = os.read(rfd, 65536)
            if not chunk:
                break
            data += chunk
        try:
            return json.loads(data)  # type: ignore[no-any-return]
        except ValueError:
            code = proc.poll()
            raise Unavailable(f"the shim exited before the container was created (status {code})",
                              hint="see shim-log.json in the container's shim directory") from None

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
                return json.load(f)  # type: ignore[no-any-return]
        except (OSError, ValueError):
            return None

    def wait_exit(self, stop: Any = None) -> dict[str, Any]:
        """Block until the container exits; its exit record (synthesised if the shim died)."""
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
                if status is not None:
                    return status
                if fd >= 0:
                    events = poller.poll(1000)
                    if events and any(ev & (select.POLLHUP | select.POLLERR) for _, ev in events):
                        status = self.exit_status()
                        if status is not None:
                            return status
                        time.sleep(0.05)
                else:
                    time.sleep(0.5)
                if self.process() is None:
                    status = self.exit_status()
                    if status is not None:
                        return status
                    return {"exit_code": 255, "signal": None, "lost": True,
                            "finished_at": format_time(), "error": "the shim died"}
                if stop is not None and stop.is_set():
                    return {"exit_code": -1, "interrupted": True}
        finally:
            if fd >= 0:
                os.close(fd)

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


def _reap_later(proc: subprocess.Popen[bytes]) -> None:
    import threading

    threading.Thread(target=proc.wait, name="reap-shim", daemon=True).start()
