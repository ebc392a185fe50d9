"""The runtime library: runc's contract (create, start, state, kill, delete,
exec, run, list) over the state directory, for an ordinary user.

Each verb loads what it needs, checks the container's status (derived from
the live processes, see _state) and does one thing.  ``create`` undoes
everything it made when any step fails: no state, no process is left.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time

from rctr.core import cgroups
from rctr.core.errors import FailedPrecondition, InvalidArgument, NotFound, Unavailable
from rctr.core.linux import NAMESPACE_FLAGS
from rctr.core.proc import Process

from . import _console
from ._bundle import load_config, validate_process
from ._hooks import HookError, run_hooks
from rctr.core.idmap import find_helper, needs_helper, write_id_maps
from ._state import CREATED, CREATING, RUNNING, STOPPED, Container, StateDir, check_id
from ._sync import ChannelClosed, ChildError, channel_pair

TYPE_CHECKING = False
if TYPE_CHECKING:
    import socket

    from rctr.core.oci import Process as ProcessSpec
    from rctr.core.oci import Spec, State

    from ._state import Record

__all__ = ["Runtime", "ContainerSetupError", "exit_code"]

_SETUP_TIMEOUT = 120.0  # seconds a child may take between two protocol steps
_FORWARDED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1,
              signal.SIGUSR2, signal.SIGCONT, signal.SIGTSTP)


class ContainerSetupError(FailedPrecondition):
    """The container's process failed during setup (its message says where)."""


def exit_code(status: int) -> int:
    """A wait status as a shell would report it: the code, or 128 + signal."""
    code = os.waitstatus_to_exitcode(status)
    return 128 - code if code < 0 else code


def _now_rfc3339() -> str:
    ns = time.time_ns()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ns // 1_000_000_000)) + \
        f".{ns % 1_000_000_000:09d}Z"


def _warn(message: str) -> None:
    sys.stderr.write(f"rctr runtime: warning: {message}\n")


def _write_pid_file(path: str | None, pid: int) -> None:
    if path:
        from rctr.core.atomic import write_atomic

        write_atomic(os.path.abspath(path), str(pid).encode(), sync=False)


def _fill_user_namespace(config: Spec) -> bool:
    """Check the user namespace plan; True when a new one needs id maps written."""
    linux = config["linux"]
    kinds = {ns["type"]: ns for ns in linux.get("namespaces") or []}
    if "user" not in kinds:
        if os.geteuid() != 0:
            raise InvalidArgument(
                "config.json: linux.namespaces: an ordinary user needs a user namespace",
                hint="add {\"type\": \"user\"} or write the config with `rctr runtime spec --rootless`")
        return False
    if kinds["user"].get("path"):
        return False
    if not linux.get("uidMappings") or not linux.get("gidMappings"):
        from rctr.core.subid import SUBGID_FILE, SUBUID_FILE, rootless_mappings

        linux.setdefault("uidMappings", rootless_mappings(os.geteuid(), SUBUID_FILE))
        linux.setdefault("gidMappings", rootless_mappings(os.getegid(), SUBGID_FILE))
    for kind, maps in (("uid", linux["uidMappings"]), ("gid", linux["gidMappings"])):
        if needs_helper(kind, maps):
            find_helper(f"new{kind}map")  # fail now, with the fix, rather than mid-setup
    return True


