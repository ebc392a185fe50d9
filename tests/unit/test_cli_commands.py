"""Whole commands against the fake daemon: the requests they make, their output, exit codes."""

from __future__ import annotations

import base64
import io
import json
import socket
import sys
import tarfile
import threading
from pathlib import Path
from typing import Any

import pytest
from test_cli_client import HIJACKED, FakeDaemon, Req, Stream, frame, hijack

from rctr.cli.main import main

CID = "c1" * 32


@pytest.fixture
def fake(tmp_path: Path) -> Any:
    daemon = FakeDaemon(str(tmp_path / "rctr.sock"))
    yield daemon
    daemon.close()


def rctr(daemon: FakeDaemon, *args: str) -> int:
    return main(["-H", daemon.host, *args])


class Container:
    """A scripted container: attach output, start, wait, in the order docker's CLI needs."""

    def __init__(self, daemon: FakeDaemon, *, exit_code: int = 0, output: bytes = b"hello\n",
                 tty: bool = False, missing_image: bool = False,
                 start_error: str | None = None) -> None:
        self.started = threading.Event()
        self.exited = threading.Event()
        self.stdin = b""
        self.create_calls = 0
        self.missing_image = missing_image

        def create(req: Req) -> Any:
            self.create_calls += 1
            if self.missing_image and self.create_calls == 1:
                return 404, {"message": "No such image: busybox:latest"}
            return 201, {"Id": CID, "Warnings": ["memory limit ignored"]}

        def attach(req: Req) -> Any:
            sock = hijack(req)
            self.started.wait(5)
            sock.sendall(output if tty else frame(1, output) + frame(2, b"oops\n"))
            if req.arg("stdin") == "1":
                while chunk := sock.recv(4096):
                    self.stdin += chunk
                sock.sendall(self.stdin.upper() if tty else frame(1, self.stdin.upper()))
            self.exited.set()
            sock.shutdown(socket.SHUT_WR)
            return HIJACKED

        def start(req: Req) -> Any:
            if start_error:
                return 400, {"message": start_error}
            self.started.set()
            return 204, None

        def wait(req: Req) -> Any:
            self.exited.wait(5)
            return {"StatusCode": exit_code, "Error": None}

        daemon.route("POST", "/containers/create", create)
        daemon.route("POST", f"/containers/{CID}/attach", attach)
        daemon.route("POST", f"/containers/{CID}/start", start)
        daemon.route("POST", f"/containers/{CID}/wait", wait)
        daemon.route("POST", f"/containers/{CID}/resize", lambda r: (200, None))
        daemon.route("POST", "/images/create", lambda r: Stream([
            b'{"status":"Pulling from library/busybox","id":"latest"}\r\n',
            b'{"status":"Pull complete","id":"a1"}\r\n']))


def test_run_foreground_attaches_before_start_and_exits_with_the_code(
        fake: FakeDaemon, capsys: Any) -> None:
    Container(fake, exit_code=3, missing_image=True)
    assert rctr(fake, "run", "--rm", "--name", "t1", "-e", "A=1", "busybox", "sh", "-c",
                "exit 3") == 3
    order = [(r.method, r.path) for r in fake.requests]
    assert order == [("POST", "/containers/create"), ("POST", "/images/create"),
                     ("POST", "/containers/create"), ("POST", f"/containers/{CID}/attach"),
                     ("POST", f"/containers/{CID}/wait"), ("POST", f"/containers/{CID}/start")]
    create = fake.requests[2]
    assert create.query == {"name": ["t1"]}
    assert create.json["Cmd"] == ["sh", "-c", "exit 3"] and create.json["Env"] == ["A=1"]
    assert create.json["HostConfig"]["AutoRemove"] is True
    pull = fake.requests[1]
    assert pull.query["fromImage"] == ["busybox"] and pull.query["tag"] == ["latest"]
    assert "x-registry-auth" in pull.headers
    attach = fake.requests[3].query
    assert attach == {"stream": ["1"], "stdin": ["0"], "stdout": ["1"], "stderr": ["1"]}
    assert fake.requests[4].query == {"condition": ["removed"]}
    out, err = capsys.readouterr()
    assert out == "hello\n"
    assert "Unable to find image 'busybox:latest' locally" in err
    assert "latest: Pulling from library/busybox" in err
    assert "WARNING: memory limit ignored" in err and "oops" in err


