"""Named volumes: directories under ``<datadir>/volumes/NAME/_data``, Docker's ``local`` driver.

A volume's metadata (labels, creation time, whether the image's content was
copied in yet) sits beside its data in ``volume.json``, written atomically.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import subprocess
import threading
import time
from builtins import list as List  # Volumes.list shadows the builtin in annotations
from typing import Any

from rctr.core.atomic import write_json_atomic
from rctr.core.errors import Conflict, InvalidArgument, NotFound

__all__ = ["Volumes"]

_NAME = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]+$")


class Volumes:
    """The volumes under ``root``; ``events`` (when given) hears Docker's ``volume`` create
    and destroy events, whoever asked: the API or a container that names a new volume."""

    def __init__(self, root: str, events: Any = None) -> None:
        self.root = root
        self.lock = threading.Lock()
        self.events = events

    def _emit(self, action: str, name: str) -> None:
        if self.events is not None:
            self.events.emit("volume", action, name, {"driver": "local"})

    def _meta(self, name: str) -> str:
        return os.path.join(self.root, name, "volume.json")

    def data_path(self, name: str) -> str:
        return os.path.join(self.root, name, "_data")

    def create(self, name: str | None = None, labels: dict[str, str] | None = None,
               driver: str = "local", options: dict[str, str] | None = None,
               anonymous: bool = False) -> dict[str, Any]:
        if driver not in ("", "local"):
            raise InvalidArgument(f"volume driver {driver!r} is not supported (only \"local\")")
        if options:
            raise InvalidArgument("volume driver options are not supported")
        name = name or secrets.token_hex(32)
        if not _NAME.match(name):
            raise InvalidArgument(f"invalid volume name {name!r}: use [a-zA-Z0-9][a-zA-Z0-9_.-]+")
        with self.lock:
            if os.path.exists(self._meta(name)):
                return self.inspect(name)  # Docker: creating an existing volume returns it
            os.makedirs(self.data_path(name), mode=0o755, exist_ok=True)
            meta = {"Name": name, "Driver": "local", "Labels": labels or {}, "Options": {},
                    "Scope": "local", "CreatedAt": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                    "Anonymous": anonymous, "Initialised": False}
            write_json_atomic(self._meta(name), meta, 0o600)
        self._emit("create", name)
        return self.inspect(name)

    def exists(self, name: str) -> bool:
        return os.path.exists(self._meta(name))

    def _read(self, name: str) -> dict[str, Any]:
        if not _NAME.match(name):
            raise NotFound(f"get {name}: no such volume")
        try:
            with open(self._meta(name)) as f:
                meta: dict[str, Any] = json.load(f)
                return meta
        except FileNotFoundError:
            raise NotFound(f"get {name}: no such volume") from None

    def inspect(self, name: str) -> dict[str, Any]:
        meta = self._read(name)
        return {"Name": meta["Name"], "Driver": "local", "Mountpoint": self.data_path(name),
                "CreatedAt": meta["CreatedAt"], "Labels": meta.get("Labels") or {},
                "Scope": "local", "Options": meta.get("Options") or {}}

    def list(self) -> list[dict[str, Any]]:
        out = []
        for name in sorted(os.listdir(self.root)) if os.path.isdir(self.root) else []:
            try:
                out.append(self.inspect(name))
            except (NotFound, ValueError):
                continue
        return out

    def is_anonymous(self, name: str) -> bool:
        try:
            return bool(self._read(name).get("Anonymous"))
        except NotFound:
            return False

    def copy_up(self, name: str, source: str) -> None:
        """Fill a new, empty volume with the image's content at its mount point, once."""
        with self.lock:
            meta = self._read(name)
            if meta.get("Initialised"):
                return
            data = self.data_path(name)
            if os.path.isdir(source) and not os.listdir(data):
                # cp -a keeps owners and does not follow the image's symlinks; we are
                # root of the user namespace, so the subordinate owners are kept too.
                subprocess.run(["cp", "-a", "--", f"{source}/.", data], check=True,
                               capture_output=True, timeout=600)
                st = os.stat(source)
                os.chown(data, st.st_uid, st.st_gid)
                os.chmod(data, st.st_mode & 0o7777)
            meta["Initialised"] = True
            write_json_atomic(self._meta(name), meta, 0o600)

    def remove(self, name: str, in_use_by: List[str] | None = None, force: bool = False) -> None:
        self._read(name)
        if in_use_by and not force:
            raise Conflict(f"remove {name}: volume is in use - [{', '.join(in_use_by)}]")
        with self.lock:
            shutil.rmtree(os.path.join(self.root, name), ignore_errors=True)
        self._emit("destroy", name)

    def prune(self, in_use: set[str], all_volumes: bool = False) -> tuple[List[str], int]:
        removed, space = [], 0
        for vol in self.list():
            name = vol["Name"]
            if name in in_use or (not all_volumes and not self.is_anonymous(name)):
                continue
            space += _du(self.data_path(name))
            self.remove(name)
            removed.append(name)
        return removed, space

    def size(self, name: str) -> int:
        return _du(self.data_path(name))


def _du(path: str) -> int:
    total = 0
    for dirpath, _dirs, files in os.walk(path):
        for f in files:
            try:
                total += os.lstat(os.path.join(dirpath, f)).st_blocks * 512
            except OSError:
                pass
    return total


