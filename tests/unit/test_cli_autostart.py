"""Daemon autostart: one daemon however many CLIs ask at once, and clear failures."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from rctr.cli._client import Client
from rctr.cli._context import Env
from rctr.cli._daemon import DaemonStartFailed, ensure_running, start_warnings

SERVER = textwrap.dedent("""
    import socketserver, sys, time
    from http.server import BaseHTTPRequestHandler

    class H(BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"OK")

        def log_message(self, *a):
            pass

    time.sleep(0.3)  # a slow daemon: the other CLIs must wait on the lock, not start their own
    socketserver.ThreadingUnixStreamServer(sys.argv[1], H).serve_forever()
""")

CLI = textwrap.dedent("""
    import os, subprocess, sys
    from rctr.cli._client import Client
    from rctr.cli._daemon import ensure_running

    rundir, server = sys.argv[1], sys.argv[2]
    sock = os.path.join(rundir, "rctr.sock")

    def spawn(rd):
        proc = subprocess.Popen([sys.executable, "-c", server, sock], start_new_session=True,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        with open(os.path.join(rd, "spawned"), "a") as f:
            f.write(f"{proc.pid}\\n")
        return proc

    print(ensure_running(rundir, ping=Client(sock).ping, spawn=spawn, timeout=20))
""")


def _kill_spawned(rundir: Path) -> None:
    spawned = rundir / "spawned"
    if spawned.exists():
        for pid in spawned.read_text().split():
            try:
                os.kill(int(pid), signal.SIGKILL)
            except ProcessLookupError:
                pass


def test_ten_clis_at_once_start_one_daemon(tmp_path: Path) -> None:
    rundir = tmp_path / "run" / "rctr"
    try:
        procs = [subprocess.Popen([sys.executable, "-c", CLI, str(rundir), SERVER],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                 for _ in range(10)]
        results = [p.communicate(timeout=60) for p in procs]
        assert all(p.returncode == 0 for p in procs), results
        answers = sorted(out.strip() for out, _ in results)
        assert answers == ["False"] * 9 + ["True"]
        assert len((rundir / "spawned").read_text().split()) == 1
        assert (rundir.stat().st_mode & 0o777) == 0o700
        assert (rundir / "rctrd-start.lock").exists()
    finally:
        _kill_spawned(rundir)


class _Proc:
    def __init__(self, code: int | None) -> None:
        self.code = code

    def poll(self) -> int | None:
        return self.code


def test_running_daemon_is_not_started_again(tmp_path: Path) -> None:
    import socket

    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(str(tmp_path / "rctr.sock"))
    sock.listen()
    try:
        spawned: list[str] = []
        assert ensure_running(str(tmp_path), ping=lambda: True, spawn=spawned.append) is False
        assert spawned == []
    finally:
        sock.close()


def test_daemon_that_dies_reports_its_log(tmp_path: Path) -> None:
    rundir = tmp_path / "rctr"

    def spawn(rd: str) -> Any:
        Path(rd, "rctrd.log").write_text("starting\nrctrd: cannot join the pause process\n")
        return _Proc(1)

    with pytest.raises(DaemonStartFailed) as info:
        ensure_running(str(rundir), ping=lambda: False, spawn=spawn, timeout=5)
    assert "cannot join the pause process" in info.value.log


def test_daemon_that_never_answers_times_out(tmp_path: Path) -> None:
    with pytest.raises(DaemonStartFailed, match="did not answer"):
        ensure_running(str(tmp_path / "rctr"), ping=lambda: False, spawn=lambda rd: _Proc(None),
                       timeout=0.2)


def test_spawn_is_retried_after_ping_succeeds_late(tmp_path: Path) -> None:
    answers = iter([False, False, True])
    assert ensure_running(str(tmp_path / "rctr"), ping=lambda: next(answers),
                          spawn=lambda rd: _Proc(None), timeout=5) is True


def test_explicit_host_never_autostarts(tmp_path: Path, monkeypatch: Any) -> None:
    def boom(*a: Any, **k: Any) -> None:
        raise AssertionError("autostart with an explicit host")

    monkeypatch.setattr("rctr.cli._daemon.ensure_running", boom)
    env = Env.from_options(f"unix://{tmp_path}/x.sock")
    assert isinstance(env.client, Client) and env.socket_path == f"{tmp_path}/x.sock"
    monkeypatch.setenv("RCTR_HOST", "unix:///elsewhere.sock")
    assert Env.from_options(None).socket_path == "/elsewhere.sock"


def test_default_socket_is_in_the_runtime_dir(tmp_path: Path, monkeypatch: Any) -> None:
    monkeypatch.delenv("RCTR_HOST", raising=False)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))
    assert Env.from_options(None).socket_path == f"{tmp_path}/rctr/rctr.sock"


def test_the_starting_cli_repeats_the_warnings_of_the_start(tmp_path: Path) -> None:
    log = tmp_path / "rctrd.log"
    log.write_text("rctrd: warning: from an earlier start\n")
    offset = log.stat().st_size
    with open(log, "a") as f:
        f.write("rctrd: listening on x\nrctrd: warning: 1 running container(s) were lost: web\n")
    assert start_warnings(str(tmp_path), offset) == [
        "rctr: warning: 1 running container(s) were lost: web"]
    assert start_warnings(str(tmp_path / "none"), 0) == []