def test_run_interactive_copies_stdin_and_half_closes(fake: FakeDaemon, capsys: Any,
                                                      monkeypatch: Any) -> None:
    box = Container(fake)
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"some input\n")))
    assert rctr(fake, "run", "-i", "busybox", "cat") == 0
    assert box.stdin == b"some input\n"
    assert fake.find("POST", f"/containers/{CID}/attach")[0].arg("stdin") == "1"
    assert fake.find("POST", f"/containers/{CID}/wait")[0].arg("condition") == "next-exit"
    assert capsys.readouterr().out == "hello\nSOME INPUT\n"


def test_run_tty_output_is_not_demultiplexed(fake: FakeDaemon, capsys: Any) -> None:
    Container(fake, tty=True, output=b"\x01raw tty bytes\r\n")
    assert rctr(fake, "run", "-t", "busybox") == 0
    assert capsys.readouterr().out == "\x01raw tty bytes\r\n"


@pytest.mark.parametrize("message, code", [
    ('exec: "nope": executable file not found in $PATH', 127),
    ("open /bin/x: no such file or directory", 127),
    ("exec /etc/passwd: permission denied", 126),
    ("cannot mount the rootfs", 125),
])
def test_run_start_errors_map_to_dockers_codes(fake: FakeDaemon, capsys: Any, message: str,
                                               code: int) -> None:
    Container(fake, start_error=message)
    assert rctr(fake, "run", "busybox", "nope") == code
    assert f"Error response from daemon: {message}" in capsys.readouterr().err
    assert rctr(fake, "run", "-d", "busybox", "nope") == code


def test_run_detached_prints_the_id(fake: FakeDaemon, capsys: Any) -> None:
    Container(fake)
    assert rctr(fake, "run", "-d", "-p", "8080:80", "busybox", "sleep", "1") == 0
    assert capsys.readouterr().out == CID + "\n"
    assert [r.path for r in fake.requests] == ["/containers/create", f"/containers/{CID}/start"]
    body = fake.requests[0].json
    assert body["AttachStdout"] is False and body["HostConfig"]["PortBindings"] == {
        "80/tcp": [{"HostIp": "", "HostPort": "8080"}]}


def test_run_pull_never_does_not_pull(fake: FakeDaemon, capsys: Any) -> None:
    Container(fake, missing_image=True)
    assert rctr(fake, "run", "--pull", "never", "busybox") == 125
    assert "No such image" in capsys.readouterr().err
    assert not fake.find("POST", "/images/create")


def test_flags_after_the_image_belong_to_the_command(fake: FakeDaemon) -> None:
    Container(fake)
    assert rctr(fake, "create", "busybox", "ls", "-l", "--name", "x") == 0
    assert fake.requests[0].json["Cmd"] == ["ls", "-l", "--name", "x"]
    assert fake.requests[0].query == {}


def test_usage_errors_exit_125(fake: FakeDaemon, capsys: Any) -> None:
    assert rctr(fake, "ps", "--bogus") == 125
    assert rctr(fake, "run", "--restart", "always", "--rm", "busybox") == 125
    assert "Conflicting options: --restart and --rm" in capsys.readouterr().err


def test_daemon_errors_are_one_line_and_125(fake: FakeDaemon, capsys: Any) -> None:
    fake.route("DELETE", "/containers/nope",
               lambda r: (404, {"message": "No such container: nope"}))
    fake.route("DELETE", "/containers/ok", lambda r: (204, None))
    assert rctr(fake, "rm", "-f", "nope", "ok") == 125
    out, err = capsys.readouterr()
    assert err == "Error response from daemon: No such container: nope\n"
    assert out == "ok\n"
    assert fake.find("DELETE", "/containers/ok")[0].query == {"force": ["1"], "v": ["0"]}


def test_connection_failure_names_the_socket(tmp_path: Path, capsys: Any) -> None:
    assert main(["-H", f"unix://{tmp_path}/none.sock", "ps"]) == 125
    err = capsys.readouterr().err
    assert f"unix://{tmp_path}/none.sock" in err and "rctr system service" in err
    assert "rctrd.log" in err


PS = [{"Id": "a" * 64, "Names": ["/web"], "Image": "nginx", "Command": "nginx -g 'daemon off;'",
       "Created": 0, "State": "running", "Status": "Up 2 minutes",
       "Ports": [{"IP": "0.0.0.0", "PrivatePort": 80, "PublicPort": 8080, "Type": "tcp"},
                 {"PrivatePort": 443, "Type": "tcp"}], "Labels": {"a": "1"}}]


