"""rctrd: start-up, the one-per-user lock, joining the pause process, serving.

Order matters: the settings first (rctr.toml, environment, flags: a bad one
stops the start with exit 78 and one line naming where it was set) and the
socket systemd may have passed, then the lock (one daemon per user), then the
pause process and ``setns`` into its user and mount namespaces while the
process is still single-threaded, then the store (its driver probe forks), then reconcile
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
import socket
import threading
import time
from collections.abc import Mapping, MutableMapping
from typing import IO, TYPE_CHECKING, Any

from rctr.core import cgroups
from rctr.core.config import LOG_LEVELS, RUNTIMES, Config, load_config
from rctr.core.errors import EX_CONFIG, RctrError, Unavailable

from . import _container_network
from .containers import Containers
from ._events import Events
from ._http import APIServer, Router
from ._paths import DaemonPaths
from ._volumes import Volumes

if TYPE_CHECKING:
    from rctr.storage import Store

    from ._api_archive import Archives
    from ._health import HealthMonitor
    from ._runtimes import OCIRuntime

__all__ = ["main", "Daemon", "Log", "activation_socket", "settings"]

SD_LISTEN_FDS_START = 3


class Daemon:
    """What the API handlers share: paths, config, store, containers, volumes, events."""

    paths: DaemonPaths
    config: Config
    instance_id: str
    store: Store
    driver: str
    events: Events
    volumes: Volumes
    runtime: OCIRuntime
    init_path: str | None
    delegation: cgroups.Delegation | None
    warnings: list[str]
    containers: Containers
    archives: Archives
    health: HealthMonitor

    def __init__(self, paths: DaemonPaths, config: Config | None = None,
                 log: Log | None = None) -> None:
        from rctr.storage import Store

        from ._api_archive import Archives
        from ._health import HealthMonitor
        from ._runtimes import OCIRuntime
        from ._shimctl import Zygote

        config = config or Config()
        log = log or Log(config.log_level)
        self.paths = paths
        self.config = config
        self.instance_id = secrets.token_hex(16)
        self.store = Store(paths.storage, insecure_registries=config.insecure_registries,
                           registry_mirrors=config.registry_mirrors)
        self.driver = self.store.driver(config.storage_driver)
        self.store.collect_garbage()
        self.events = Events()
        self.volumes = Volumes(paths.volumes, self.events)
        self.runtime = OCIRuntime(config.runtime, paths.runtime_root)
        self.init_path = _find_init()
        self.delegation = cgroups.find_delegation()
        self.warnings = _host_warnings(self.delegation)
        self.containers = Containers(paths, self.store, self.volumes, self.events, self.runtime,
                                     self.driver, self.init_path,
                                     Zygote(paths.zygote_socket, log.warning), self.delegation,
                                     default_network=config.network)
        self.archives = Archives(self.containers, paths.datadir)
        self.health = HealthMonitor.for_daemon(self)  # hooks in before reconcile re-adopts

    def router(self) -> Router:
        """The Engine API's routes (``_routes.ROUTES``), each handler bound to this daemon."""
        from ._routes import router

        return router(self)


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


class Log:
    """Lines on stderr (rctrd.log, or the journal), from ``level`` up."""

    _RANK = {name: rank for rank, name in enumerate(LOG_LEVELS)}

    def __init__(self, level: str = "info") -> None:
        self.level = level
        self._min = self._RANK[level]

    def _write(self, level: str, message: str) -> None:
        if self._RANK[level] >= self._min:
            sys.stderr.write(f"rctrd: {message}\n")
            sys.stderr.flush()

    def debug(self, message: str) -> None:
        self._write("debug", message)

    def info(self, message: str) -> None:
        self._write("info", message)

    def warning(self, message: str) -> None:
        self._write("warning", f"warning: {message}")  # the CLI that started rctrd repeats these

    def error(self, message: str) -> None:
        self._write("error", message)


