"""The code that runs in the processes the runtime forks.

Two forks, as in runc's nsexec: the first child joins or creates the
namespaces (a user namespace must be entered by a single-threaded process,
and a new pid namespace only applies to children), the second child is the
container's init (PID 1 in its pid namespace) or an exec'd process.  The
first child reports the second's pid and exits, so the second is reparented
to the nearest subreaper: the shim, or ``rctr runtime run`` itself.

Nothing here returns: each child ends in ``execve`` or ``os._exit``.  Errors
before the point of no return go back to the runtime as one line.
"""

from __future__ import annotations

import errno
import json
import os
import sys

from rctr.core import cgroups, linux
from rctr.core.linux import NAMESPACE_FLAGS

from . import _console, _rootfs
from ._hooks import run_hooks
from ._process import apply_process, build_seccomp, find_executable, process_env
from ._sync import Channel

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from typing import NoReturn

    from rctr.core.oci import Process, SeccompProfile, Spec, State
    from rctr.core.seccomp import Filter

__all__ = ["container_stage1", "exec_stage1", "NamespacePlan"]


class NamespacePlan:
    """Which namespaces to join (type -> fd or path) and which to create."""

    def __init__(self, join: Sequence[tuple[str, str | int]], create: list[str]) -> None:
        self.join = join
        self.create = create

    @classmethod
    def from_config(cls, config: Spec) -> NamespacePlan:
        join: list[tuple[str, str | int]] = []
        create: list[str] = []
        for ns in config["linux"].get("namespaces") or []:
            if ns.get("path"):
                join.append((ns["type"], ns["path"]))
            else:
                create.append(ns["type"])
        return cls(join, create)


def _report(ch: Channel, exc: BaseException) -> None:
    if isinstance(exc, OSError) and exc.filename and str(exc.filename) not in str(exc.strerror):
        text = f"{exc.strerror}: {exc.filename}"
    else:
        text = str(exc) or type(exc).__name__
    try:
        ch.send("error", text)
    except OSError:
        pass


def _enter(ch: Channel, plan: NamespacePlan, uid_maps_wanted: bool) -> None:
    """Join the given namespaces (user first), then create the new ones."""
    fds = []
    for kind, where in plan.join:
        fd = where if isinstance(where, int) else os.open(where, os.O_RDONLY | os.O_CLOEXEC)
        fds.append((kind, fd, where))
    fds.sort(key=lambda item: item[0] != "user")
    for kind, fd, where in fds:
        linux.setns(fd, NAMESPACE_FLAGS[kind][0], path=str(where))
        os.close(fd)
    if "user" in plan.create:
        linux.unshare(linux.CLONE_NEWUSER)
        if uid_maps_wanted:
            ch.send("userns")
            ch.expect("mapped")
    flags = 0
    for kind in plan.create:
        if kind != "user":
            flags |= NAMESPACE_FLAGS[kind][0]
    if flags:
        linux.unshare(flags)
    if flags & linux.CLONE_NEWNET:
        linux.loopback_up()  # runc and crun do too: a new namespace's lo starts down


def _fork_and_report(ch: Channel, child: Callable[[], NoReturn]) -> None:
    # The child shares the channel: it waits until the pid is sent, so that its
    # own messages ("ready") can never arrive before "pid".
    gate_r, gate_w = os.pipe()
    try:
        pid = os.fork()
    except BlockingIOError:
        raise OSError(errno.EAGAIN, "fork: no more processes allowed (the container's "
                      "--pids-limit, or the user's RLIMIT_NPROC)") from None
    if pid == 0:
        os.close(gate_w)
        os.read(gate_r, 1)
        os.close(gate_r)
        child()  # never returns
    os.close(gate_r)
    try:
        ch.send("pid", str(pid))
    finally:
        os.write(gate_w, b"g")
        os.close(gate_w)


def container_stage1(ch: Channel, config: Spec, bundle: str, fifo: str,
                     console: int | None, preserve_fds: int, cgroup: str = "") -> None:
    try:
        if cgroup:  # before any namespace: a cgroup namespace would be rooted here
            cgroups.enter(cgroup)
        _enter(ch, NamespacePlan.from_config(config), True)
        _fork_and_report(ch, lambda: _container_init(ch, config, bundle, fifo, console,
                                                     preserve_fds))
    except BaseException as exc:
        _report(ch, exc)
        os._exit(1)
    os._exit(0)


