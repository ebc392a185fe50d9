"""The pause process killed: the namespaces it held are rebuilt by the next command.

While any rctr process is left in them (rctrd, a shim), the namespaces live on,
and a new pause process is started inside them: nothing is lost.  When nothing
is left, the next command makes new ones and says which running containers
were lost; they can be started again.
"""

from __future__ import annotations

import os
import signal

import psutil
import pytest
from daemonenv import IMAGE, RctrUser, ok
from leftovers import pause_pid, quiet_problems

pytestmark = [pytest.mark.integration,
              pytest.mark.requires("root", "user", "userns", "subuid", "newuidmap"),
              pytest.mark.timeout(120)]


def kill_pause(rc: RctrUser) -> int:
    pid = pause_pid(rc)
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    return pid


def namespaces(pid: int) -> tuple[int, int]:
    return tuple(os.stat(f"/proc/{pid}/ns/{n}").st_ino for n in ("user", "mnt"))  # type: ignore[return-value]


def new_pause(rc: RctrUser, old: int) -> int:
    def replaced() -> bool:
        pid = pause_pid(rc)
        return pid not in (None, old) and psutil.pid_exists(pid)

    rc.wait_for(replaced, timeout=10, what="a new pause process")
    return pause_pid(rc)  # type: ignore[return-value]


def test_the_daemon_replaces_a_killed_pause_process(rc: RctrUser) -> None:
    ok(rc.rctr("run", "-d", "--name", "p1", IMAGE, "sleep", "600"))
    try:
        daemon = rc.daemon_pid()
        assert daemon is not None
        held = namespaces(pause_pid(rc))
        old = kill_pause(rc)
        pid = new_pause(rc, old)
        assert namespaces(pid) == held == namespaces(daemon)
        assert "pause process was gone" in (rc.rundir / "rctrd.log").read_text()
        assert rc.state("p1")["Running"]
        assert ok(rc.rctr("exec", "p1", "echo", "still")).stdout == "still\n"
        # rctr unshare joins the same namespaces: the container's root is mounted there.
        cid = ok(rc.rctr("inspect", "--format", "{{.Id}}", "p1")).stdout.strip()
        assert cid in ok(rc.rctr("unshare", "cat", "/proc/self/mountinfo")).stdout
        ok(rc.rctr("run", "--rm", IMAGE, "true"))
        assert not quiet_problems(rc)
    finally:
        rc.rctr("rm", "-f", "p1")


def test_pause_and_daemon_killed_the_shims_hold_the_namespaces(rc: RctrUser) -> None:
    ok(rc.rctr("run", "-d", "--name", "p2", IMAGE, "sleep", "600"))
    try:
        daemon = rc.daemon_pid()
        assert daemon is not None
        held = namespaces(pause_pid(rc))
        os.kill(daemon, signal.SIGKILL)
        kill_pause(rc)
        r = ok(rc.rctr("ps"))  # a new daemon, joining through the container's shim
        assert "p2" in r.stdout and "lost" not in r.stderr
        assert namespaces(pause_pid(rc)) == held
        assert rc.state("p2")["Running"]
        assert ok(rc.rctr("exec", "p2", "echo", "still")).stdout == "still\n"
        assert not quiet_problems(rc)
    finally:
        rc.rctr("rm", "-f", "p2")


def test_when_nothing_holds_the_namespaces_the_lost_containers_are_named(rc: RctrUser) -> None:
    ok(rc.rctr("run", "-d", "--name", "p3", IMAGE, "sleep", "600"))
    try:
        rc.shell.kill_all()  # the pause process, rctrd, the zygote, the shim, the container
        r = ok(rc.rctr("ps", "-a"))
        assert "1 running container(s) were lost" in r.stderr and "p3" in r.stderr, r.stderr
        state = rc.state("p3")
        assert (state["Running"], state["ExitCode"]) == (False, 255)
        assert "pause process was killed" in state["Error"]
        assert not quiet_problems(rc)
        ok(rc.rctr("start", "p3"))
        assert ok(rc.rctr("exec", "p3", "echo", "back")).stdout == "back\n"
        assert "lost" not in ok(rc.rctr("ps")).stderr  # said once, by the start that found it
    finally:
        rc.rctr("rm", "-f", "p3")