class Runtime:
    """An OCI runtime over one state root (runc's ``--root``)."""

    def __init__(self, root: str) -> None:
        self.states = StateDir(root)

    # -- create -----------------------------------------------------------------------------

    def create(self, container_id: str, bundle: str, *, pid_file: str | None = None,
               console_socket: str | None = None, preserve_fds: int = 0,
               console_fd: int | None = None) -> Container:
        check_id(container_id)
        bundle = os.path.abspath(bundle)
        return self._create(container_id, bundle, load_config(bundle), pid_file=pid_file,
                            console_socket=console_socket, preserve_fds=preserve_fds,
                            console_fd=console_fd)

    def _create(self, container_id: str, bundle: str, config: Spec, *,
                pid_file: str | None, console_socket: str | None, preserve_fds: int,
                console_fd: int | None) -> Container:
        new_userns = _fill_user_namespace(config)
        console = self._console_for(config, console_socket, console_fd)
        directory = self.states.reserve(container_id)
        record: Record = {
            "ociVersion": config.get("ociVersion", "1.0.2"), "id": container_id, "pid": 0,
            "init_start_time": 0, "bundle": bundle, "rootfs": config["root"]["path"],
            "created": _now_rfc3339(), "owner": _owner(),
            "annotations": config.get("annotations") or {}, "config": config,
        }
        init: Process | None = None
        cgroup = ""
        try:
            cgroup = record["cgroup"] = _make_cgroup(config)
            fifo = os.path.join(directory, "exec.fifo")
            # 0622 like runc: the init may write it after switching to another uid.
            # The state root is private (0700), so no one else reaches it.
            os.mkfifo(fifo, 0o622)
            os.chmod(fifo, 0o622)
            init = self._spawn_init(config, bundle, fifo, console, preserve_fds, record,
                                    new_userns, cgroup)
            container = self.states.save(directory, record)
            _write_pid_file(pid_file, init.pid)
            return container
        except BaseException:
            if init is not None:
                init.signal(signal.SIGKILL)
                _wait_gone(init, 10.0)
            _remove_cgroup(cgroup)
            from rctr.core.atomic import remove_tree

            remove_tree(directory)
            raise
        finally:
            if console is not None and console_fd is None:
                os.close(console)

    @staticmethod
    def _console_for(config: Spec, path: str | None, fd: int | None) -> int | None:
        if not config["process"].get("terminal"):
            return None
        if fd is not None:
            return fd
        if not path:
            raise InvalidArgument(
                "config.json: process.terminal is true but no --console-socket was given",
                hint="pass --console-socket, or set process.terminal to false")
        sock = _console.connect(path)
        return sock.detach()

    def _spawn_init(self, config: Spec, bundle: str, fifo: str, console: int | None,
                    preserve_fds: int, record: Record, new_userns: bool,
                    cgroup: str) -> Process:
        from ._init import container_stage1

        parent, child = channel_pair()
        stage1 = os.fork()
        if stage1 == 0:
            parent.close()
            container_stage1(child, config, bundle, fifo, console, preserve_fds, cgroup)
        child.close()
        init = None
        try:
            try:
                if new_userns:
                    parent.expect("userns", _SETUP_TIMEOUT)
                    write_id_maps(stage1, config["linux"]["uidMappings"],
                                  config["linux"]["gidMappings"])
                    parent.send("mapped")
                init_pid = int(parent.expect("pid", _SETUP_TIMEOUT))
            finally:
                os.waitpid(stage1, 0)
            init = Process.of(init_pid)
            if init is None:
                raise ContainerSetupError("container init exited during setup")
            record["pid"], record["init_start_time"] = init.pid, init.start_time
            parent.expect("create-runtime", _SETUP_TIMEOUT)
            state = Container("", record).oci_state(CREATING)
            run_hooks(config, "prestart", state)
            run_hooks(config, "createRuntime", state)
            parent.send("go", json.dumps(state))
            parent.expect("ready", _SETUP_TIMEOUT)
            return init
        except ChildError as exc:
            raise ContainerSetupError(f"container init: {exc}") from None
        except ChannelClosed:
            raise ContainerSetupError("container init exited during setup") from None
        except HookError as exc:
            raise ContainerSetupError(str(exc)) from None
        except BaseException:
            if init is not None:
                init.signal(signal.SIGKILL)
            raise
        finally:
            parent.close()

    # -- start, state, kill, delete, list -----------------------------------------------------

    def start(self, container_id: str) -> None:
        container = self.states.load(container_id)
        status = container.status()
        if status != CREATED:
            raise FailedPrecondition(f"cannot start container {container_id!r}: it is {status}",
                                     hint="only a created container can be started")
        self._release(container)
        try:
            run_hooks(container.config, "poststart", container.oci_state(RUNNING))
        except HookError as exc:
            _warn(f"poststart {exc}")

    @staticmethod
    def _release(container: Container) -> None:
        """Open exec.fifo for reading: the init, blocked on the write side, goes on to exec."""
        import select

        init = container.init()
        fd = os.open(container.exec_fifo, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        try:
            while True:
                select.select([fd], [], [], 0.05)
                if os.read(fd, 1):
                    break
                if not init.alive():
                    raise ContainerSetupError(f"container {container.id!r} exited before it started")
                time.sleep(0.001)
        finally:
            os.close(fd)
        os.unlink(container.exec_fifo)

    def state(self, container_id: str) -> State:
        return self.states.load(container_id).oci_state()

    def list(self) -> list[State]:
        return [c.oci_state() for c in self.states.list()]

    def kill(self, container_id: str, signum: int, all_processes: bool = False) -> None:
        container = self.states.load(container_id)
        if container.status() == STOPPED:
            raise FailedPrecondition(f"container {container_id!r} is not running")
        self._signal(container, signum, all_processes)

    @staticmethod
    def _signal(container: Container, signum: int, all_processes: bool) -> None:
        init = container.init()
        if all_processes and signum != signal.SIGKILL:
            for pid in _pids_in_pidns(init.pid):
                proc = Process.of(pid)
                if proc is not None and pid != init.pid:
                    proc.signal(signum)
        # SIGKILL to a pid namespace's init ends every process in it.
        init.signal(signum)

    def delete(self, container_id: str, force: bool = False) -> None:
        try:
            container = self.states.load(container_id)
        except NotFound:
            if force and os.path.isdir(self.states.path(container_id)):
                from rctr.core.atomic import remove_tree

                remove_tree(self.states.path(container_id))  # a create that crashed
                return
            raise
        status = container.status()
        if status == RUNNING and not force:
            raise FailedPrecondition(
                f"cannot delete container {container_id!r}: it is running",
                hint="stop it first, or use delete --force")
        if status != STOPPED:
            self._signal(container, signal.SIGKILL, True)
            _wait_gone(container.init(), 10.0)
        _remove_cgroup(container.record.get("cgroup") or "")
        from rctr.core.atomic import remove_tree

        remove_tree(container.dir)
        try:
            run_hooks(container.config, "poststop", container.oci_state(STOPPED))
        except HookError as exc:
            _warn(f"poststop {exc}")

    # -- exec and run: processes we wait for ---------------------------------------------------

    def exec(self, container_id: str, process: ProcessSpec, *, pid_file: str | None = None,
             console_socket: str | None = None, detach: bool = False,
             preserve_fds: int = 0) -> int:
        """Run ``process`` in the container's namespaces; its exit code (0 when detached)."""
        from ._init import exec_stage1

        container = self.states.load(container_id)
        if container.status() not in (CREATED, RUNNING):
            raise FailedPrecondition(f"cannot exec in container {container_id!r}: it is stopped")
        validate_process(process, "process")
        ns_fds = _open_namespaces(container)
        relay_sock, console = self._console_pair(process, console_socket, detach)
        if not detach:
            from rctr.core.linux import set_child_subreaper

            set_child_subreaper()
        parent, child = channel_pair()
        try:
            stage1 = os.fork()
            if stage1 == 0:
                parent.close()
                exec_stage1(child, ns_fds, process, container.config["linux"].get("seccomp"),
                            console, preserve_fds, container.record.get("cgroup") or "")
            child.close()
            try:
                pid = int(parent.expect("pid", _SETUP_TIMEOUT))
            finally:
                os.waitpid(stage1, 0)
            parent.expect("ready", _SETUP_TIMEOUT)
        except ChildError as exc:
            raise ContainerSetupError(f"exec: {exc}") from None
        except ChannelClosed:
            raise ContainerSetupError("exec: the process exited during setup") from None
        finally:
            parent.close()
            for _, fd in ns_fds:
                os.close(fd)
            if console is not None:
                os.close(console)
        _write_pid_file(pid_file, pid)
        if detach:
            return 0
        return _wait_foreground(pid, relay_sock)

    @staticmethod
    def _console_pair(process: ProcessSpec, path: str | None,
                      detach: bool) -> tuple[socket.socket | None, int | None]:
        """(socket we read the master from, fd the container side sends it on)."""
        if not process.get("terminal"):
            return None, None
        if path:
            return None, _console.connect(path).detach()
        if detach:
            raise InvalidArgument("a detached process with a terminal needs --console-socket")
        import socket

        mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        return mine, theirs.detach()

    def run(self, container_id: str, bundle: str, *, pid_file: str | None = None,
            console_socket: str | None = None, detach: bool = False, keep: bool = False,
            preserve_fds: int = 0) -> int:
        """create + start; in the foreground, wait and return the container's exit code."""
        check_id(container_id)
        bundle = os.path.abspath(bundle)
        config = load_config(bundle)
        if not detach:
            from rctr.core.linux import set_child_subreaper

            set_child_subreaper()
        relay_sock, console_fd = self._console_pair(config["process"], console_socket, detach)
        try:
            container = self._create(container_id, bundle, config, pid_file=pid_file,
                                     console_socket=None, preserve_fds=preserve_fds,
                                     console_fd=console_fd)
        finally:
            if console_fd is not None:
                os.close(console_fd)
        try:
            self.start(container_id)
        except BaseException:
            self.delete(container_id, force=True)
            raise
        if detach:
            return 0
        try:
            return _wait_foreground(container.init().pid, relay_sock)
        finally:
            if not keep:
                self.delete(container_id, force=True)


def _make_cgroup(config: Spec) -> str:
    """The container's cgroup directory, made and limited; "" without ``linux.cgroupsPath``.

    As runc rootless: a cgroup that cannot be made is fatal only when the config
    asks for limits; otherwise the container runs in the caller's cgroup.
    """
    linux_config = config.get("linux") or {}
    path = linux_config.get("cgroupsPath")
    if not path:
        return ""
    resources = linux_config.get("resources") or {}
    wanted = cgroups.needed_controllers(resources)
    mount = cgroups.unified_mount()
    try:
        if mount is None:
            raise OSError(0, "no cgroup2 file system is mounted")
        directory = cgroups.host_path(mount, path)
        cgroups.create(directory, resources)
        return directory
    except (OSError, ValueError) as exc:
        if wanted:
            raise ContainerSetupError(
                f"linux.cgroupsPath {path!r}: {exc}",
                hint="resource limits need a cgroup v2 subtree delegated to this user "
                     "(see `rctr doctor`); or run without them") from None
        _warn(f"linux.cgroupsPath {path!r} ignored: {exc}")
        return ""


def _remove_cgroup(directory: str) -> None:
    if not directory:
        return
    try:
        cgroups.remove(directory)
    except OSError as exc:
        _warn(str(exc))


def _owner() -> str:
    import pwd

    try:
        return pwd.getpwuid(os.geteuid()).pw_name
    except KeyError:
        return str(os.geteuid())


def _open_namespaces(container: Container) -> list[tuple[str, int]]:
    pid = container.init().pid
    fds = []
    for ns in container.config["linux"].get("namespaces") or []:
        name = NAMESPACE_FLAGS[ns["type"]][1]
        try:
            fds.append((ns["type"], os.open(f"/proc/{pid}/ns/{name}", os.O_RDONLY | os.O_CLOEXEC)))
        except OSError as exc:
            for _, fd in fds:
                os.close(fd)
            raise Unavailable(f"cannot enter the {ns['type']} namespace of pid {pid}: "
                              f"{exc.strerror}") from None
    return fds


def _pids_in_pidns(init_pid: int) -> list[int]:
    try:
        target = os.readlink(f"/proc/{init_pid}/ns/pid")
    except OSError:
        return []
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if os.readlink(f"/proc/{entry}/ns/pid") == target:
                    pids.append(int(entry))
            except OSError:
                continue
    return pids


def _wait_gone(proc: Process, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while proc.alive():
        if time.monotonic() > deadline:
            raise Unavailable(f"process {proc.pid} did not exit after SIGKILL")
        time.sleep(0.005)


def _wait_foreground(pid: int, relay_sock: socket.socket | None) -> int:
    """Forward signals to ``pid``, relay its terminal if any, reap it, return its exit code."""
    def forward(signum: int, _frame: object) -> None:
        try:
            os.kill(pid, signum)
        except ProcessLookupError:
            pass

    previous = {s: signal.signal(s, forward) for s in _FORWARDED}
    try:
        if relay_sock is not None:
            master = _console.receive_master(relay_sock)
            pidfd = os.pidfd_open(pid)
            try:
                _console.relay(master, pidfd)
            finally:
                os.close(pidfd)
                os.close(master)
        _, status = os.waitpid(pid, 0)
        return exit_code(status)
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
