"""rctrd started by socket activation, as the unprivileged user, and the systemd units.

``systemd-socket-activate`` plays systemd: it binds the socket, waits for a
connection and execs ``rctr system service`` with the socket at fd 3
(``LISTEN_FDS``/``LISTEN_PID``).  Where it is missing, a few lines of Python do the
same (bind, listen, exec).  Either way the real rctrd must serve on the socket it
was given: the socket file keeps its inode, the CLI starts no daemon of its own,
and rctrd says so in its log.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
from daemonenv import IMAGE, RctrUser, ok
from harness import RCTR, UserShell

pytestmark = [pytest.mark.integration,
              pytest.mark.requires("root", "user", "userns", "subuid", "newuidmap"),
              pytest.mark.timeout(180)]

REPO = Path(__file__).resolve().parents[2]
UNITS = REPO / "contrib" / "systemd"
ACTIVATE = shutil.which("systemd-socket-activate")

# What systemd-socket-activate does, for machines without it: bind, listen, exec.
_ACTIVATOR = r"""
import os, socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
os.umask(0o177)
s.bind(sys.argv[1])
s.listen(128)
if s.fileno() != 3:
    os.dup2(s.fileno(), 3)
os.set_inheritable(3, True)
os.environ.update(LISTEN_FDS="1", LISTEN_PID=str(os.getpid()), LISTEN_FDNAMES="rctrd.socket")
os.execv(sys.argv[2], sys.argv[2:])
"""


@pytest.fixture(params=["systemd-socket-activate", "python"])
def activated(request: pytest.FixtureRequest, user: UserShell,
              test_image: str) -> Iterator[tuple[RctrUser, subprocess.Popen]]:
    """A user whose socket is listened on by an activator, rctrd not yet started."""
    if request.param == "systemd-socket-activate" and not ACTIVATE:
        pytest.skip("systemd-socket-activate is not installed: the Python activator stands in")
    rc = RctrUser(user)
    rc.load_image(test_image)
    rc.rundir.mkdir(mode=0o700, exist_ok=True)
    os.chown(rc.rundir, user.uid, user.gid)
    log = open(user.base / "activated.log", "wb")
    env = rc.env()
    if request.param == "systemd-socket-activate":
        # It passes on only PATH, TERM, USER and HOME, and what -E names.
        argv = [ACTIVATE, "-l", str(rc.socket), "-E", "XDG_RUNTIME_DIR", "-E", "XDG_DATA_HOME",
                RCTR, "system", "service"]
    else:
        argv = [sys.executable, "-c", _ACTIVATOR, str(rc.socket), RCTR, "system", "service"]
    proc = rc.shell.popen(argv, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=log)
    log.close()
    try:
        rc.wait_for(rc.socket.exists, what="the activator's socket")
        yield rc, proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def test_rctrd_serves_on_the_socket_it_is_given(activated: tuple[RctrUser, subprocess.Popen]
                                                ) -> None:
    rc, proc = activated
    inode = rc.socket.stat().st_ino
    assert rc.daemon_pid() is None  # nothing started before the first connection

    # The first connection starts rctrd; the CLI connects and waits, it starts nothing.
    r = ok(rc.rctr("run", "--rm", IMAGE, "echo", "hi", timeout=90))
    assert r.stdout == "hi\n", (r.stderr, _text(rc.shell.base / "activated.log"))

    # The activator exec'd rctrd in place: LISTEN_PID was its pid.
    log = (rc.shell.base / "activated.log").read_text(errors="replace")
    assert rc.daemon_pid() == proc.pid, log + _text(rc.rundir / "rctrd.log")
    assert rc.socket.stat().st_ino == inode, "rctrd bound a socket of its own"
    assert not (rc.rundir / "rctrd.log").exists(), "the CLI started a daemon of its own"
    assert "(socket passed by systemd)" in log, log
    # /proc/PID/environ is the block a process was exec'd with: rctrd's own (and that of
    # its forks that do not exec) still shows LISTEN_*; the programs it execs (pause
    # process, shim zygote, shims) show whether it unset them first.
    own = psutil.Process(proc.pid).cmdline()
    children = [p for p in psutil.process_iter(["uids", "cmdline"])
                if p.info["uids"] and p.info["uids"].real == rc.shell.uid
                and p.info["cmdline"] and p.info["cmdline"] != own]
    assert children
    for child in children:
        try:
            environ = Path(f"/proc/{child.pid}/environ").read_bytes().split(b"\0")
        except OSError:
            continue
        assert not any(v.startswith(b"LISTEN_") for v in environ), child.cmdline()

    # Containers outlive the daemon; the passed socket is not unlinked at exit.
    cid = ok(rc.rctr("run", "-d", IMAGE, "sleep", "300")).stdout.strip()
    try:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0, log
        assert rc.socket.exists() and rc.socket.stat().st_ino == inode
        # The listener is gone with the daemon: the CLI starts one on demand, which
        # re-adopts the running container.
        state = ok(rc.rctr("inspect", "-f", "{{.State.Running}}", cid)).stdout.strip()
        assert state == "true"
        assert (rc.rundir / "rctrd.log").exists()
        assert rc.daemon_pid() not in (None, proc.pid)
    finally:
        rc.rctr("rm", "-f", cid)


def _text(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except OSError:
        return ""


def test_stray_activation_variables_are_not_taken(user: UserShell, test_image: str) -> None:
    """LISTEN_PID of another process: rctrd binds its own socket, as without systemd."""
    rc = RctrUser(user)
    env = rc.env(LISTEN_PID="1", LISTEN_FDS="1")
    proc = rc.shell.popen([RCTR, "system", "service"], env=env, stdin=subprocess.DEVNULL,
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        rc.wait_for(lambda: rc.daemon_pid() == proc.pid and rc.socket.exists(), what="rctrd")
        ok(rc.rctr("version"))
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
    assert not rc.socket.exists()  # its own socket, removed at exit


def test_unit_files_parse() -> None:
    analyze = shutil.which("systemd-analyze")
    if not analyze:
        pytest.skip("systemd-analyze is not installed: the unit files were not checked")
    units = [str(UNITS / "rctrd.socket"), str(UNITS / "rctrd.service")]
    text = "\n".join(Path(u).read_text() for u in units)
    assert "ListenStream=%t/rctr/rctr.sock" in text and "SocketMode=0600" in text
    assert "KillMode=process" in text and "rctr system service" in text
    # --user needs a runtime directory for the (offline) manager it builds, not a running one.
    with tempfile.TemporaryDirectory() as runtime:
        os.chmod(runtime, 0o700)
        r = subprocess.run([analyze, "verify", "--user", *units], capture_output=True,
                           text=True, timeout=60,
                           env={**os.environ, "XDG_RUNTIME_DIR": runtime})
    if r.returncode != 0 and "Failed to initialize manager" in r.stderr:
        pytest.skip(f"systemd-analyze cannot run here: {r.stderr.strip()}")
    assert r.returncode == 0, r.stderr
    # Unknown keys are only warnings, with exit 0: none is wanted.
    assert r.stderr.strip() == "", r.stderr

