"""The shim zygote's protocol and lifecycle, with real processes (no namespaces needed):
a shim forked on request reports on its ready fd as one started directly does, a
stale zygote steps down, and the daemon's handle replaces a dead or stale one."""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from rctr.core.zygote import code_token
from rctr.daemon._shimctl import Zygote, ZygoteStale, spawn_via

pytestmark = pytest.mark.timeout(60)


def _ready_line(fd: int, timeout: float = 20) -> dict:
    data = b""
    deadline = time.monotonic() + timeout
    while not data.endswith(b"\n"):
        ready, _, _ = select.select([fd], [], [], max(0, deadline - time.monotonic()))
        assert ready, "nothing on the ready fd"
        chunk = os.read(fd, 4096)
        if not chunk:
            break
        data += chunk
    return json.loads(data) if data else {}


@pytest.fixture
def zygote(tmp_path: Path):
    """A zygote started the way the daemon starts it; killed afterwards."""
    sock = str(tmp_path / "z.sock")
    rfd, wfd = os.pipe()
    proc = subprocess.Popen([sys.executable, "-m", "rctr.shim", "--zygote", sock,
                             "--ready-fd", str(wfd)], pass_fds=(wfd,), start_new_session=True)
    os.close(wfd)
    try:
        hello = _ready_line(rfd)
        yield sock, hello, proc
    finally:
        os.close(rfd)
        proc.kill()
        proc.wait()


def _wait_gone(pid: int) -> None:
    """Until ``pid`` is gone (the handle's reaper thread may reap it first)."""
    with contextlib.suppress(psutil.NoSuchProcess):
        psutil.Process(pid).wait(10)


def _names(pid: int) -> str:
    return Path(f"/proc/{pid}/comm").read_text().strip()


def test_the_zygote_says_who_it_is(zygote) -> None:
    sock, hello, proc = zygote
    assert hello == {"pid": proc.pid, "token": code_token()}
    assert _names(proc.pid) == "rctr-zygote"
    assert os.stat(sock).st_mode & 0o777 == 0o600


def test_a_forked_shim_reports_on_its_ready_fd(zygote, tmp_path: Path) -> None:
    sock, hello, proc = zygote
    state = tmp_path / "shim"
    state.mkdir()  # no shim.json: the shim says so on its ready fd, as a direct one does
    rfd, wfd = os.pipe()
    try:
        spawn_via(sock, str(state), wfd, hello["token"])
        os.close(wfd)
        wfd = -1
        reply = _ready_line(rfd)
    finally:
        os.close(rfd)
        if wfd >= 0:
            os.close(wfd)
    assert "shim.json" in reply["error"]
    record = json.loads((state / "shim-log.json").read_text().splitlines()[-1])
    assert "shim.json" in record["msg"]
    assert proc.poll() is None  # the zygote serves on
    assert not psutil.Process(proc.pid).children()  # forked twice: no child of the zygote stays


def test_a_stale_zygote_steps_down(zygote, tmp_path: Path) -> None:
    sock, _hello, proc = zygote
    rfd, wfd = os.pipe()
    try:
        with pytest.raises(ZygoteStale):
            spawn_via(sock, str(tmp_path), wfd, "another-token")
    finally:
        os.close(rfd)
        os.close(wfd)
    assert proc.wait(10) == 0
    assert not os.path.exists(sock)


def test_a_garbled_request_is_answered_and_the_zygote_serves_on(zygote) -> None:
    import socket

    sock, _hello, proc = zygote
    for garbage in (b"{not json\n", b"[1, 2]\n", b"null\n"):
        with socket.socket(socket.AF_UNIX) as s:
            s.settimeout(10)
            s.connect(sock)
            s.sendall(garbage)
            assert b"error" in s.recv(4096), garbage
    assert proc.poll() is None


def test_the_daemons_handle_starts_reuses_and_replaces_the_zygote(tmp_path: Path) -> None:
    sock = str(tmp_path / "z.sock")
    logged: list[str] = []
    handle = Zygote(sock, logged.append)

    def spawn_one() -> tuple[bool, dict]:
        state = tmp_path / f"s{time.monotonic_ns()}"
        state.mkdir()
        rfd, wfd = os.pipe()
        try:
            served = handle.spawn(str(state), wfd)
            os.close(wfd)
            wfd = -1
            return served, _ready_line(rfd) if served else {}
        finally:
            os.close(rfd)
            if wfd >= 0:
                os.close(wfd)

    def zygotes() -> list[psutil.Process]:
        # process_iter with attrs gives None, not ZombieProcess, for a dead zygote that
        # nobody has reaped yet (this machine's PID 1 reaps late).
        return [p for p in psutil.process_iter(["name", "cmdline"])
                if p.info["name"] == "rctr-zygote" and sock in " ".join(p.info["cmdline"] or [])]

    def zygote_pid() -> int:
        return zygotes()[0].pid

    try:
        served, reply = spawn_one()
        assert served and "shim.json" in reply["error"]
        first = zygote_pid()
        assert spawn_one()[0] and zygote_pid() == first  # reused
        os.kill(first, signal.SIGKILL)
        _wait_gone(first)
        assert spawn_one()[0]  # a dead zygote is replaced
        second = zygote_pid()
        assert second != first
        handle._token = "a daemon of another version"
        served, _ = spawn_one()  # the zygote steps down; its successor is no match either
        assert not served and "did not start" in logged[-1]
        _wait_gone(second)
        assert not handle.spawn(str(tmp_path), 0)  # from now on: shims start directly
    finally:
        for p in zygotes():
            with contextlib.suppress(psutil.Error):
                p.kill()


def test_a_zygote_whose_socket_is_gone_ends(tmp_path: Path) -> None:
    """A wiped run directory leaves nobody able to reach the zygote: it must not linger."""
    sock = str(tmp_path / "z.sock")
    rfd, wfd = os.pipe()
    code = f"from rctr.shim._zygote import serve; serve({sock!r}, {wfd}, check_every=0.2)"
    proc = subprocess.Popen([sys.executable, "-c", code], pass_fds=(wfd,))
    os.close(wfd)
    try:
        assert _ready_line(rfd)["pid"] == proc.pid
        os.unlink(sock)
        assert proc.wait(10) == 0
    finally:
        os.close(rfd)
        if proc.poll() is None:
            proc.kill()
            proc.wait()
