"""``/containers/{id}/exec`` and ``/exec/{id}``: one more process in a running container.

The runtime's ``exec`` runs in the foreground as a child of the daemon, with
pipes (framed to the client) or a pty (received on a console socket and
copied raw), and its exit code becomes the exec's.
"""

from __future__ import annotations

import fcntl
import json
import os
import secrets
import socket
import struct
import subprocess
import termios
import threading
from typing import IO, TYPE_CHECKING, Any

from rctr.core.errors import Conflict, InvalidArgument, NotFound

from ._http import Request
from ._logs import frame

if TYPE_CHECKING:
    from ._main import Daemon
    from .containers import Container

__all__ = ["container_exec", "exec_start", "exec_resize", "exec_inspect", "exec_process",
           "ExecInstance"]


class ExecInstance:
    def __init__(self, exec_id: str, container_id: str, config: dict[str, Any]) -> None:
        self.id = exec_id
        self.container_id = container_id
        self.config = config
        self.running = False
        self.exit_code: int | None = None
        self.pid = 0
        self.master: int | None = None
        self.started = False
        self.done = threading.Event()

    def inspect(self) -> dict[str, Any]:
        c = self.config
        return {"ID": self.id, "ContainerID": self.container_id, "Running": self.running,
                "ExitCode": self.exit_code, "Pid": self.pid, "CanRemove": False,
                "DetachKeys": c.get("DetachKeys") or "",
                "OpenStdin": bool(c.get("AttachStdin")), "OpenStdout": bool(c.get("AttachStdout")),
                "OpenStderr": bool(c.get("AttachStderr")),
                "ProcessConfig": {"tty": bool(c.get("Tty")), "entrypoint": (c.get("Cmd") or [""])[0],
                                  "arguments": (c.get("Cmd") or [])[1:], "privileged": bool(c.get("Privileged")),
                                  "user": c.get("User") or ""}}


def exec_process(daemon: Daemon, c: Container, config: dict[str, Any]) -> dict[str, Any]:
    """The OCI process of an exec: the container's own, with the exec's command, env, user."""
    from ._spec import _caps_all, resolve_user

    bundle = os.path.join(daemon.paths.shim_dir(c.id), "bundle", "config.json")
    with open(bundle) as f:
        spec = json.load(f)
    process = dict(spec["process"])
    process["args"] = list(config["Cmd"])
    process["terminal"] = bool(config.get("Tty"))
    env = {e.partition("=")[0]: e for e in process.get("env", [])}
    for item in config.get("Env") or []:
        env[item.partition("=")[0]] = item
    process["env"] = list(env.values())
    if config.get("User"):
        uid, gid, extra, _home = resolve_user(spec["root"]["path"], config["User"])
        process["user"] = {"uid": uid, "gid": gid, "additionalGids": extra}
    if config.get("WorkingDir"):
        process["cwd"] = config["WorkingDir"]
    if config.get("Privileged"):
        caps = _caps_all()
        process["capabilities"] = {k: list(caps) for k in ("bounding", "effective", "permitted")}
    process.pop("consoleSize", None)
    return process


def container_exec(daemon: Daemon, req: Request) -> None:
    c = daemon.containers.get(req.params["id"])
    body = req.json()
    if not isinstance(body, dict):
        raise InvalidArgument("the request body must be a JSON object")
    cmd = body.get("Cmd")
    if not cmd or not isinstance(cmd, list):
        raise InvalidArgument("No exec command specified")
    if not c.running():
        raise Conflict(f"Container {c.id} is not running")
    exec_id = secrets.token_hex(32)
    with c.lock:
        c.execs[exec_id] = ExecInstance(exec_id, c.id, body)
    daemon.containers.event(c, "exec_create: " + " ".join(map(str, cmd)), execID=exec_id)
    req.send_json({"Id": exec_id}, 201)


def _find(daemon: Daemon, exec_id: str) -> ExecInstance:
    inst: ExecInstance | None = daemon.containers.exec_instance(exec_id)
    if inst is None:
        raise NotFound(f"No such exec instance: {exec_id}")
    return inst


def exec_inspect(daemon: Daemon, req: Request) -> None:
    req.send_json(_find(daemon, req.params["id"]).inspect())


def exec_resize(daemon: Daemon, req: Request) -> None:
    inst = _find(daemon, req.params["id"])
    if inst.master is not None:
        size = struct.pack("HHHH", req.int_arg("h", 24), req.int_arg("w", 80), 0, 0)
        try:
            fcntl.ioctl(inst.master, termios.TIOCSWINSZ, size)
        except OSError:
            pass
    req.send(200, b"", content_type="text/plain")


def exec_start(daemon: Daemon, req: Request) -> None:
    inst = _find(daemon, req.params["id"])
    body = req.json({})
    if inst.started:
        raise Conflict(f"exec {inst.id} has already started")
    c = daemon.containers.get(inst.container_id)
    if not c.running():
        raise Conflict(f"Container {c.id} is not running")
    inst.started = True
    tty = bool(body.get("Tty", inst.config.get("Tty")))
    inst.config["Tty"] = tty
    process = exec_process(daemon, c, inst.config)
    shim_dir = daemon.paths.shim_dir(c.id)
    process_file = os.path.join(shim_dir, f"exec-{inst.id[:16]}.json")
    with open(process_file, "w") as f:
        json.dump(process, f)
    detach = bool(body.get("Detach"))
    try:
        if tty:
            _run_tty(req, daemon, c, inst, process_file, detach)
        else:
            _run_pipes(req, daemon, c, inst, process_file, detach)
    finally:
        if not detach:
            _unlink(process_file)


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


