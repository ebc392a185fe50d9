"""rctrd: start-up, the one-per-user lock, joining the pause process, serving.

Order matters: the lock first (one daemon per user), then the pause process
and ``setns`` into its user and mount namespaces while the process is still
single-threaded, then the store (its driver probe forks), then reconcile
what the previous daemon left, and only then threads and the socket.
"""

from __future__ import annotations

import argparse
import fcntl
import os
import secrets
import shutil
import signal
import sys
import threading
from typing import Any

from rctr.core import cgroups
from rctr.core.errors import RctrError

from ._events import Events
from ._http import APIServer, Router
from ._paths import DaemonPaths
from ._volumes import Volumes

__all__ = ["main", "Daemon"]


class Daemon:
    """What the API handlers share: paths, store, containers, volumes, events."""

    def __init__(self, paths: DaemonPaths, *, driver: str | None = None, runtime: str = "rctr") -> None:
        from rctr.storage import Store

        from ._containers import Containers
        from ._health import HealthMonitor
        from ._runtimes import OCIRuntime
        from ._shimctl import Zygote

        self.paths = paths
        self.instance_id = secrets.token_hex(16)
        self.store = Store(paths.storage)
        self.driver = self.store.driver(driver)
        self.store.collect_garbage()
        self.events = Events()
        self.volumes = Volumes(paths.volumes)
        self.runtime = OCIRuntime(runtime, paths.runtime_root)
        self.init_path = _find_init()
        self.execs: dict[str, Any] = {}
        self.delegation = cgroups.find_delegation()
        self.warnings = _host_warnings(self.delegation)
        self.containers = Containers(paths, self.store, self.volumes, self.events, self.runtime,
                                     self.driver, self.init_path, Zygote(paths.zygote_socket, _log),
                                     self.delegation)
        self.health = HealthMonitor.for_daemon(self)  # hooks in before reconcile re-adopts

    def image_summary(self, image: dict[str, Any]) -> dict[str, Any]:
        from ._api_images import image_summary

        return image_summary(self, image)

    def router(self) -> Router:
        from . import (_api_archive, _api_auth, _api_containers, _api_exec, _api_images,
                       _api_networks, _api_system, _api_volumes)

        router = Router()
        for module in (_api_system, _api_containers, _api_exec, _api_images, _api_volumes,
                       _api_archive, _api_auth, _api_networks):
            module.register(router, self)
        return router


def _find_init() -> str | None:
    for name in ("tini-static", "docker-init", "tini"):
        path = shutil.which(name)
        if path:
            return path
    return None


def _host_warnings(delegation: cgroups.Delegation | None) -> list[str]:
    if delegation is None:
        return ["WARNING: no cgroup v2 subtree is delegated to this user: --memory, --cpus and "
                "--pids-limit are not enforced"]
    return [f"WARNING: the {name} controller is not enabled in {delegation.base}: its limits are "
            "not enforced" for name in cgroups.CONTROLLERS if name not in delegation.controllers]


def _log(message: str) -> None:
    sys.stderr.write(f"rctrd: {message}\n")
    sys.stderr.flush()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="rctrd", description="rctr's per-user daemon (Docker Engine API)")
    parser.add_argument("--storage-driver", default=os.environ.get("RCTR_STORAGE_DRIVER") or None)
    parser.add_argument("--runtime", default=os.environ.get("RCTR_RUNTIME") or "rctr",
                        choices=("rctr", "crun", "runc"))
    parser.add_argument("--verbose", "-v", action="store_true")
    args = parser.parse_args(argv)
    paths = DaemonPaths.default()
    try:
        paths.ensure()
    except OSError as exc:
        _log(f"cannot create {exc.filename}: {exc.strerror}")
        return 1
    lock = open(paths.lock, "a")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        _log(f"another rctrd already serves this user (lock {paths.lock} is held)")
        return 1
    try:
        from rctr.core.pause import ensure_pause, join

        pause, started = ensure_pause(paths.rundir)
        if started:
            _log(f"started the pause process (pid {pause.pid})")
        join(pause)  # before any thread: setns into a user namespace needs a single thread
        daemon = Daemon(paths, driver=args.storage_driver, runtime=args.runtime)
        counts = daemon.containers.reconcile()
    except RctrError as exc:
        _log(f"cannot start: {exc}" + (f" (hint: {exc.hint})" if getattr(exc, "hint", None) else ""))
        return 1
    _log(f"storage driver {daemon.driver}, runtime {daemon.runtime.name}; "
         f"re-adopted {counts['running']} running container(s), "
         f"{counts['exited_meanwhile']} exited meanwhile, {counts['collected']} leftover(s) collected")
    server = APIServer(paths.socket, daemon.router(), verbose=args.verbose)
    with open(os.path.join(paths.rundir, "rctrd.pid"), "w") as f:
        f.write(f"{os.getpid()}\n")

    def stop(signum: int, _frame: Any) -> None:
        _log(f"signal {signum}: stopping (containers keep running)")
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    _log(f"listening on {paths.socket}")
    try:
        server.serve_forever(poll_interval=0.5)
    finally:
        server.server_close()
        try:
            os.unlink(paths.socket)
        except OSError:
            pass
    return 0