def test_ps_table_quiet_and_format(fake: FakeDaemon, capsys: Any) -> None:
    fake.route("GET", "/containers/json", lambda r: PS)
    assert rctr(fake, "ps", "-a", "--filter", "status=running", "-f", "name=web") == 0
    q = fake.requests[-1].query
    assert q["all"] == ["1"] and json.loads(q["filters"][0]) == {"status": ["running"],
                                                                  "name": ["web"]}
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["CONTAINER", "ID", "IMAGE", "COMMAND", "CREATED", "STATUS",
                                "PORTS", "NAMES"]
    assert lines[1].startswith("aaaaaaaaaaaa   nginx     \"nginx -g 'daemon of…\"")
    assert "0.0.0.0:8080->80/tcp, 443/tcp" in lines[1] and lines[1].endswith("web")
    assert rctr(fake, "ps", "-q", "--no-trunc") == 0
    assert capsys.readouterr().out == "a" * 64 + "\n"
    assert rctr(fake, "ps", "--format", "{{.Names}} {{.State}} {{.Labels}}") == 0
    assert capsys.readouterr().out == "web running a=1\n"


def test_logs_demultiplexes_split_frames(fake: FakeDaemon, capsys: Any) -> None:
    fake.route("GET", "/containers/c1/json", lambda r: {"Config": {"Tty": False}})
    data = frame(1, b"line one\n") + frame(2, b"an error\n") + frame(1, b"line two\n")
    fake.route("GET", "/containers/c1/logs",
               lambda r: Stream([data[:3], data[3:12], data[12:]], "application/octet-stream"))
    assert rctr(fake, "logs", "--tail", "5", "-t", "c1") == 0
    assert capsys.readouterr() == ("line one\nline two\n", "an error\n")
    q = fake.find("GET", "/containers/c1/logs")[0].query
    assert q == {"stdout": ["1"], "stderr": ["1"], "tail": ["5"], "timestamps": ["1"]}


def test_exec_creates_starts_and_exits_with_the_exec_code(fake: FakeDaemon, capsys: Any) -> None:
    fake.route("POST", "/containers/c1/exec", lambda r: (201, {"Id": "e1"}))

    def start(req: Req) -> Any:
        sock = hijack(req)
        sock.sendall(frame(1, b"from exec\n"))
        sock.shutdown(socket.SHUT_WR)
        return HIJACKED

    fake.route("POST", "/exec/e1/start", start)
    fake.route("GET", "/exec/e1/json", lambda r: {"Running": False, "ExitCode": 7})
    assert rctr(fake, "exec", "-e", "X=1", "-u", "nobody", "-w", "/tmp", "c1", "sh", "-c",
                "exit 7") == 7
    body = fake.find("POST", "/containers/c1/exec")[0].json
    assert body["Cmd"] == ["sh", "-c", "exit 7"] and body["Env"] == ["X=1"]
    assert (body["User"], body["WorkingDir"], body["AttachStdin"], body["Tty"]) == \
        ("nobody", "/tmp", False, False)
    assert fake.find("POST", "/exec/e1/start")[0].json == {"Detach": False, "Tty": False}
    assert capsys.readouterr().out == "from exec\n"


INSPECT = {"Id": CID, "Name": "/web", "State": {"Running": True, "ExitCode": 0},
           "Config": {"Env": ["A=1"]}}


def test_inspect_tries_each_type_and_formats(fake: FakeDaemon, capsys: Any) -> None:
    fake.route("GET", "/containers/web/json", lambda r: INSPECT)
    fake.route("GET", "/containers/busybox/json", lambda r: (404, {"message": "no"}))
    fake.route("GET", "/images/busybox/json", lambda r: {"Id": "sha256:1", "RepoTags": ["b"]})
    assert rctr(fake, "inspect", "-f", "{{.Name}} {{json .Config.Env}}", "web") == 0
    assert capsys.readouterr().out == '/web ["A=1"]\n'
    assert rctr(fake, "inspect", "web", "busybox") == 0
    assert json.loads(capsys.readouterr().out) == [INSPECT, {"Id": "sha256:1", "RepoTags": ["b"]}]
    assert rctr(fake, "inspect", "ghost") == 125
    out, err = capsys.readouterr()
    assert out == "[]\n" and err == "Error: No such object: ghost\n"