def _finish(inst: ExecInstance, daemon: Daemon, proc: subprocess.Popen[bytes]) -> None:
    inst.exit_code = proc.wait()
    inst.running = False
    inst.done.set()
    daemon.events.emit("container", "exec_die", inst.container_id,
                       {"execID": inst.id, "exitCode": str(inst.exit_code)})


def _started(daemon: Daemon, c: Container, inst: ExecInstance) -> None:
    daemon.events.emit("container", "exec_start: " + " ".join(inst.config["Cmd"]), c.id,
                       {"execID": inst.id})


def _shutdown(client: socket.socket) -> None:
    try:
        client.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass


# -- without a terminal: stdout and stderr framed on the hijacked connection ------------------

def _run_pipes(req: Request, daemon: Daemon, c: Container, inst: ExecInstance,
               process_file: str, detach: bool) -> None:
    argv = daemon.runtime.exec_argv(c.id, process_file, tty_socket=None)
    want_stdin = bool(inst.config.get("AttachStdin")) and not detach
    proc = subprocess.Popen(argv, stdin=subprocess.PIPE if want_stdin else subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL if detach else subprocess.PIPE,
                            stderr=subprocess.DEVNULL if detach else subprocess.PIPE,
                            start_new_session=True)
    inst.running, inst.pid = True, proc.pid
    _started(daemon, c, inst)
    if detach:
        threading.Thread(target=_finish, args=(inst, daemon, proc), daemon=True).start()
        req.send(200, b"", content_type="text/plain")
        return
    client = req.hijack("application/vnd.docker.multiplexed-stream")
    send_lock = threading.Lock()
    threads = [threading.Thread(target=_pump, args=(proc.stdout, "stdout", client, send_lock),
                                daemon=True),
               threading.Thread(target=_pump, args=(proc.stderr, "stderr", client, send_lock),
                                daemon=True)]
    for t in threads:
        t.start()
    if want_stdin:
        threading.Thread(target=_feed_pipe, args=(client, proc), daemon=True).start()
    for t in threads:
        t.join()
    _finish(inst, daemon, proc)
    _shutdown(client)


def _pump(pipe: IO[bytes], stream: str, client: socket.socket, send_lock: threading.Lock) -> None:
    while True:
        data = os.read(pipe.fileno(), 65536)
        if not data:
            break
        with send_lock:
            try:
                client.sendall(frame(stream, data))
            except OSError:
                pass


def _feed_pipe(client: socket.socket, proc: subprocess.Popen[bytes]) -> None:
    assert proc.stdin is not None
    try:
        while data := client.recv(65536):
            proc.stdin.write(data)
            proc.stdin.flush()
    except OSError:
        pass
    finally:
        try:
            proc.stdin.close()
        except OSError:
            pass


# -- with a terminal: its master, received from the runtime, copied raw -----------------------

def _run_tty(req: Request, daemon: Daemon, c: Container, inst: ExecInstance,
             process_file: str, detach: bool) -> None:
    proc, master = _spawn_tty(daemon, c, inst, process_file)
    inst.running, inst.pid, inst.master = True, proc.pid, master
    _started(daemon, c, inst)
    if detach:
        threading.Thread(target=_drain, args=(daemon, inst, proc, master), daemon=True).start()
        req.send(200, b"", content_type="text/plain")
        return
    client = req.hijack("application/vnd.docker.raw-stream")
    if inst.config.get("AttachStdin"):
        threading.Thread(target=_feed_master, args=(client, master), daemon=True).start()
    try:
        while True:
            try:
                data = os.read(master, 65536)
            except OSError:  # EIO: every holder of the terminal's other side is gone
                break
            if not data:
                break
            client.sendall(data)
    except OSError:
        pass
    _finish(inst, daemon, proc)
    os.close(master)
    inst.master = None
    _shutdown(client)


def _spawn_tty(daemon: Daemon, c: Container, inst: ExecInstance,
               process_file: str) -> tuple[subprocess.Popen[bytes], int]:
    """The runtime's exec, started with a console socket; the process and its pty master."""
    from rctr.rootless._console import receive_master

    # Short: the shim dir's path takes most of a socket path's 108 bytes already.
    sock_path = os.path.join(daemon.paths.shim_dir(c.id), f"x{inst.id[:8]}.sock")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    listener.bind(sock_path)
    listener.listen(1)
    listener.settimeout(30)
    try:
        argv = daemon.runtime.exec_argv(c.id, process_file, tty_socket=sock_path)
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE, start_new_session=True)
        try:
            conn, _ = listener.accept()
        except OSError:
            err = proc.communicate(timeout=30)[1].decode(errors="replace").strip()
            raise Conflict(f"exec failed: {err or 'the runtime sent no terminal'}") from None
        master = receive_master(conn)
    finally:
        listener.close()
        _unlink(sock_path)
    return proc, master


def _drain(daemon: Daemon, inst: ExecInstance, proc: subprocess.Popen[bytes],
           master: int) -> None:
    """A detached exec's terminal output, read and dropped until it ends."""
    try:
        while os.read(master, 65536):
            pass
    except OSError:
        pass
    _finish(inst, daemon, proc)
    os.close(master)


def _feed_master(client: socket.socket, master: int) -> None:
    try:
        while data := client.recv(65536):
            os.write(master, data)
    except OSError:
        pass