def _container_init(ch: Channel, config: Spec, bundle: str, fifo: str,
                    console: int | None, preserve_fds: int) -> NoReturn:
    try:
        os.setsid()
        process = config["process"]
        # The state directory, to reach exec.fifo after pivot_root (no /proc needed).
        state_dir = os.open(os.path.dirname(fifo), os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        console_sock = _console.connect(console) if process.get("terminal") else None
        seccomp = build_seccomp(config["linux"].get("seccomp"))
        rootfs = _rootfs.prepare_rootfs(config, bundle)
        ch.send("create-runtime")
        state: State = json.loads(ch.expect("go"))
        run_hooks(config, "createContainer", state)
        _rootfs.pivot_root(rootfs)
        if console_sock is not None:
            _console.setup_container_pty(console_sock)
        _set_names(config)
        _rootfs.finish_rootfs(config)
        if "oomScoreAdj" in process:
            with open("/proc/self/oom_score_adj", "w") as f:
                f.write(str(process["oomScoreAdj"]))
        exe, env = _become_process(ch, process, seccomp, preserve_fds)
    except BaseException as exc:
        _report(ch, exc)
        os._exit(1)
    _wait_for_start_and_exec(config, state, state_dir, os.path.basename(fifo), exe, env)


def _become_process(ch: Channel, process: Process, seccomp: Filter | None,
                    preserve_fds: int) -> tuple[str, dict[str, str]]:
    """The last steps that can still fail visibly: then tell the runtime we are ready."""
    env = process_env(process)
    exe = find_executable(process["args"][0], env)
    apply_process(process, seccomp)
    _keep_fds(preserve_fds, env)
    ch.send("ready")
    ch.close()
    return exe, env


def _set_names(config: Spec) -> None:
    if config.get("hostname"):
        linux.sethostname(config["hostname"])
    if config.get("domainname"):
        linux.setdomainname(config["domainname"])


def _keep_fds(count: int, env: dict[str, str]) -> None:
    for fd in range(3, 3 + count):
        os.set_inheritable(fd, True)
    if count:
        env.setdefault("LISTEN_FDS", str(count))


def _wait_for_start_and_exec(config: Spec, state: State, state_dir: int, fifo: str,
                             exe: str, env: dict[str, str]) -> NoReturn:
    try:
        # Blocks until `start` opens the fifo for reading (runc's exec.fifo).
        fd = os.open(fifo, os.O_WRONLY | os.O_CLOEXEC, dir_fd=state_dir)
        os.write(fd, b"0")
        os.close(fd)
        os.close(state_dir)
        run_hooks(config, "startContainer", {**state, "status": "created", "pid": os.getpid()})
        os.execve(exe, config["process"]["args"], env)
    except BaseException as exc:
        sys.stderr.write(f"rctr runtime: container process: {exc}\n")
        sys.stderr.flush()
        os._exit(127 if isinstance(exc, FileNotFoundError) else 126)


def exec_stage1(ch: Channel, ns_fds: list[tuple[str, int]], process: Process,
                seccomp: SeccompProfile | None, console: int | None, preserve_fds: int,
                cgroup: str = "") -> None:
    try:
        if cgroup:  # counted with the container, as runc exec does
            cgroups.enter(cgroup)
        built = build_seccomp(seccomp)  # before entering the container's mount namespace
        _enter(ch, NamespacePlan(ns_fds, []), False)
        _fork_and_report(ch, lambda: _exec_child(ch, process, built, console, preserve_fds))
    except BaseException as exc:
        _report(ch, exc)
        os._exit(1)
    os._exit(0)


def _exec_child(ch: Channel, process: Process, seccomp: Filter | None,
                console: int | None, preserve_fds: int) -> NoReturn:
    try:
        if process.get("terminal"):
            os.setsid()
            _console.setup_container_pty(_console.connect(console), bind_console=False)
        exe, env = _become_process(ch, process, seccomp, preserve_fds)
    except BaseException as exc:
        _report(ch, exc)
        os._exit(1)
    try:
        os.execve(exe, process["args"], env)
    except OSError as exc:
        sys.stderr.write(f"rctr runtime: exec {exe}: {exc.strerror}\n")
        os._exit(126)
