"""``python -m rctr.shim STATE_DIR --ready-fd N``: one container's shim, from create to exit.

The daemon starts the shim in its own session, already inside the user and
mount namespaces of the pause process, and then talks to it only through
the files of ``_statedir``.  The shim stays single-threaded and imports only
what it needs: one runs per container, for the container's whole life.
"""

from __future__ import annotations

import json
import os
import sys

from rctr.core.atomic import write_atomic, write_json_atomic
from rctr.core.proc import start_time

from . import _statedir as L
from ._shimlog import ShimLog

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

    from rctr.netstack import NetworkSandbox

    from ._attach_server import AttachServer
    from ._statedir import Ready, ShimPid
    from ._stdio import Stdio

__all__ = ["main", "UsageError"]


class UsageError(Exception):
    """The command line is wrong: the daemon that started us has a bug."""


def parse_args(argv: list[str]) -> tuple[str, int]:
    state_dir, ready_fd = None, None
    args = list(argv)
    while args:
        arg = args.pop(0)
        if arg == "--ready-fd" and args:
            ready_fd = args.pop(0)
        elif arg.startswith("--ready-fd="):
            ready_fd = arg.split("=", 1)[1]
        elif not arg.startswith("-") and state_dir is None:
            state_dir = arg
        else:
            raise UsageError(f"unexpected argument {arg!r}")
    if state_dir is None or ready_fd is None or not ready_fd.isdigit():
        raise UsageError("usage: python -m rctr.shim STATE_DIR --ready-fd N")
    return os.path.abspath(state_dir), int(ready_fd)


def main(argv: list[str] | None = None) -> int:
    try:
        state_dir, ready_fd = parse_args(sys.argv[1:] if argv is None else argv)
    except UsageError as exc:
        sys.stderr.write(f"rctr shim: {exc}\n")
        return 2
    # Inherited through pass_fds, so inheritable: nothing we fork may keep it.
    os.set_inheritable(ready_fd, False)
    shim = _Shim(state_dir, ready_fd)
    try:
        return shim.run()
    except BaseException as exc:  # noqa: B036 - the shim's last word goes to its log
        shim.fail(exc)
        return 1