def activation_socket(env: MutableMapping[str, str]) -> socket.socket | None:
    """The listening socket systemd passed (sd_listen_fds(3): ``LISTEN_PID`` is this process,
    ``LISTEN_FDS`` >= 1, the first at fd 3), or None.

    The variables are removed either way and the fds made close-on-exec, so no child (pause
    process, zygote, shims) inherits them: a shim holding the socket would keep it alive
    after the daemon is gone.
    """
    pid, count = env.pop("LISTEN_PID", ""), env.pop("LISTEN_FDS", "")
    env.pop("LISTEN_FDNAMES", None)
    if not pid.isdigit() or int(pid) != os.getpid() or not count.isdigit() or int(count) < 1:
        return None
    for fd in range(SD_LISTEN_FDS_START, SD_LISTEN_FDS_START + int(count)):
        try:
            os.set_inheritable(fd, False)
        except OSError:
            pass
    try:
        sock = socket.socket(fileno=SD_LISTEN_FDS_START)
    except OSError as exc:
        raise Unavailable(f"LISTEN_FDS={count}, but fd 3 is not a socket: {exc}",
                          hint="check the .socket unit (ListenStream=%t/rctr/rctr.sock)") from None
    listening = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN)
    if sock.family != socket.AF_UNIX or sock.type != socket.SOCK_STREAM or not listening:
        sock.detach()  # not ours to close
        raise Unavailable("the socket passed by systemd (fd 3) is not a listening unix stream "
                          "socket", hint="use ListenStream=%t/rctr/rctr.sock in rctrd.socket "
                                         "(no Accept=yes)")
    return sock


def settings(args: argparse.Namespace, env: Mapping[str, str]) -> Config:
    """rctr.toml, the environment, then the flags; values checked against what exists here."""
    from rctr.storage import DRIVERS

    log_level = args.log_level or ("debug" if args.verbose else None)
    config = load_config(env, path=args.config).with_flags(
        storage_driver=args.storage_driver, runtime=args.runtime, network=args.network,
        log_level=log_level)
    if config.storage_driver is not None and config.storage_driver not in DRIVERS:
        raise config.invalid("storage_driver", f"unknown storage driver {config.storage_driver!r}",
                             f"use one of {', '.join(DRIVERS)}")
    if config.network is not None:
        problem = _container_network.check_default(config.network)
        if problem:
            raise config.invalid("network", f"default network: {problem}",
                                 "use slirp4netns[:OPTIONS], pasta[:ARGS], none, host or the "
                                 "name of a network")
    return config


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="rctrd", description="rctr's per-user daemon (Docker "
                                "Engine API); settings: flags, then $RCTR_*, then rctr.toml")
    p.add_argument("--config", help="the config file (default: $RCTR_CONFIG, else "
                   "$XDG_CONFIG_HOME/rctr/rctr.toml)")
    p.add_argument("--storage-driver", help="$RCTR_STORAGE_DRIVER, [storage] driver")
    p.add_argument("--runtime", choices=RUNTIMES, help="$RCTR_RUNTIME, [daemon] runtime")
    p.add_argument("--network", help="the default network: $RCTR_NETWORK, [network] default")
    p.add_argument("--log-level", choices=LOG_LEVELS, help="$RCTR_LOG_LEVEL, [daemon] log_level")
    p.add_argument("--verbose", "-v", action="store_true", help="--log-level debug")
    return p


def _keep_pause(rundir: str, log: Log) -> None:
    """Replace a killed pause process from inside its namespaces, which rctrd keeps alive:
    commands that join it (``rctr unshare``, the next rctrd) find the same namespaces."""
    from rctr.core.pause import replace_pause

    while True:
        time.sleep(1)
        try:
            proc = replace_pause(rundir)
        except (RctrError, OSError) as exc:
            log.error(f"cannot replace the pause process: {exc}")
            continue
        if proc is not None:
            log.warning(f"the pause process was gone; pid {proc.pid} holds the same namespaces "
                        "now, and nothing was lost")


