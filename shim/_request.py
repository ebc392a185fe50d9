"""``shim.json``: what the daemon asks one shim to run, checked before anything starts.

A plain class with slots rather than a dataclass: ``dataclasses`` imports
``inspect`` and its tree, a megabyte that would stay resident in every shim.
"""

from __future__ import annotations

import json
import os

from rctr.core.errors import InvalidArgument
from rctr.core.ids import check_id

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, TypeVar

    from rctr.netstack._types import ShimNetwork

    T = TypeVar("T")

__all__ = ["ShimConfig", "load_config", "RUNTIMES"]

RUNTIMES = ("rctr", "crun", "runc")


class ShimConfig:
    """One container's shim settings; read-only by convention once loaded."""

    __slots__ = ("id", "bundle", "runtime", "runtime_root", "runtime_path", "tty", "stdin",
                 "stdin_once", "log_path", "log_max_size", "log_max_file", "width", "height",
                 "network")

    def __init__(self, raw: dict[str, Any]) -> None:
        runtime = _field(raw, "runtime", dict)
        log = _field(raw, "log", dict)
        self.id: str = check_id(_field(raw, "id", str))
        self.bundle: str = _abs(_field(raw, "bundle", str), "bundle")
        self.runtime: str = _field(runtime, "name", str, "runtime.name")
        if self.runtime not in RUNTIMES:
            raise InvalidArgument(f"shim.json: runtime.name {self.runtime!r} is not one of "
                                  f"{', '.join(RUNTIMES)}")
        self.runtime_root: str = _abs(_field(runtime, "root", str, "runtime.root"), "runtime.root")
        self.runtime_path: str = runtime.get("path") or self.runtime
        self.tty: bool = bool(raw.get("tty", False))
        self.stdin: bool = bool(raw.get("stdin", False))
        self.stdin_once: bool = bool(raw.get("stdin_once", False))
        self.log_path: str = _abs(_field(log, "path", str, "log.path"), "log.path")
        self.log_max_size: int = max(0, int(log.get("max_size") or 0))
        self.log_max_file: int = max(1, int(log.get("max_file") or 1))
        self.width: int = int(raw.get("width") or 80)
        self.height: int = int(raw.get("height") or 24)
        # The container's network for rctr.netstack, or None: the spec joins an existing
        # namespace (host, container:NAME) and there is nothing for the shim to run.
        network: ShimNetwork | None = raw.get("network")
        if network is not None and not isinstance(network, dict):
            raise InvalidArgument("shim.json: network must be an object or null")
        self.network = network


def _field(obj: dict[str, Any], key: str, kind: type[T], name: str | None = None) -> T:
    value = obj.get(key)
    if not isinstance(value, kind) or (kind is str and not value):
        raise InvalidArgument(f"shim.json: {name or key} is missing or not a {kind.__name__}")
    return value


def _abs(path: str, name: str) -> str:
    if not os.path.isabs(path):
        raise InvalidArgument(f"shim.json: {name} must be an absolute path, not {path!r}")
    return path


def load_config(path: str) -> ShimConfig:
    try:
        with open(path, "rb") as f:
            raw = json.load(f)
    except FileNotFoundError:
        raise InvalidArgument(f"{path} is missing: the daemon writes it before starting the shim"
                              ) from None
    except ValueError as exc:
        raise InvalidArgument(f"{path}: not JSON: {exc}") from None
    if not isinstance(raw, dict):
        raise InvalidArgument(f"{path}: not a JSON object")
    try:
        return ShimConfig(raw)
    except (TypeError, ValueError) as exc:
        raise InvalidArgument(f"{path}: {exc}") from None