class _Shim:
    """The steps of one shim's life; ``fail`` undoes what a failed start left behind."""

    def __init__(self, state_dir: str, ready_fd: int) -> None:
        self.dir = state_dir
        self.ready_fd: int | None = ready_fd
        self.log = ShimLog(self.path(L.SHIM_LOG))
        self.made: list[str] = []
        self.fds: list[int] = []
        self.init_pid: int | None = None
        self.stdio: Stdio | None = None
        self.attach: AttachServer | None = None
        self.net: NetworkSandbox | None = None

    def path(self, name: str) -> str:
        return os.path.join(self.dir, name)

    def run(self) -> int:
        from rctr.core.linux import set_child_subreaper, set_name

        from ._attach_server import AttachServer
        from ._request import load_config
        from ._create import create_container
        from ._exit import open_fifo, write_exit
        from ._io import JsonFileLog
        from ._serve import Server
        from ._stdio import Stdio

        set_name("rctr-shim")  # forked from the zygote, a shim has the zygote's command line
        set_child_subreaper()
        shim_pid: ShimPid = {"pid": os.getpid(), "start_time": start_time(os.getpid())}
        write_json_atomic(self.path(L.SHIM_PID), shim_pid, 0o644)
        cfg = load_config(self.path(L.SHIM_JSON))
        if cfg.network is not None:
            # First: the runtime's create joins the namespace this makes, and a port
            # that cannot be published should fail the start before anything runs.
            from rctr.netstack import NetworkSandbox

            self.net = net = NetworkSandbox(cfg.network, self.dir)
            net.prepare()
        exit_fd = self._fifo(open_fifo, L.EXIT_FIFO)
        control_fd = self._fifo(open_fifo, L.CONTROL_FIFO)
        log = JsonFileLog(cfg.log_path, cfg.log_max_size, cfg.log_max_file)
        self.attach = attach = AttachServer(self.path(L.ATTACH_SOCK))
        self.made.append(L.ATTACH_SOCK)
        if cfg.tty and cfg.runtime != "rctr":
            self.made.append(L.CONSOLE_SOCK)
        self.stdio = stdio = Stdio(cfg.tty, cfg.stdin)
        self.init_pid = create_container(cfg, self.dir, stdio)
        stdio.close_child_ends()
        self._record_init(cfg.bundle)
        ready: Ready = {"pid": self.init_pid}
        if self.net is not None:
            ready["network"] = network = self.net.finish()
            write_json_atomic(self.path(L.NET_JSON), network, 0o644)
        self._ready(ready)
        server = Server(stdio, self.init_pid, log, attach, control_fd, self.log,
                        stdin=cfg.stdin, stdin_once=cfg.stdin_once,
                        helpers=self.net.helpers() if self.net is not None else None)
        status = server.run()
        if self.net is not None:
            for pid in set(self.net.helpers()) - set(server.helpers):
                self.net.forget(pid)  # reaped by the loop: its pid may be someone else's now
            self.net.close()  # before exit.json: once the daemon sees the exit, all is gone
        write_exit(self.path(L.EXIT_JSON), status, server.finished_ns, server.lost)
        os.close(exit_fd)  # the daemon's POLLHUP: exit.json is in place
        server.close_clients()
        log.close()
        stdio.close_all()
        return 0

    def _fifo(self, opener: Callable[[str], int], name: str) -> int:
        fd = opener(self.path(name))
        self.made.append(name)
        self.fds.append(fd)
        return int(fd)

    def _record_init(self, bundle: str) -> None:
        from ._create import CreateFailed

        assert self.init_pid is not None
        started = start_time(self.init_pid)
        if started is None:
            raise CreateFailed("the container's init exited during create")
        write_atomic(self.path(L.STARTTIME), str(started).encode(), 0o644)
        with open(os.path.join(bundle, "config.json"), "rb") as f:
            process = json.load(f).get("process")
        write_json_atomic(self.path(L.PROCESS_JSON), process, 0o644)
        ppid = _parent_of(self.init_pid)
        if ppid != os.getpid():
            self.log.warning(f"the init {self.init_pid} is a child of {ppid}, not of the shim: "
                             "its exit status cannot be collected")

    def _ready(self, message: Ready) -> None:
        fd, self.ready_fd = self.ready_fd, None
        if fd is None:
            return
        try:
            os.write(fd, json.dumps(message).encode() + b"\n")
        except OSError as exc:
            self.log.error(f"writing to the ready fd: {exc}")
        finally:
            os.close(fd)

    def fail(self, exc: BaseException) -> None:
        """Report to the ready fd if no one has heard from us yet, log, and clean up."""
        message = getattr(exc, "message", None) or str(exc) or type(exc).__name__
        hint = getattr(exc, "hint", None)
        if isinstance(exc, OSError) and exc.filename and str(exc.filename) not in message:
            message = f"{message}: {exc.filename}"
        self.log.error(message if hint is None else f"{message} ({hint})")
        if self.ready_fd is not None:
            self._ready({"error": message, "hint": hint})
            self._kill_init()
        if self.net is not None:
            try:
                self.net.close()
            except Exception as close_exc:  # noqa: BLE001 - the first error is the one to report
                self.log.error(f"taking the network down: {close_exc}")
        for fd in self.fds:
            try:
                os.close(fd)
            except OSError:
                pass
        if self.attach is not None:
            self.attach.close()
        if self.stdio is not None:
            self.stdio.close_all()
        for name in self.made:
            try:
                os.unlink(self.path(name))
            except OSError:
                pass

    def _kill_init(self) -> None:
        """A created init that we fail to report would be parked forever: end it."""
        import signal

        from rctr.core.proc import Process

        pid = self.init_pid
        if pid is None:  # created, but failed before we learnt the pid: the runtime wrote it
            try:
                with open(self.path(L.PID), "rb") as f:
                    pid = int(f.read().strip())
            except (OSError, ValueError):
                return
        # Only our own child: a stale pid file must not make us kill a stranger.
        proc = Process.of(pid) if _parent_of(pid) == os.getpid() else None
        if proc is not None and proc.signal(signal.SIGKILL):
            try:
                os.waitpid(proc.pid, 0)
            except ChildProcessError:
                pass


def _parent_of(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            raw = f.read()
    except OSError:
        return None
    return int(raw[raw.rindex(b")") + 2:].split()[1])