class _CannotStart(Exception):
    """A start-up step failed; its message is logged and ``code`` is rctrd's exit status."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


def main(argv: list[str] | None = None) -> int:
    """rctrd: settings, the lock, the pause process's namespaces, reconcile, then serve.

    The order matters: the activation socket's fds are made close-on-exec before
    anything forks, and the join (setns into a user namespace) comes before any thread.
    """
    args = parser().parse_args(argv)
    log = Log()
    try:
        listening = activation_socket(os.environ)
        config = settings(args, os.environ)
        log = Log(config.log_level)
        paths = DaemonPaths.default()
        lock = _take_lock(paths)  # held (open) for rctrd's whole life
        for line in config.describe():
            log.info(line)
        daemon = _join_and_adopt(paths, config, log)
    except RctrError as exc:
        log.error(f"cannot start: {exc}")
        return EX_CONFIG
    except _CannotStart as exc:
        log.error(str(exc))
        return exc.code
    try:
        _serve(daemon, paths, config, listening, log)
    finally:
        lock.close()
    return 0


def _take_lock(paths: DaemonPaths) -> IO[str]:
    """The run dir made, and ``rctrd.lock`` taken: one daemon per user."""
    try:
        paths.ensure()
    except OSError as exc:
        raise _CannotStart(f"cannot create {exc.filename}: {exc.strerror}") from exc
    lock = open(paths.lock, "a")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        lock.close()
        raise _CannotStart(f"another rctrd already serves this user (lock {paths.lock} is held)"
                           ) from None
    return lock


def _join_and_adopt(paths: DaemonPaths, config: Config, log: Log) -> Daemon:
    """Into the pause process's namespaces (started if need be), then the daemon's state
    read back and its running containers re-adopted."""
    from rctr.core.pause import ensure_pause, join

    try:
        pause, started = ensure_pause(paths.rundir)
        if started:
            log.info(f"started the pause process (pid {pause.pid})")
        join(pause)  # before any thread: setns into a user namespace needs a single thread
        daemon = Daemon(paths, config, log)
        counts = daemon.containers.reconcile()
    except RctrError as exc:
        raise _CannotStart(f"cannot start: {exc}") from exc
    log.info(f"storage driver {daemon.driver}, runtime {daemon.runtime.name}; "
             f"re-adopted {counts['running']} running container(s), "
             f"{counts['exited_meanwhile']} exited meanwhile, {counts['collected']} leftover(s) "
             "collected")
    lost = daemon.containers.lost_at_start
    if lost:
        # "warning: " lines of a start are what the CLI that started rctrd repeats.
        log.warning(f"{len(lost)} running container(s) were lost, their shims gone with the "
                    f"user namespace (pause process killed, or a reboot): {', '.join(lost)}; "
                    "`rctr start` runs them again")
    return daemon


def _serve(daemon: Daemon, paths: DaemonPaths, config: Config,
           listening: socket.socket | None, log: Log) -> None:
    """The API until SIGTERM or SIGINT; containers keep running after it."""
    threading.Thread(target=_keep_pause, args=(paths.rundir, log), name="pause-keeper",
                     daemon=True).start()
    server = APIServer(paths.socket, daemon.router(), verbose=config.log_level == "debug",
                       listening=listening)
    with open(os.path.join(paths.rundir, "rctrd.pid"), "w") as f:
        f.write(f"{os.getpid()}\n")

    def stop(signum: int, _frame: Any) -> None:
        log.info(f"signal {signum}: stopping (containers keep running)")
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    where = server.server_address
    log.info(f"listening on {where}" + (" (socket passed by systemd)" if listening else ""))
    try:
        server.serve_forever(poll_interval=0.5)
    finally:
        server.server_close()
        if listening is None:  # systemd's socket stays: the next connection starts us again
            try:
                os.unlink(paths.socket)
            except OSError:
                pass
