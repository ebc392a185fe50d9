"""An unprivileged user with rctr's whole pipeline: CLI, rctrd, shims, containers.

``RctrUser`` wraps a ``UserShell`` with a private data directory (store,
records, volumes), loads the busybox test image into the user's store, and
runs ``rctr`` or the stock ``docker`` CLI (``DOCKER_HOST`` at rctrd's socket)
or raw API requests, always as the user.  The CLI starts rctrd on first use.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

from harness import RCTR, UserShell

__all__ = ["RctrUser", "IMAGE", "ok", "detached", "own_user"]

IMAGE = "rctr-test/busybox:latest"
PYTHON = sys.executable

_API_SCRIPT = r"""
import http.client, json, socket, sys
class C(http.client.HTTPConnection):
    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(60)
        self.sock.connect(sys.argv[1])
method, path, body = sys.argv[2], sys.argv[3], sys.argv[4]
conn = C("localhost")
conn.request(method, path, body=body.encode() if body else None,
             headers={"Content-Type": "application/json"} if body else {})
r = conn.getresponse()
print(json.dumps({"status": r.status, "body": r.read().decode(errors="replace")}))
"""


class RctrUser:
    def __init__(self, shell: UserShell, **settings: str) -> None:
        self.shell = shell
        self.settings = settings  # RCTR_* variables for everything it runs (rctrd too)
        self.data = shell.base / "data"
        self.data.mkdir(mode=0o700)
        os.chown(self.data, shell.uid, shell.gid)
        self.rundir = shell.runtime_dir / "rctr"
        self.socket = self.rundir / "rctr.sock"

    def env(self, **extra: str) -> dict[str, str]:
        return self.shell.env(XDG_DATA_HOME=str(self.data),
                              DOCKER_HOST=f"unix://{self.socket}", DOCKER_CONFIG=str(self.shell.base / "docker"),
                              **{**self.settings, **extra})

    def load_image(self, layout: str, name: str = IMAGE) -> None:
        code = (f"from rctr.storage import Store; Store.default().load({layout!r}, name={name!r})")
        self.shell.run([PYTHON, "-c", code], env=self.env(), check=True)

    def rctr(self, *args: str, timeout: float = 60, **kw: Any) -> subprocess.CompletedProcess:
        return self.shell.run([RCTR, *args], env=self.env(), timeout=timeout, **kw)

    def docker(self, *args: str, timeout: float = 60, **kw: Any) -> subprocess.CompletedProcess:
        return self.shell.run(["docker", *args], env=self.env(), timeout=timeout, **kw)

    def popen(self, args: list[str], **kw: Any) -> subprocess.Popen:
        return self.shell.popen(args, env=self.env(), **kw)

    def api(self, method: str, path: str, body: Any = None, raw: str | None = None) -> tuple[int, Any]:
        """One API request as the user; (status, decoded JSON body or text)."""
        text = raw if raw is not None else (json.dumps(body) if body is not None else "")
        r = self.shell.run([PYTHON, "-c", _API_SCRIPT, str(self.socket), method, path, text],
                           env=self.env(), check=True)
        reply = json.loads(r.stdout)
        try:
            return reply["status"], json.loads(reply["body"])
        except ValueError:
            return reply["status"], reply["body"]

    def state(self, name: str) -> dict[str, Any]:
        """The container's ``State``, as inspect gives it."""
        return json.loads(ok(self.rctr("inspect", name)).stdout)[0]["State"]  # type: ignore[no-any-return]

    def daemon_pid(self) -> int | None:
        try:
            pid = int((self.rundir / "rctrd.pid").read_text())
        except (OSError, ValueError):
            return None
        return pid if os.path.exists(f"/proc/{pid}") else None

    def wait_for(self, predicate: Any, timeout: float = 20, what: str = "condition") -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():
                return
            time.sleep(0.1)
        raise AssertionError(f"timed out waiting for {what}")


@contextlib.contextmanager
def own_user(test_image: str, **settings: str) -> Iterator[RctrUser]:
    """The pipeline for one test, with ``settings`` (``RCTR_STORAGE_DRIVER="vfs"``, …) in
    its environment.  Its clean-up ends every process of the test user."""
    shell = UserShell.create(os.environ.get("RCTR_TEST_USER", "rctr-test"))
    try:
        user = RctrUser(shell, **settings)
        user.load_image(test_image)
        yield user
    finally:
        shell.cleanup()


def ok(r: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    """``r``, after checking that it succeeded (its output in the message if not)."""
    assert r.returncode == 0, f"exit {r.returncode}\nstdout: {r.stdout}\nstderr: {r.stderr}"
    return r


@contextlib.contextmanager
def detached(rc: RctrUser, name: str, *args: str) -> Iterator[str]:
    """A container ``run -d --name NAME ARGS`` (its id), removed whatever the test does."""
    try:
        yield ok(rc.rctr("run", "-d", "--name", name, *args)).stdout.strip()
    finally:
        rc.rctr("rm", "-f", name)
