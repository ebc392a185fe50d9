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
from typing import Any

from rctr.core.errors import Conflict, InvalidArgument, NotFound

from ._http import Request, Router
from ._logs import frame

__all__ = ["register", "exec_process"]


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


def exec_process(daemon: Any, c: Any, config: dict[str, Any]) -> dict[str, Any]:
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


def register(router: Router, daemon: Any) -> None:
    @router.route("POST", "/containers/{id}/exec")
    def create(req: Request) -> None:
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

    def find(exec_id: str) -> ExecInstance:
        inst: ExecInstance | None = daemon.containers.exec_instance(exec_id)
        if inst is None:
            raise NotFound(f"No such exec instance: {exec_id}")
        return inst

    @router.route("GET", "/exec/{id}/json")
    def inspect(req: Request) -> None:
        req.send_json(find(req.params["id"]).inspect())

    @router.route("POST", "/exec/{id}/resize")
    def resize(req: Request) -> None:
        inst = find(req.params["id"])
        if inst.master is not None:
            size = struct.pack("HHHH", req.int_arg("h", 24), req.int_arg("w", 80), 0, 0)
            try:
                fcntl.ioctl(inst.master, termios.TIOCSWINSZ, size)
            except OSError:
                pass
        req.send(200, b"", content_type="text/plain")

    @router.route("POST", "/exec/{id}/start")
    def start(req: Request) -> None:
        inst = find(req.params["id"])
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


def _finish(inst: ExecInstance, daemon: Any, proc: subprocess.Popen[bytes]) -> None:
    inst.exit_code = proc.wait()
    inst.running = False
    inst.done.set()
    daemon.events.emit("container", "exec_die", inst.container_id,
                       {"execID": inst.id, "exitCode": str(inst.exit_code)})


def _run_pipes(req: Request, daemon: Any, c: Any, inst: ExecInstance, process_file: str,
               detach: bool) -> None:
    argv = daemon.runtime.exec_argv(c.id, process_file, tty_socket=None)
    want_stdin = bool(inst.config.get("AttachStdin")) and not detach
    proc = subprocess.Popen(argv, stdin=subprocess.PIPE if want_stdin else subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL if detach else subprocess.PIPE,
                            stderr=subprocess.DEVNULL if detach else subprocess.PIPE,
                            start_new_session=True)
    inst.running, inst.pid = True, proc.pid
    daemon.events.emit("container", "exec_start: " + " ".join(inst.config["Cmd"]), c.id,
                       {"execID": inst.id})
    if detach:
        threading.Thread(target=_finish, args=(inst, daemon, proc), daemon=True).start()
        req.send(200, b"", content_type="text/plain")
        return
    client = req.hijack("application/vnd.docker.multiplexed-stream")
    send_lock = threading.Lock()

    def pump(pipe: Any, stream: str) -> None:
        while True:
            data = os.read(pipe.fileno(), 65536)
            if not data:
                break
            with send_lock:
                try:
                    client.sendall(frame(stream, data))
                except OSError:
                    pass

    def feed() -> None:
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

    threads = [threading.Thread(target=pump, args=(proc.stdout, "stdout"), daemon=True),
               threading.Thread(target=pump, args=(proc.stderr, "stderr"), daemon=True)]
    for t in threads:
        t.start()
    if want_stdin:
        threading.Thread(target=feed, daemon=True).start()
    for t in threads:
        t.join()
    _finish(inst, daemon, proc)
    try:
        client.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass


def _run_tty(req: Request, daemon: Any, c: Any, inst: ExecInstance, process_file: str,
             detach: bool) -> None:
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
        try:
            os.unlink(sock_path)
        except OSError:
            pass
    inst.running, inst.pid, inst.master = True, proc.pid, master
    daemon.events.emit("container", "exec_start: " + " ".join(inst.config["Cmd"]), c.id,
                       {"execID": inst.id})
    if detach:
        def drain() -> None:
            try:
                while os.read(master, 65536):
                    pass
            except OSError:
                pass
            _finish(inst, daemon, proc)
            os.close(master)
        threading.Thread(target=drain, daemon=True).start()
        req.send(200, b"", content_type="text/plain")
        return
    client = req.hijack("application/vnd.docker.raw-stream")

    def feed() -> None:
        try:
            while data := client.recv(65536):
                os.write(master, data)
        except OSError:
            pass

    if inst.config.get("AttachStdin"):
        threading.Thread(target=feed, daemon=True).start()
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
    try:
        client.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
