"""The OCI runtime as the daemon drives it: start, kill, delete, exec.

rctr's own runtime is called in-process (no interpreter start-up on the
path of every container start); crun and runc through their command line.
The shim does ``create``; everything here follows runc's contract.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
from typing import Any

from rctr.core import launch
from rctr.core.errors import InvalidArgument, NotFound, Unavailable

__all__ = ["OCIRuntime"]

KNOWN = ("rctr", "crun", "runc")


class OCIRuntime:
    def __init__(self, name: str, root: str) -> None:
        if name not in KNOWN:
            raise InvalidArgument(f"unknown runtime {name!r} (known: {', '.join(KNOWN)})")
        self.name = name
        self.root = root
        self.path = None
        if name != "rctr":
            self.path = shutil.which(name)
            if self.path is None:
                raise Unavailable(f"runtime {name} is not installed",
                                  hint=f"install it (apt install {name}) or use --runtime rctr")

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "root": self.root, "path": self.path}

    def _run(self, *args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
        assert self.path is not None
        return subprocess.run([self.path, "--root", self.root, *args], capture_output=True,
                              text=True, timeout=timeout)

    def start(self, container_id: str) -> None:
        if self.name == "rctr":
            from rctr.rootless import Runtime

            Runtime(self.root).start(container_id)
            return
        r = self._run("start", container_id)
        if r.returncode != 0:
            raise Unavailable(f"{self.name} start: {r.stderr.strip()}")

    def kill(self, container_id: str, signum: int, all_processes: bool = False) -> None:
        if self.name == "rctr":
            from rctr.rootless import Runtime

            Runtime(self.root).kill(container_id, signum, all_processes)
            return
        r = self._run("kill", *(["--all"] if all_processes else []), container_id,
                      signal.Signals(signum).name)
        if r.returncode != 0:
            raise Unavailable(f"{self.name} kill: {r.stderr.strip()}")

    def delete(self, container_id: str) -> None:
        """Forget the container (force), quietly when the runtime never knew it."""
        if self.name == "rctr":
            from rctr.rootless import Runtime

            try:
                Runtime(self.root).delete(container_id, force=True)
            except NotFound:
                pass
            return
        self._run("delete", "--force", container_id)

    def exec_argv(self, container_id: str, process_file: str, *, tty_socket: str | None,
                  pid_file: str | None = None) -> list[str]:
        """The command line that runs one more process in the container, in the foreground."""
        if self.name == "rctr":
            base = [*launch.argv("runtime"), "--root", self.root]
        else:
            assert self.path is not None
            base = [self.path, "--root", self.root]
        argv = [*base, "exec", "--process", process_file]
        if tty_socket:
            argv += ["--tty", "--console-socket", tty_socket]
        if pid_file:
            argv += ["--pid-file", pid_file]
        return [*argv, container_id]
