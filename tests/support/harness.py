"""Running rctr as an unprivileged user, from a root test harness.

``UserShell`` runs commands as the user with a private XDG_RUNTIME_DIR and
runtime root; its ``cleanup`` kills every process of the user and of the
user's subordinate ids and removes the files, as root, whatever the test did.
``Bundle`` is an OCI bundle owned by the user, made from the test image.
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import testimage

__all__ = ["UserShell", "Bundle", "RCTR"]

RCTR = os.path.join(os.path.dirname(sys.executable), "rctr")
_TEST_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


class UserShell:
    def __init__(self, name: str, uid: int, gid: int, home: str, base: Path) -> None:
        self.name, self.uid, self.gid, self.home = name, uid, gid, home
        self.base = base
        self.runtime_dir = base / "xdg-runtime"
        self.root = self.runtime_dir / "rctr" / "runtime"
        self.uid_map = testimage.subid_map(name, uid, "uid")
        self.gid_map = testimage.subid_map(name, gid, "gid")

    @classmethod
    def create(cls, name: str) -> UserShell:
        pw = pwd.getpwnam(name)
        base = Path(tempfile.mkdtemp(prefix=f"rctr-test-{name}-"))
        shell = cls(name, pw.pw_uid, pw.pw_gid, pw.pw_dir, base)
        for d in (base, shell.runtime_dir):
            d.mkdir(mode=0o700, exist_ok=True)
            os.chown(d, pw.pw_uid, pw.pw_gid)
        os.chmod(base, 0o755)
        return shell

    def env(self, **extra: str) -> dict[str, str]:
        env = {"HOME": self.home, "USER": self.name, "LOGNAME": self.name, "PATH": _TEST_PATH,
               "XDG_RUNTIME_DIR": str(self.runtime_dir), "LANG": "C.UTF-8"}
        env.update(extra)
        return env

    def popen(self, args: list[str], env: dict[str, str] | None = None, **kw: Any) -> subprocess.Popen:
        return subprocess.Popen(args, user=self.uid, group=self.gid, extra_groups=[],
                                env=env or self.env(), cwd=kw.pop("cwd", str(self.base)),
                                start_new_session=True, **kw)

    def run(self, args: list[str], timeout: float = 60, check: bool = False,
            env: dict[str, str] | None = None, **kw: Any) -> subprocess.CompletedProcess:
        kw.setdefault("capture_output", True)
        kw.setdefault("text", True)
        r = subprocess.run(args, user=self.uid, group=self.gid, extra_groups=[],
                           env=env or self.env(), cwd=kw.pop("cwd", str(self.base)),
                           timeout=timeout, **kw)
        if check and r.returncode != 0:
            raise AssertionError(f"{args} exited {r.returncode}\nstdout: {r.stdout}\nstderr: {r.stderr}")
        return r

    def rctr(self, *args: str, **kw: Any) -> subprocess.CompletedProcess:
        return self.run([RCTR, *args], **kw)

    def runtime(self, *args: str, **kw: Any) -> subprocess.CompletedProcess:
        return self.rctr("runtime", "--root", str(self.root), *args, **kw)

    def host_uid(self, container_uid: int) -> int:
        for cstart, hstart, size in self.uid_map:
            if cstart <= container_uid < cstart + size:
                return hstart + container_uid - cstart
        raise KeyError(container_uid)

    def _owned_ids(self) -> set[int]:
        ids = {self.uid}
        for _, hstart, size in self.uid_map[1:]:
            ids.update(range(hstart, hstart + size))
        return ids

    def kill_all(self) -> None:
        import psutil

        ids = self._owned_ids()
        for _ in range(50):
            victims = []
            for p in psutil.process_iter(["uids"]):
                try:
                    if p.info["uids"] and p.info["uids"].real in ids:
                        victims.append(p)
                except psutil.Error:
                    continue
            if not victims:
                return
            for p in victims:
                try:
                    p.send_signal(signal.SIGKILL)
                except psutil.Error:
                    pass
            time.sleep(0.05)

    def cleanup(self) -> None:
        self.kill_all()
        shutil.rmtree(self.base, ignore_errors=True)


class Bundle:
    """An OCI bundle in the user's test directory; ``config`` is its config.json."""

    def __init__(self, shell: UserShell, path: Path) -> None:
        self.shell = shell
        self.path = path
        self.rootfs = path / "rootfs"

    @classmethod
    def make(cls, shell: UserShell, image: str, name: str = "bundle") -> Bundle:
        path = shell.base / name
        testimage.make_bundle(image, str(path), shell.uid, shell.gid, shell.uid_map, shell.gid_map)
        bundle = cls(shell, path)
        shell.runtime("spec", "--rootless", "--bundle", str(path), check=True)
        bundle.update(lambda c: c["process"].update(terminal=False))
        return bundle

    @property
    def config(self) -> dict[str, Any]:
        return json.loads((self.path / "config.json").read_text())

    def update(self, change: Callable[[dict[str, Any]], Any]) -> None:
        config = self.config
        change(config)
        target = self.path / "config.json"
        target.write_text(json.dumps(config, indent=2))
        os.chown(target, self.shell.uid, self.shell.gid)

    def args(self, *argv: str) -> None:
        self.update(lambda c: c["process"].update(args=list(argv)))