def _tar(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            if data is None:
                info.type, info.mode = tarfile.DIRTYPE, 0o755
                tar.addfile(info)
            else:
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def _stat(name: str, is_dir: bool) -> dict[str, str]:
    stat = {"name": name, "size": 0, "mode": (1 << 31 | 0o755) if is_dir else 0o644,
            "mtime": "2024-01-01T00:00:00Z", "linkTarget": ""}
    return {"X-Docker-Container-Path-Stat": base64.b64encode(json.dumps(stat).encode()).decode()}


def test_cp_from_container_renames_or_nests(fake: FakeDaemon, tmp_path: Path) -> None:
    def archive(req: Req) -> Any:
        if req.arg("path") == "/etc/hostname":
            return 200, _tar({"hostname": b"box\n"}), _stat("hostname", False)
        return 200, _tar({"conf": None, "conf/a": b"A", "conf/sub/b": b"B"}), _stat("conf", True)

    fake.route("GET", "/containers/c1/archive", archive)
    assert rctr(fake, "cp", "c1:/etc/hostname", str(tmp_path / "copy")) == 0
    assert (tmp_path / "copy").read_bytes() == b"box\n"
    assert rctr(fake, "cp", "c1:/etc/conf", str(tmp_path)) == 0
    assert (tmp_path / "conf" / "sub" / "b").read_bytes() == b"B"
    (tmp_path / "into").mkdir()
    assert rctr(fake, "cp", "c1:/etc/conf/.", str(tmp_path / "into")) == 0
    assert sorted(p.name for p in (tmp_path / "into").iterdir()) == ["a", "sub"]


def test_cp_to_container_names_the_copy_by_the_destination(fake: FakeDaemon,
                                                           tmp_path: Path) -> None:
    uploads: list[tuple[str, list[str]]] = []

    def head(req: Req) -> Any:
        if req.arg("path") == "/tmp":
            return 200, b"", _stat("tmp", True)
        return 404, {"message": "no such file"}

    def put(req: Req) -> Any:
        with tarfile.open(fileobj=io.BytesIO(req.body)) as tar:
            uploads.append((str(req.arg("path")), tar.getnames()))
        return 200, None

    fake.route("HEAD", "/containers/c1/archive", head)
    fake.route("PUT", "/containers/c1/archive", put)
    src = tmp_path / "local.txt"
    src.write_text("x")
    assert rctr(fake, "cp", str(src), "c1:/tmp") == 0
    assert rctr(fake, "cp", str(src), "c1:/tmp/renamed.txt") == 0
    assert uploads == [("/tmp", ["local.txt"]), ("/tmp", ["renamed.txt"])]
    assert fake.find("PUT", "/containers/c1/archive")[0].query["noOverwriteDirNonDir"] == ["1"]


def test_pull_quiet_prints_the_reference(fake: FakeDaemon, capsys: Any) -> None:
    fake.route("POST", "/images/create", lambda r: Stream([b'{"status":"Pull complete"}\n']))
    assert rctr(fake, "pull", "-q", "localhost:5000/app@sha256:ab") == 0
    assert capsys.readouterr().out == "localhost:5000/app@sha256:ab\n"
    q = fake.requests[-1].query
    assert q["fromImage"] == ["localhost:5000/app"] and q["tag"] == ["sha256:ab"]


def test_pull_error_in_the_stream(fake: FakeDaemon, capsys: Any) -> None:
    fake.route("POST", "/images/create", lambda r: Stream([b'{"error":"manifest unknown"}\n']))
    assert rctr(fake, "pull", "nope") == 125
    assert capsys.readouterr().err == "Error response from daemon: manifest unknown\n"


def test_images_table(fake: FakeDaemon, capsys: Any) -> None:
    fake.route("GET", "/images/json", lambda r: [
        {"Id": "sha256:" + "f" * 64, "RepoTags": ["busybox:latest", "bb:1"], "Created": 0,
         "Size": 4_261_234},
        {"Id": "sha256:" + "e" * 64, "RepoTags": None, "Created": 0, "Size": 10}])
    assert rctr(fake, "images") == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["REPOSITORY", "TAG", "IMAGE", "ID", "CREATED", "SIZE"]
    assert lines[1].split()[:3] == ["busybox", "latest", "f" * 12] and lines[1].endswith("4.26MB")
    assert lines[3].split()[:2] == ["<none>", "<none>"]
    assert rctr(fake, "images", "-q") == 0
    assert capsys.readouterr().out.split() == ["f" * 12, "e" * 12]


def test_volume_commands(fake: FakeDaemon, capsys: Any) -> None:
    fake.route("POST", "/volumes/create", lambda r: (201, {"Name": r.json["Name"] or "anon"}))
    fake.route("GET", "/volumes", lambda r: {"Volumes": [{"Name": "data", "Driver": "local"}]})
    fake.route("POST", "/volumes/prune", lambda r: {"VolumesDeleted": ["old"],
                                                    "SpaceReclaimed": 2000})
    assert rctr(fake, "volume", "create", "--label", "a=b", "data") == 0
    assert fake.requests[-1].json == {"Name": "data", "Driver": "local", "DriverOpts": {},
                                      "Labels": {"a": "b"}}
    assert rctr(fake, "volume", "ls") == 0
    assert rctr(fake, "volume", "prune", "-f", "-a") == 0
    assert json.loads(fake.requests[-1].query["filters"][0]) == {"all": ["true"]}
    out = capsys.readouterr().out
    assert out.splitlines() == ["data", "DRIVER    VOLUME NAME", "local     data",
                                "Deleted Volumes:", "old", "", "Total reclaimed space: 2kB"]


def test_events_default_line(fake: FakeDaemon, capsys: Any) -> None:
    ev = {"Type": "container", "Action": "start", "Actor": {"ID": "abc", "Attributes":
          {"name": "web", "image": "busybox"}}, "time": 1, "timeNano": 1_000_000_005}
    fake.route("GET", "/events", lambda r: Stream([json.dumps(ev).encode() + b"\n"]))
    assert rctr(fake, "events", "--since", "1700000000", "--filter", "type=container") == 0
    line = capsys.readouterr().out.strip()
    assert ".000000005" in line
    assert line.endswith("container start abc (image=busybox, name=web)")
    assert rctr(fake, "events", "--format", "{{.Action}} {{.Actor.Attributes.name}}") == 0
    assert capsys.readouterr().out == "start web\n"


def test_version_prints_the_client_even_without_a_server(tmp_path: Path, capsys: Any) -> None:
    assert main(["-H", f"unix://{tmp_path}/none.sock", "version"]) == 125
    out = capsys.readouterr().out
    assert out.startswith("Client:\n") and "API version:" in out


def test_stop_kill_wait_rename_queries(fake: FakeDaemon, capsys: Any) -> None:
    for verb in ("stop", "kill", "rename"):
        fake.route("POST", f"/containers/c1/{verb}", lambda r: (204, None))
    fake.route("POST", "/containers/c1/wait", lambda r: {"StatusCode": 4})
    assert rctr(fake, "stop", "-t", "3", "c1") == 0
    assert rctr(fake, "kill", "-s", "HUP", "c1") == 0
    assert rctr(fake, "wait", "c1") == 0
    assert rctr(fake, "rename", "c1", "c2") == 0
    queries = [r.query for r in fake.requests]
    assert queries == [{"t": ["3"]}, {"signal": ["HUP"]}, {"condition": ["not-running"]},
                       {"name": ["c2"]}]
    assert capsys.readouterr().out == "c1\nc1\n4\n"


def test_run_tty_raw_mode_resize_and_detach_keys(fake: FakeDaemon) -> None:
    """A real pty: raw mode while attached, the size sent, ctrl-p ctrl-q detaches, mode restored."""
    import fcntl
    import os
    import pty
    import struct
    import subprocess
    import termios

    got = bytearray()
    started = threading.Event()

    def attach(req: Req) -> Any:
        sock = hijack(req)
        started.wait(5)
        sock.sendall(b"prompt$ ")
        try:
            while chunk := sock.recv(4096):
                got.extend(chunk)
        except OSError:
            pass
        return HIJACKED

    fake.route("POST", "/containers/create", lambda r: (201, {"Id": CID, "Warnings": []}))
    fake.route("POST", f"/containers/{CID}/attach", attach)
    fake.route("POST", f"/containers/{CID}/start", lambda r: (started.set(), (204, None))[1])
    fake.route("POST", f"/containers/{CID}/wait", lambda r: (threading.Event().wait(3), {})[1])
    fake.route("POST", f"/containers/{CID}/resize", lambda r: (200, None))
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 33, 101, 0, 0))
    before = termios.tcgetattr(slave)
    code = "import sys; from rctr.cli.main import main; sys.exit(main(sys.argv[1:]))"
    proc = subprocess.Popen([sys.executable, "-c", code, "-H", fake.host, "run", "-it",
                             "busybox", "sh"], stdin=slave, stdout=slave, stderr=slave,
                            start_new_session=True)
    try:
        output = b""
        while b"prompt$ " not in output:
            output += os.read(master, 1024)
        os.write(master, b"ls\r")
        for _ in range(250):  # at most 5 s for the keystrokes to reach the daemon
            if b"ls\r" in got:
                break
            threading.Event().wait(0.02)
        os.write(master, b"\x10\x11")
        assert proc.wait(timeout=10) == 0
        assert bytes(got) == b"ls\r"  # the detach keys are not sent
        resize = fake.find("POST", f"/containers/{CID}/resize")
        assert resize and resize[0].query == {"h": ["33"], "w": ["101"]}
        assert fake.find("POST", f"/containers/{CID}/attach")[0].arg("detachKeys") == \
            "ctrl-p,ctrl-q"
        assert termios.tcgetattr(slave) == before  # raw mode undone
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(master)
        os.close(slave)
